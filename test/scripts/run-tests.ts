// scripts/run-tests.mjs, the runner behind `npm test`: unit files run in parallel, live files one at a
// time beside them, `// @live quiet` ones after the unit files. The rule it depends on: a test file that uses the real machine (test/helpers/live.ts or
// test/helpers/runtime.ts) has a line starting with `// @live`. This file fails when one does not.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface Groups { unit: string[]; live: string[]; quiet: string[]; unmarked: string[] }

function list(root: string): { code: number | null; groups: Groups } {
  const r = spawnSync(process.execPath, ['scripts/run-tests.mjs', '--list', '--root', root], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, groups: JSON.parse(r.stdout) as Groups };
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
  // Each "test" is plain JavaScript under dist-test/ (what tsc would have compiled), printing tap's summary.
  const file = (rel: string, source: string, js: string) => {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), source);
    const out = path.join(root, 'dist-test', rel.replace(/\.ts$/, '.js'));
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, js);
  };
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
