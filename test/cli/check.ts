// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
    [['check', '--only', 'disk,nosuch'], /unknown collector nosuch \(known: disk, sockstat, conntrack, sockets, pids, runtime, drift, immutable, mounts, pods, kernel, pressure, kubelet\)/],
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

t.test('a process or finding with hostile text cannot drive the terminal (check)', async (t) => {
  const { renderReport } = await import('../../cli/check.js');
  const { painter } = await import('../../cli/format.js');
  const { finding } = await import('../helpers/findings.js');
  const evil = '\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07\x1b[2J\u009b2J\u009d0;title\u009c';
  const text = renderReport(
    {
      node: 'n1',
      findings: [finding('n1', 'sockets.process', `pid:1 ${evil}`, 'critical', { message: `holds ${evil}\nFindings: none`, remedy: `ps -f 1 ${evil}` })],
      collectors: [{ name: 'sockets', status: 'failed', durationMs: 1, detail: evil } as never],
      data: { sockets: { processes: 1, holders: 1, totalSockets: 5, top: [{ pid: 1, comm: `x${evil}`, cmdline: `/bin/x ${evil}`, sockets: 5, fds: 6, containerName: evil }] } },
    },
    painter(false),
  );
  t.notMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, 'no control character in the report');
  t.notMatch(text, /^Findings: none/m, 'a fake line stays inside the message');
});

t.test('live: check with dockerd frozen: every collector returns, and only the runtime probe waits out a timeout', async (t) => {
  const { ourDaemonPid, requireRuntime } = await import('../helpers/runtime.js');
  const { loadConfig } = await import('../../agent/config.js');
  const { Runner } = await import('../../agent/runner.js');
  const { COLLECTORS } = await import('../../collectors/index.js');
  const { envFor, quietLog } = await import('../helpers/context.js');
  if (!requireRuntime(t)) return;
  const pid = ourDaemonPid('dockerd');
  if (pid === undefined && !requireLive(t, { paths: ['/nonexistent: dockerd was not started by scripts/start-test-runtime.sh, so this test will not freeze it'] })) return;
  const sets = ['runtime.timeout=2s', 'collectors.immutable.complete=true'];
  const config = loadConfig({ node: 'frozen', sets });
  const env = envFor('/', sets);
  const runner = new Runner({ collectors: COLLECTORS, config, env, log: quietLog });
  process.kill(pid!, 'SIGSTOP');
  let resumed = false;
  t.teardown(() => {
    if (!resumed) process.kill(pid!, 'SIGCONT');
  });
  const started = Date.now();
  const cycle = await runner.runOnce();
  const total = Date.now() - started;
  // The CLI itself, as a user runs it, for the record.
  const cliStarted = Date.now();
  const cli = run('check', '--json', '--set', 'runtime.timeout=2s');
  const cliTotal = Date.now() - cliStarted;
  process.kill(pid!, 'SIGCONT');
  resumed = true;
  t.comment(`in process: ${total} ms; ${cycle.statuses.map((s) => `${s.name} ${s.status} ${s.durationMs} ms`).join(', ')}`);
  t.comment(`nodewarden check --json: ${cliTotal} ms, exit ${cli.code}`);
  const runtimes = env.runtime as unknown as { timeouts: Record<string, number> };
  t.same(runtimes.timeouts, { docker: 1, containerd: 0 }, 'one runtime call waited out runtime.timeout: the probe; every other caller shared it or was told at once');
  t.same(cycle.statuses.filter((s) => s.status === 'failed' || s.status === 'timeout').map((s) => `${s.name} ${s.status}`), [], 'every collector returned');
  t.equal(cycle.statuses.length, runner.names().length);
  t.ok(runner.active().some((f) => f.check === 'runtime.unresponsive' && f.subject === 'docker'), 'runtime.unresponsive for docker');
  const report = JSON.parse(cli.stdout) as { collectors: { name: string; status: string }[]; findings: { check: string; subject: string }[] };
  t.equal(cli.code, 2, 'the CLI exits critical');
  t.ok(report.findings.some((f) => f.check === 'runtime.unresponsive' && f.subject === 'docker'));
  t.same(report.collectors.filter((c) => c.status === 'failed' || c.status === 'timeout'), [], 'and lists every collector as returned');
});

