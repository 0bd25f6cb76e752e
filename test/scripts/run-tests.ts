// scripts/run-tests.mjs, the runner behind `npm test`: unit files run in parallel, live files one at a
// time beside them, `// @live shared` ones two at a time once the unit files are done, `// @live quiet`
// ones alone after everything else. The rule it depends on: a test file that uses the real machine (test/helpers/live.ts or
// test/helpers/runtime.ts) has a line starting with `// @live`. This file fails when one does not.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface Groups { unit: string[]; live: string[]; quiet: string[]; shared: string[]; unmarked: string[] }

function list(root: string): { code: number | null; groups: Groups } {
  const r = spawnSync(process.execPath, ['scripts/run-tests.mjs', '--list', '--root', root], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, groups: JSON.parse(r.stdout) as Groups };
}

/** Writes a fake test file under root: its source, and as dist-test/ plain JavaScript (what tsc would have compiled) that prints tap's summary. */
function fakeTestFile(root: string): (rel: string, source: string, js: string) => void {
  return (rel, source, js) => {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), source);
    const out = path.join(root, 'dist-test', rel.replace(/\.ts$/, '.js'));
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, js);
  };
}

t.test('every test file in this repository that uses the live helpers is marked // @live', async (t) => {
  const { code, groups } = list('.');
  t.same(groups.unmarked, [], 'no file imports test/helpers/live.ts or runtime.ts without the marker');
  t.equal(code, 0);
  t.ok(groups.live.includes('test/integration/pipeline.ts'), 'the docker pipeline runs with the live files');
  t.ok(groups.unit.includes('test/protocol/wire.ts'), 'a pure decoder test runs in parallel');
  t.notOk(groups.unit.some((f) => f.startsWith('test/fixtures/') || f.startsWith('test/helpers/')), 'fixtures and helpers are not tests');
});

