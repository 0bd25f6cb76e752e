// The types are inferred from the specs (protocol/schema.ts): test/fixtures/types/agree.ts states that
// every wire message, the prune stream, the finding and the config have exactly the type their spec
// validates. tap runs TypeScript without type-checking and tsconfig.json does not include test/, so
// this test type-checks that file with the compiler's API, with the project's own options, and shows
// that the same check fails on a spec and a type that drift apart (the finishedAt).
import t from 'tap';
import path from 'node:path';
import ts from 'typescript';

const dir = path.resolve('test/fixtures/types');
const agree = path.join(dir, 'agree.ts');

function projectOptions(): ts.CompilerOptions {
  const file = ts.readConfigFile(path.resolve('tsconfig.json'), (p) => ts.sys.readFile(p));
  if (file.error) throw new Error(ts.flattenDiagnosticMessageText(file.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(file.config, ts.sys, path.resolve('.'));
  return { ...parsed.options, noEmit: true };
}

const options = projectOptions();
let previous: ts.Program | undefined;

/** tsc's errors for the given files, plus virtual ones (name -> source) placed beside agree.ts. */
function typeErrors(roots: string[], virtual: Record<string, string> = {}): string[] {
  const host = ts.createCompilerHost(options);
  const files = new Map(Object.entries(virtual).map(([name, text]) => [path.join(dir, name), text]));
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (f) => files.has(f) || fileExists.call(host, f);
  host.readFile = (f) => files.get(f) ?? readFile.call(host, f);
  host.getSourceFile = (f, lang, ...rest) => {
    const text = files.get(f);
    return text === undefined ? getSourceFile.call(host, f, lang, ...rest) : ts.createSourceFile(f, text, lang);
  };
  const program = ts.createProgram([...roots, ...files.keys()], options, host, previous);
  previous = program;
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}` : '';
    return `${where} TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

t.test('every spec and its type agree, both ways (tsc on test/fixtures/types/agree.ts)', async (t) => {
  t.same(typeErrors([agree]), [], 'no type error');
});

t.test('the same check fails when a spec and a type drift apart', async (t) => {
  const probe = (assertion: string) => `
import { s, type Infer } from '../../../protocol/schema.js';
import type { CollectorStatusWire } from '../../../protocol/wire.js';
import type { Equal } from './agree.js';
const spec = s.object({ name: s.required(s.string({ doc: '' })), finishedAt: s.string({ doc: '' }), count: s.number({ default: 1, doc: '' }) });
export type Status = CollectorStatusWire;
export type Spec = Infer<typeof spec>;
export const check: ${assertion} = true;
`;
  t.same(typeErrors([], { 'probe.ts': probe('Equal<Spec, { name: string; finishedAt?: string; count: number }>') }), [], 'the probe compiles when spec and type agree');
  const drifts: [string, string][] = [
    ['a type that lacks a field the spec accepts (the issue: status had finishedAt, its type did not)', 'Equal<Status, { name: string; status: string; durationMs: number; detail?: string }>'],
    ['an optional field written as required', 'Equal<Spec, { name: string; finishedAt: string; count: number }>'],
    ['a required field written as optional', 'Equal<Spec, { name?: string; finishedAt?: string; count: number }>'],
    ['a defaulted field written as optional', 'Equal<Spec, { name: string; finishedAt?: string; count?: number }>'],
    ['a field of another type', 'Equal<Spec, { name: string; finishedAt?: number; count: number }>'],
    ['a type with a field the spec refuses', 'Equal<Spec, { name: string; finishedAt?: string; count: number; extra?: string }>'],
  ];
  for (const [what, assertion] of drifts) {
    const errors = typeErrors([], { 'probe.ts': probe(assertion) });
    t.match(errors, [/^probe\.ts:8 TS2322 Type 'true' is not assignable to type 'false'/], what);
  }
});
