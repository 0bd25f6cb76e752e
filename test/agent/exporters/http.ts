// The agent's listener on the host network under a flood of idle connections, for real on loopback:
// an agent process with 256 file descriptors, 1,100 sockets that never send a byte.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { BIN, QUIET_COLLECTORS, freePort, until } from '../../helpers/processes.js';

const get = async (port: number, p: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, text: await res.text() };
};
const metric = (text: string, name: string, collector: string) => Number(new RegExp(`^${name}\\{[^}]*collector="${collector}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1] ?? 'NaN');
const okRuns = (text: string) => Number(/^nodewarden_collector_runs_total\{[^}]*collector="disk",status="ok"\} (\d+)/m.exec(text)?.[1] ?? '0');

t.test('1,100 idle sockets neither exhaust the agent\'s fds nor lock out the probe; the collectors keep running', async (t) => {
  const port = await freePort();
  const sets = [...QUIET_COLLECTORS, 'collectors.disk.interval=1s', 'collectors.disk.timeout=1s'].flatMap((s) => ['--set', s]);
  const agent = spawn('sh', ['-c', `ulimit -n 256 && exec "${process.execPath}" "${BIN}" agent --listen 127.0.0.1:${port} --node fd-node ${sets.map((s) => `'${s}'`).join(' ')}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  agent.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  const sockets: net.Socket[] = [];
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    agent.kill('SIGKILL');
  });
  await until(async () => (await get(port, '/healthz').catch(() => ({ status: 0 }))).status === 200, 15_000, 'the agent to listen');
  await until(async () => okRuns((await get(port, '/metrics')).text) >= 1, 15_000, 'a first disk run');

  let closedByAgent = 0;
  await Promise.all(
    Array.from({ length: 1100 }, () =>
      new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => resolve());
        s.on('error', () => resolve());
        s.on('close', () => {
          closedByAgent++;
          resolve();
        });
        sockets.push(s);
      }),
    ),
  );
  const fds = readdirSync(`/proc/${agent.pid}/fd`).length;
  t.ok(fds < 150, `the agent holds ${fds} fds with 1,100 idle sockets pointed at it (cap 64 connections)`);
  const health = await get(port, '/healthz');
  t.equal(health.status, 200, 'the liveness probe still gets in');
  const before = okRuns((await get(port, '/metrics')).text);
  await until(async () => okRuns((await get(port, '/metrics')).text) >= before + 2, 20_000, 'two more disk runs during the flood');
  const metrics = (await get(port, '/metrics')).text;
  t.equal(metric(metrics, 'nodewarden_collector_failures_total', 'disk'), 0, 'no collector run failed');
  t.notMatch(logs, /EMFILE/, 'no EMFILE anywhere in the logs');
  // Connections the kernel completed while the agent's accept queue was full wait for a SYN-ACK
  // retransmit (1, 3, 7 s ...) before the agent sees them, so the evictions are counted as they come.
  await until(() => closedByAgent >= 1100 - 64, 30_000, 'the agent to close every idle socket past its cap of 64');
  t.ok(closedByAgent >= 1100 - 64, `${closedByAgent} idle sockets were closed by the agent (at most 64 kept)`);
  // And the idle ones that got a slot are closed at the idle deadline: every socket ends.
  await until(() => closedByAgent === 1100, 30_000, 'every idle socket to be closed');
  t.pass('every idle socket was closed');
});
