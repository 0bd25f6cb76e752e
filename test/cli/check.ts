import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fillTo, makeLoopFs, requireLive } from '../helpers/live.js';

const BIN = path.resolve('dist/cli/main.js');
const FIXTURE = path.resolve('test/fixtures/host/debian12-vm');
const run = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

t.test('--json over a captured host tree', async (t) => {
  const r = run('check', '--json', '--host-root', FIXTURE, '--node', 'fixture-node', '--only', 'sockstat,sockets');
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { node: string; findings: unknown[]; collectors: { name: string; status: string; durationMs: number }[] };
  t.equal(report.node, 'fixture-node');
  t.same(report.findings, []);
  t.same(report.collectors.map((c) => [c.name, c.status]), [['sockstat', 'ok'], ['sockets', 'ok']]);
  t.type(report.collectors[0]?.durationMs, 'number');
});

t.test('human output: df-like table, sockstat counters, top holders, findings', async (t) => {
  const r = run('check', '--host-root', FIXTURE);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /Filesystem\s+Type\s+Size\s+Used\s+Avail\s+Use%\s+IUse%\s+Mounted on/);
  t.match(r.stdout, /TCP:\s+inuse 1\s+orphan 0 \(max \d+\)/);
  t.match(r.stdout, /python3\s+5\s+11/);
  t.match(r.stdout, /Findings: none/);
  t.notMatch(r.stdout, /\x1b\[/, 'no colour when not on a terminal');
});

t.test('bad input: one clear line and exit 3, never a stack trace', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, 'collectors:\n  disk:\n    usage: {warning: 200}\n    colour: red\n');
  const cases: [string[], RegExp][] = [
    [['check', '--only', 'disk,nosuch'], /unknown collector nosuch \(known: disk, sockstat, sockets, runtime, drift, immutable, mounts, pods\)/],
    [['check', '--host-root', path.join(dir, 'nope')], /--host-root .*nope: no such directory/],
    [['check', '--config', path.join(dir, 'missing.yaml')], /cannot read config file .*missing\.yaml: no such file/],
    [['check', '--config', bad], /invalid config in .*bad\.yaml: 2 problems\n  collectors\.disk\.usage\.warning: must be a number >= 0 <= 100, got 200\n  collectors\.disk\.colour: unknown key/],
    [['check', '--bogus'], /Unknown option '--bogus'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ];
  for (const [args, re] of cases) {
    const r = run(...args);
    t.equal(r.code, 3, args.join(' '));
    t.match(r.stderr, re);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
    t.equal(r.stdout, '');
  }
});

t.test('--help helps', async (t) => {
  const r = run('--help');
  t.equal(r.code, 0);
  t.match(r.stdout, /Usage:\n  nodewarden check/);
  t.match(r.stdout, /Exit codes/);
  t.equal(run('check', '--help').code, 0);
});

t.test('live: exit code 2 and the finding when a filesystem is 97% full', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup', 'fallocate'] })) return;
  const fs = makeLoopFs(64);
  t.teardown(() => fs.cleanup());
  fillTo(fs, 97);
  const r = run('check', '--only', 'disk', '--json');
  t.equal(r.code, 2, 'critical');
  const report = JSON.parse(r.stdout) as { findings: { check: string; subject: string; severity: string; evidence: { usePercent: number } }[] };
  const f = report.findings.find((x) => x.subject === fs.mountPoint);
  t.equal(f?.check, 'disk.usage');
  t.equal(f?.severity, 'critical');
  t.ok((f?.evidence.usePercent ?? 0) >= 95);
});