t.test('a file that imports the runtime helpers without the marker is named and fails the run', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-run-tests-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'test/collectors'), { recursive: true });
  mkdirSync(path.join(root, 'test/helpers'), { recursive: true });
  // The helper paths are split so that this file itself does not look like a user of them.
  const helpers = '../helpers/';
  writeFileSync(path.join(root, 'test/helpers/runtime.ts'), 'export const DOCKER = "/usr/bin/docker";\n');
  writeFileSync(path.join(root, 'test/collectors/pure.ts'), "import t from 'tap';\nt.pass('pure');\n");
  writeFileSync(path.join(root, 'test/collectors/marked.ts'), `// a header\n// @live: docker\nimport { DOCKER } from '${helpers}runtime.js';\n`);
  writeFileSync(path.join(root, 'test/collectors/forgot.ts'), `import t from 'tap';\nimport { DOCKER } from '${helpers}runtime.js';\n`);
  writeFileSync(path.join(root, 'test/collectors/lazy.ts'), `const { makeLoopFs } = await import('${helpers}live.js');\n`);
  const { code, groups } = list(root);
  t.equal(code, 1, '--list exits 1 when a file is unmarked');
  t.same(groups.unmarked, ['test/collectors/forgot.ts', 'test/collectors/lazy.ts'], 'static and dynamic imports both count');
  t.same(groups.live, ['test/collectors/forgot.ts', 'test/collectors/lazy.ts', 'test/collectors/marked.ts'], 'unmarked users still run serially');
  t.same(groups.unit, ['test/collectors/pure.ts']);

  // The run itself counts each unmarked file as a failure, before running anything.
  writeFileSync(path.join(root, 'package.json'), JSON.stringify({ tap: { timeout: 30 } }));
  const run = spawnSync(process.execPath, [path.resolve('scripts/run-tests.mjs'), 'test/collectors/forgot.ts'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  t.equal(run.status, 1, 'npm test fails');
  t.match(run.stdout, /^not ok 1 - test\/collectors\/forgot\.ts imports test\/helpers\/live\.ts or runtime\.ts but has no "\/\/ @live" line/m);
  t.match(run.stdout, /^# \{ total: 1, pass: 0, fail: 1 \}$/m, 'the failure is in the summary .ci/run reads');
});

t.test('live files run beside the unit files; a `// @live quiet` file waits until the unit files are done', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-run-tests-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(path.join(root, 'package.json'), JSON.stringify({ tap: { timeout: 30 } }));
  const done = path.join(root, 'unit-done');
  const file = fakeTestFile(root);
  const verdict = (cond: string) => `const ok = ${cond}; console.log(ok ? 'ok 1' : 'not ok 1'); console.log('# { total: 1, pass: ' + (ok ? 1 : 0) + (ok ? '' : ', fail: 1') + ' }'); process.exit(ok ? 0 : 1);\n`;
  const fsImport = "import { existsSync, writeFileSync } from 'node:fs';\n";
  file('test/a-unit.ts', '// unit\n', `${fsImport}await new Promise((r) => setTimeout(r, 1500)); writeFileSync(${JSON.stringify(done)}, ''); ${verdict('true')}`);
  file('test/b-live.ts', '// @live: the machine\n', `${fsImport}${verdict(`!existsSync(${JSON.stringify(done)})`)}`);
  file('test/c-quiet.ts', '// @live quiet: no other load\n', `${fsImport}${verdict(`existsSync(${JSON.stringify(done)})`)}`);
  const { groups } = list(root);
  t.same(groups.quiet, ['test/c-quiet.ts']);
  t.same(groups.live, ['test/b-live.ts', 'test/c-quiet.ts']);
  const run = spawnSync(process.execPath, [path.resolve('scripts/run-tests.mjs')], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  t.equal(run.status, 0, `both live files saw what they expect: ${run.stdout}`);
  t.match(run.stdout, /^ok \d+ - test\/b-live\.ts/m, 'the ordinary live file ran while the unit file was still running');
  t.match(run.stdout, /^ok \d+ - test\/c-quiet\.ts/m, 'the quiet one ran after it');
  t.equal(run.stdout.match(/^# \{ total: \d+/gm)?.length, 2, 'one summary line per group, as .ci/run reads them');
});

t.test('two `// @live shared` files overlap once the unit files are done; an exclusive or quiet file never overlaps another live file', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-run-tests-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(path.join(root, 'package.json'), JSON.stringify({ tap: { timeout: 30 } }));
  const running = path.join(root, 'running');
  mkdirSync(running);
  const done = path.join(root, 'unit-done');
  const file = fakeTestFile(root);
  // Each fake test file marks itself running (a file in running/ for as long as it runs) and prints what
  // it saw of the others; the verdict is printed as tap's summary so the runner counts it.
  const prelude = (me: string) => `import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
const running = ${JSON.stringify(running)}; const done = ${JSON.stringify(done)}; const me = ${JSON.stringify(me)};
writeFileSync(running + '/' + me, '');
const others = () => readdirSync(running).filter((n) => n !== me);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const verdict = (ok, why) => { rmSync(running + '/' + me); console.log((ok ? 'ok 1 - ' : 'not ok 1 - ') + why); console.log('# { total: 1, pass: ' + (ok ? 1 : 0) + (ok ? '' : ', fail: 1') + ' }'); process.exit(ok ? 0 : 1); };
`;
  // Watches the others for a second: which ones it ever saw.
  const watch = `const seen = new Set(); for (const end = Date.now() + 1000; Date.now() < end; await sleep(20)) for (const n of others()) seen.add(n);\n`;
  file('test/a-unit.ts', '// unit\n', `${prelude('a-unit')}await sleep(1500); writeFileSync(done, ''); verdict(true, 'unit');\n`);
  // Exclusive: beside the unit file, and beside no live file.
  file('test/b-live.ts', '// @live: the machine\n', `${prelude('b-live')}const early = !existsSync(done); ${watch}verdict(early && [...seen].every((n) => n === 'a-unit'), 'b saw ' + [...seen] + (early ? '' : ', after the unit files'));\n`);
  // Quiet: after the unit files, beside nothing.
  file('test/c-quiet.ts', '// @live quiet: no other load\n', `${prelude('c-quiet')}${watch}verdict(existsSync(done) && seen.size === 0, 'c saw ' + [...seen]);\n`);
  // Shared: each waits (up to 20 s) to see the other running, by then with the unit files done; the first
  // may start beside the unit file (one live lane, as before), never beside b or c.
  const sharedJs = (me: string, other: string) => `${prelude(me)}let both = false; const seen = new Set();
for (const end = Date.now() + 20_000; !both && Date.now() < end; await sleep(20)) { for (const n of others()) seen.add(n); both = others().includes(${JSON.stringify(other)}); }
const unitDone = existsSync(done); await sleep(500); for (const n of others()) seen.add(n);
seen.delete('a-unit');
verdict(both && unitDone && [...seen].every((n) => n === ${JSON.stringify(other)}), me + ' saw ' + [...seen] + (unitDone ? '' : ' before the unit files were done'));\n`;
  file('test/d-shared.ts', '// @live shared: its own containers only\n', sharedJs('d-shared', 'e-shared'));
  file('test/e-shared.ts', '// @live shared: its own loop filesystem only\n', sharedJs('e-shared', 'd-shared'));
  const { groups } = list(root);
  t.same(groups.shared, ['test/d-shared.ts', 'test/e-shared.ts']);
  t.same(groups.quiet, ['test/c-quiet.ts']);
  t.same(groups.live, ['test/b-live.ts', 'test/c-quiet.ts', 'test/d-shared.ts', 'test/e-shared.ts']);
  const run = spawnSync(process.execPath, [path.resolve('scripts/run-tests.mjs'), '--verbose'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  t.equal(run.status, 0, `every file saw what it expects: ${run.stdout}`);
  t.match(run.stdout, /ok 1 - d-shared saw e-shared\n/, 'd ran while e ran');
  t.match(run.stdout, /ok 1 - e-shared saw d-shared\n/, 'and e while d ran');
  t.match(run.stdout, /ok 1 - b saw (a-unit)?\n/, 'the exclusive file saw no other live file');
  t.match(run.stdout, /ok 1 - c saw \n/, 'the quiet file saw nothing else running');
  t.equal(run.stdout.match(/^# \{ total: \d+/gm)?.length, 2, 'still one summary line per group, as .ci/run reads them');
  t.match(run.stdout, /^# \{ total: 4, pass: 4 \}$/m, 'the live summary counts the shared files once each');
});

t.test('a file with `// @timeout SECONDS` gets that timeout; the others get tap.timeout', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-run-tests-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(path.join(root, 'package.json'), JSON.stringify({ tap: { timeout: 7 } }));
  const file = fakeTestFile(root);
  const sees = (want: string) => `const ok = process.env.TAP_TIMEOUT === '${want}'; console.log(ok ? 'ok 1' : 'not ok 1 - TAP_TIMEOUT ' + process.env.TAP_TIMEOUT); console.log('# { total: 1, pass: ' + (ok ? 1 : 0) + (ok ? '' : ', fail: 1') + ' }'); process.exit(ok ? 0 : 1);\n`;
  file('test/long.ts', '// @timeout 840: a slow first build\n', sees('840'));
  file('test/plain.ts', '// unit\n', sees('7'));
  const run = spawnSync(process.execPath, [path.resolve('scripts/run-tests.mjs')], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  t.equal(run.status, 0, run.stdout);
  t.match(run.stdout, /^ok \d+ - test\/long\.ts/m);
  t.match(run.stdout, /^ok \d+ - test\/plain\.ts/m);
});