t.test('live: check says how much container storage it examined: all of it', async (t) => {
  if (!requireLive(t, { root: true, paths: ['/var/lib/docker/overlay2'] })) return;
  const r = run('check', '--only', 'immutable');
  t.match(r.stdout, /Container storage: examined all \d+ units \([\d,]+ entries/);
  const json = JSON.parse(run('check', '--json', '--only', 'immutable').stdout) as { data: { immutable?: { complete?: { units: number }; pending: string[] } } };
  t.ok((json.data.immutable?.complete?.units ?? 0) > 0, 'every unit, in one pass');
  t.same(json.data.immutable?.pending, [], 'nothing left pending');
});

t.test('the progress line: what runs, and how far the storage scan is', async (t) => {
  const { formatCheckProgress } = await import('../../cli/check.js');
  const progress = new Map([['immutable', { step: 'scanning storage', done: 120, total: 1400, unit: 'units', entries: 1234567 }]]);
  t.equal(formatCheckProgress(['immutable', 'runtime'], 8, progress, 12_900), 'check 12s, 2 of 8 running: immutable scanning storage 120/1,400 units, 1,234,567 entries · runtime');
  t.equal(formatCheckProgress(['disk'], 1, new Map(), 0), 'check 0s, 1 of 1 running: disk');
});

t.test('live: on a terminal check shows its progress on stderr and clears it; piped, not one control byte', async (t) => {
  if (!requireLive(t, { root: true, commands: ['script'] })) return;
  // A host tree with five units of docker storage: the scan reports as groups of them finish.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-progress-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const u of ['u1', 'u2', 'u3', 'u4', 'u5']) {
    mkdirSync(path.join(dir, 'var/lib/docker/overlay2', u, 'diff'), { recursive: true });
    writeFileSync(path.join(dir, 'var/lib/docker/overlay2', u, 'diff/f'), 'x');
  }
  const pty = spawnSync('script', ['-qfec', `${process.execPath} ${BIN} check --only immutable --host-root ${dir}`, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(pty.status, 0, pty.stderr);
  const screen = pty.stdout;
  t.match(screen, /\r\x1b\[2Kcheck \d+s, 1 of 1 running: immutable scanning storage 5\/5 units, 10 entries/, 'units of total and entries so far');
  t.match(screen, /\r\x1b\[2Kcheck \d+s, 1 of 1 running: immutable scanning storage [0-4]\/5 units/, 'and before the end');
  const last = screen.lastIndexOf('running:');
  const report = screen.indexOf('Container storage');
  t.ok(last < report, 'progress only before the report');
  t.match(screen.slice(last, report), /\r\x1b\[2K/, 'the line is cleared before the report prints');
  t.notMatch(screen.slice(report), /running:/);

  for (const args of [['check', '--only', 'immutable', '--host-root', dir], ['check', '--json', '--only', 'immutable', '--host-root', dir]]) {
    const piped = run(...args);
    t.equal(piped.code, 0, piped.stderr);
    t.equal(piped.stderr, '', `${args.join(' ')}: nothing on stderr`);
    t.notMatch(piped.stdout, /[\r\x1b]|running:/, `${args.join(' ')}: no control byte, no progress line`);
  }
});

t.test('repeated --only flags add up, as a comma list does', async (t) => {
  const { runSync } = await import('../helpers/processes.js');
  const r = runSync(['check', '--only', 'disk', '--only', 'sockstat', '--json']);
  t.same((JSON.parse(r.stdout) as { collectors: { name: string }[] }).collectors.map((c) => c.name).sort(), ['disk', 'sockstat']);
  const c = runSync(['check', '--only', 'disk,sockstat', '--only', 'disk', '--json']);
  t.same((JSON.parse(c.stdout) as { collectors: { name: string }[] }).collectors.map((x) => x.name).sort(), ['disk', 'sockstat']);
});

t.test('live: check as an unprivileged user is "cannot look" (exit 3, one line saying root is needed), never a runtime outage', async (t) => {
  const { requireLive } = await import('../helpers/live.js');
  if (!requireLive(t, { root: true, commands: ['setpriv', 'mount', 'umount'] })) return;
  const { execFileSync, spawnSync } = await import('node:child_process');
  const { existsSync, mkdtempSync, mkdirSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  // The checkout may sit below a directory nobody cannot enter: show it to nobody through a bind mount under /tmp.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-nobody-'));
  const repo = path.join(dir, 'repo');
  mkdirSync(repo);
  execFileSync('chmod', ['755', dir]);
  execFileSync('mount', ['--bind', process.cwd(), repo]);
  t.teardown(() => {
    spawnSync('umount', [repo]);
    rmSync(dir, { recursive: true, force: true });
  });
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, 'dist/cli/main.js', 'check', '--json'], { cwd: repo, encoding: 'utf8', timeout: 120_000, env: { ...process.env, HOME: '/nonexistent' } });
  t.equal(r.status, 3, `exit 3 (unknown): ${r.stderr}`);
  const report = JSON.parse(r.stdout) as { findings: { check: string }[]; collectors: { name: string; status: string; detail?: string }[] };
  t.same(report.findings.filter((f) => f.check.startsWith('runtime.') || f.check.startsWith('collector.')), [], 'no runtime.unresponsive, runtime.down or collector.failed');
  const denied = report.collectors.filter((c) => c.status === 'unavailable' && /permission denied/.test(c.detail ?? '')).map((c) => c.name);
  t.ok(denied.includes('sockets'), `sockets says it could not look: ${denied.join(', ')}`);
  if (existsSync('/var/run/docker.sock')) t.ok(denied.includes('runtime'), 'runtime says it could not look');
  const human = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, 'dist/cli/main.js', 'check'], { cwd: repo, encoding: 'utf8', timeout: 120_000, env: { ...process.env, HOME: '/nonexistent', NO_COLOR: '1' } });
  t.equal(human.status, 3);
  const lines = human.stdout.split('\n').filter((l) => l.startsWith('Could not look'));
  t.equal(lines.length, 1, 'one line says it');
  t.match(lines[0], /^Could not look: .*sockets.*: permission denied\. nodewarden needs root on a node/);
  t.notMatch(human.stdout, /0 of \d+ processes hold 0 sockets/, 'no census that could not be taken');
});
