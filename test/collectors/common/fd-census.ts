// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { censusSockets, runSocketCensus, WORKER_THRESHOLD, type CensusRow } from '../../../collectors/common/fd-census.js';
import { requireLive } from '../../helpers/live.js';

/**
 * A python3 holding `sockets` TCP sockets under `ulimit -n nofile`. Its stdout is the pipe Node gives
 * it, a unix socketpair: one more socket, so it holds sockets + 1.
 */
async function holder(sockets: number, nofile: number): Promise<ChildProcess> {
  const child = spawn('bash', ['-c', `ulimit -n ${nofile} && exec python3 -c "import socket,time; s=[socket.socket() for _ in range(${sockets})]; print('ready', flush=True); time.sleep(600)"`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
  return child;
}

const byPid = (rows: CensusRow[]) => new Map(rows.map((r) => [r.pid, r]));

t.test('live: socket counts of processes this test started, limits read only for big holders', async (t) => {
  if (!requireLive(t, { commands: ['python3', 'bash'] })) return;
  const small = await holder(3, 1000);
  const big = await holder(40, 500);
  const none = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => {
    for (const c of [small, big, none]) c.kill('SIGKILL');
  });
  await new Promise((r) => none.once('spawn', r));
  const rows = byPid(censusSockets({ procDir: '/proc', pids: [small.pid!, big.pid!, none.pid!, 999_999], limitFrom: 32 }));
  t.same([...rows.keys()].sort(), [small.pid, big.pid].sort(), 'a process with no socket and a pid that is not there are left out');
  t.equal(rows.get(small.pid!)?.sockets, 4, '3 sockets and the stdout socketpair');
  t.equal(rows.get(big.pid!)?.sockets, 41);
  t.equal(rows.get(big.pid!)?.fds, readdirSync(`/proc/${big.pid}/fd`).length, 'every open fd counted, sockets or not');
  t.ok((rows.get(big.pid!)?.fds ?? 0) > 41, 'its stdin and stderr are fds but not sockets');
  t.equal(rows.get(big.pid!)?.nofileSoft, 500, 'limit read for a holder of at least limitFrom sockets');
  t.equal(rows.get(small.pid!)?.nofileSoft, undefined, 'and not for a small one');
});

t.test('live: on a host with many processes the census is split with a worker and counts the same', async (t) => {
  if (!requireLive(t, { commands: ['python3', 'bash'] })) return;
  const a = await holder(5, 1000);
  const b = await holder(7, 1000);
  t.teardown(() => {
    a.kill('SIGKILL');
    b.kill('SIGKILL');
  });
  const real = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number).filter((p) => p !== a.pid && p !== b.pid);
  // Enough pids for the worker (absent ones are skipped), ours at an even and an odd place so each half has one.
  const pids = [a.pid!, b.pid!, ...real];
  for (let p = 4_000_000; pids.length < WORKER_THRESHOLD + 10; p++) pids.push(p);
  const rows = await runSocketCensus({ procDir: '/proc', pids, limitFrom: 32 });
  const split = byPid(rows);
  t.equal(split.get(a.pid!)?.sockets, 6, 'the calling thread\'s half');
  t.equal(split.get(b.pid!)?.sockets, 8, "the worker's half");
  const single = byPid(censusSockets({ procDir: '/proc', pids: [a.pid!, b.pid!], limitFrom: 32 }));
  t.same([split.get(a.pid!), split.get(b.pid!)], [single.get(a.pid!), single.get(b.pid!)], 'the same rows as one thread gives');
  t.equal(rows.length, split.size, 'no process counted twice');
});
