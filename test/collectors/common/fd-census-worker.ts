// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import type { CensusRow } from '../../../collectors/common/fd-census.js';
import { requireLive } from '../../helpers/live.js';

t.test('live: the worker counts the pids it is given and posts its rows back', async (t) => {
  if (!requireLive(t, { commands: ['python3'] })) return;
  const child = spawn('python3', ['-c', "import socket,time; s=[socket.socket() for _ in range(9)]; print('ready', flush=True); time.sleep(600)"], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  // Run from source the worker is the .ts file, compiled (npm test) the .js one, as fd-census.ts picks it.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const worker = new Worker(new URL(`../../../collectors/common/fd-census-worker${ext}`, import.meta.url), { workerData: { procDir: '/proc', pids: [child.pid, 999_999], limitFrom: 5 } });
  const rows = await new Promise<CensusRow[]>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  t.equal(rows.length, 1, 'the pid that is not there is skipped');
  t.match(rows[0], { pid: child.pid, sockets: 10 }, '9 sockets and its stdout socketpair');
  t.type(rows[0]?.nofileSoft, 'number', 'limits read: it holds at least limitFrom');
});
