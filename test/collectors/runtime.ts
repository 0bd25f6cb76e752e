// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { evaluateRuntimes } from '../../collectors/runtime.js';
import { loadConfig } from '../../agent/config.js';
import { Runner } from '../../agent/runner.js';
import { COLLECTORS } from '../../collectors/index.js';
import { envFor, quietLog } from '../helpers/context.js';
import { ourDaemonPid, requireRuntime, startRuntime } from '../helpers/runtime.js';
import { requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

t.test('only runtimes that are there and do not answer are findings', async (t) => {
  const f = evaluateRuntimes([
    { name: 'docker', socket: '/var/run/docker.sock', status: 'unresponsive', latencyMs: 2000 },
    { name: 'containerd', socket: '/run/containerd/containerd.sock', status: 'absent' },
  ]);
  t.same(f.map((x) => [x.check, x.severity, x.subject]), [['runtime.unresponsive', 'critical', 'docker']]);
  t.match(f[0]?.message, /does not answer.*within 2000 ms.*Unknown/);
  t.match(f[0]?.remedy, /kill -USR1/);
});

t.test('live: dockerd frozen with SIGSTOP fires runtime.unresponsive within one interval; the other collectors keep running; SIGCONT resolves it', async (t) => {
  if (!requireRuntime(t)) return;
  const pid = ourDaemonPid('dockerd');
  if (pid === undefined && !requireLive(t, { paths: ['/nonexistent: dockerd was not started by scripts/start-test-runtime.sh, so this test will not freeze it'] })) return;
  const config = loadConfig({ node: 'live', sets: ['runtime.timeout=1s', 'collectors.runtime.interval=2s', 'collectors.runtime.timeout=1500ms', 'collectors.disk.interval=1s', 'collectors.disk.timeout=900ms', 'collectors.drift.interval=2s', 'collectors.drift.timeout=1500ms'] });
  for (const name of ['sockets', 'sockstat', 'immutable', 'mounts']) config.collectors[name]!.enabled = false;
  const runner = new Runner({ collectors: COLLECTORS, config, env: envFor('/', ['runtime.timeout=1s']), log: quietLog });
  const diskRuns: number[] = [];
  runner.on('status', (s: { name: string; status: string }) => {
    if (s.name === 'disk' && s.status === 'ok') diskRuns.push(Date.now());
  });
  process.kill(pid!, 'SIGSTOP');
  let resumed = false;
  t.teardown(() => {
    if (!resumed) process.kill(pid!, 'SIGCONT');
    runner.stop();
  });
  const frozenAt = Date.now();
  runner.start();
  // Ceilings for a loaded machine (they were 8 and 10 s); each wait returns as soon as it holds.
  const fired = await eventually(() => runner.active().some((f) => f.check === 'runtime.unresponsive' && f.subject === 'docker'), 30_000);
  t.ok(fired, `runtime.unresponsive for docker, ${Date.now() - frozenAt} ms after the freeze`);
  // Stay frozen a while: the other collectors must keep their cadence meanwhile.
  await new Promise((r) => setTimeout(r, 3000));
  const during = diskRuns.filter((x) => x > frozenAt).length;
  t.ok(during >= 3, `disk kept its 1 s cadence while dockerd was frozen (${during} runs in ${Date.now() - frozenAt} ms)`);
  t.ok(runner.active().some((f) => f.check === 'runtime.unresponsive'), 'still firing while frozen');
  t.ok(runner.statuses().find((s) => s.name === 'drift')?.status !== 'failed', 'drift is unavailable, not failed');
  process.kill(pid!, 'SIGCONT');
  resumed = true;
  const resolved = await eventually(() => !runner.active().some((f) => f.check === 'runtime.unresponsive'), 30_000);
  t.ok(resolved, 'resolved once dockerd answers again');
});

t.test('restart grace: a young daemon, or one failing for less than the grace, is "restarting" (info); a frozen daemon (state T) is critical at once; past the grace, critical', async (t) => {
  const down = { name: 'docker' as const, socket: '/var/run/docker.sock', status: 'down' as const, downReason: 'socket-gone' as const, error: 'gone' };
  const frozen = { name: 'docker' as const, socket: '/var/run/docker.sock', status: 'unresponsive' as const, latencyMs: 5000 };
  const now = 1_000_000;
  const one = (r: Parameters<typeof evaluateRuntimes>[0][number], e: { badSince: number; daemonAgeS?: number; stopped?: boolean }) => evaluateRuntimes([r], new Map([['docker', e]]), now, 30_000)[0]!;
  t.match(one(down, { badSince: now - 5_000 }), { severity: 'info', message: /docker is restarting or stalled \(it stopped answering 5 s ago/ }, 'between exit and start');
  t.match(one(frozen, { badSince: now - 5_000, daemonAgeS: 4 }), { severity: 'info', message: /its daemon started 4 s ago/ }, 'a fresh daemon warming up');
  t.match(one(frozen, { badSince: now - 1_000, daemonAgeS: 3600 }), { severity: 'info' }, 'an old daemon shutting down: not yet');
  t.match(one(frozen, { badSince: now - 1_000, daemonAgeS: 3600, stopped: true }), { severity: 'critical', message: /does not answer/ }, 'a daemon stopped by a signal (frozen): paged at once');
  t.match(one(down, { badSince: now - 31_000 }), { severity: 'critical', message: /is down/ }, 'gone past the grace');
  t.match(one(frozen, { badSince: now - 40_000, daemonAgeS: 40 }), { severity: 'critical' }, 'a daemon past the grace that still does not answer');
});

t.test('live: a planned dockerd restart is "restarting" (info) and never critical; it resolves when dockerd is back', async (t) => {
  if (!requireRuntime(t)) return;
  const pid = ourDaemonPid('dockerd');
  if (pid === undefined && !requireLive(t, { paths: ['/nonexistent: dockerd was not started by scripts/start-test-runtime.sh, so this test will not restart it'] })) return;
  const { spawn } = await import('node:child_process');
  const { runtime } = await import('../../collectors/runtime.js');
  const { contextFor } = await import('../helpers/context.js');
  const ctx = contextFor(runtime, '/', { env: envFor('/', ['runtime.timeout=2s']) });
  const seen: string[] = [];
  const look = async () => {
    const r = await runtime.collect(ctx);
    const f = r.kind === 'ok' ? r.observations.find((o) => o.subject === 'docker') : undefined;
    seen.push(f ? `${f.check}:${f.severity}` : 'ok');
    return f;
  };
  t.equal(await look(), undefined, 'docker answers before');
  process.kill(pid!, 'SIGTERM');
  t.teardown(() => startRuntime());
  await eventually(async () => (await look())?.check === 'runtime.down', 30_000);
  // systemd would start it again; here the test's start script does, in the background.
  const starter = spawn('bash', ['scripts/start-test-runtime.sh'], { stdio: 'ignore' });
  const back = await eventually(async () => (await look()) === undefined, 90_000);
  await new Promise((r) => starter.once('exit', r));
  t.ok(back, 'resolved once dockerd answers again');
  t.ok(seen.some((s) => s === 'runtime.down:info'), `it said restarting while dockerd was away (${[...new Set(seen)].join(', ')})`);
  t.notOk(seen.some((s) => s.endsWith(':critical')), 'never critical during a restart that took less than the grace');
});
