// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { evaluateSockets, sockets, type SocketHolder } from '../../collectors/sockets.js';
import { censusSockets } from '../../collectors/common/fd-census.js';
import { contextFor, settingsFor } from '../helpers/context.js';
import { requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

const FIXTURE = path.resolve('test/fixtures/host/debian12-vm');
const config = settingsFor(sockets) as never;

t.test('census over the captured tree counts socket links only', async (t) => {
  const rows = censusSockets({ procDir: path.join(FIXTURE, 'proc'), pids: [1, 5038, 999999], limitFrom: 1 });
  t.same(rows.map((r) => [r.pid, r.sockets]), [[5038, 5]], 'five sockets (3 TCP + 2 unix); pid 1 holds none; a missing pid is skipped');
  t.equal(rows[0]?.fds, 11, 'all fds counted too');
  t.type(rows[0]?.nofileSoft, 'number');
});

t.test('collect over the captured tree names the holder', async (t) => {
  const r = await sockets.collect(contextFor(sockets, FIXTURE));
  t.equal(r.kind, 'ok');
  if (r.kind !== 'ok') return;
  t.same({ holders: r.data.holders, total: r.data.totalSockets }, { holders: 1, total: 5 });
  t.equal(r.data.top[0]?.comm, 'python3');
  t.same(r.observations, []);
});

const holder = (over: Partial<SocketHolder>): SocketHolder => ({ pid: 42, comm: 'nginx', cmdline: 'nginx: worker', sockets: 10, fds: 12, ...over });

t.test('thresholds: share of the nofile limit, and an absolute count', async (t) => {
  t.same(evaluateSockets([holder({ sockets: 79, nofileSoft: 100 })], config), []);
  const warn = evaluateSockets([holder({ sockets: 80, nofileSoft: 100 })], config);
  t.same(warn.map((f) => [f.check, f.severity, f.subject]), [['sockets.process', 'warning', 'pid:42']]);
  t.match(warn[0]?.message, /Process 42 \(nginx\) holds 80 sockets, 80% of its open-file limit \(100/);
  t.match(warn[0]?.remedy, /ps -f 42/);
  t.equal(evaluateSockets([holder({ sockets: 96, nofileSoft: 100 })], config)[0]?.severity, 'critical');
  const many = evaluateSockets([holder({ sockets: 20_000, nofileSoft: 1_048_576 })], config);
  t.match(many[0]?.message, /more than the 10,000 allowed/);
  const container = evaluateSockets([holder({ sockets: 90, nofileSoft: 100, containerId: 'c'.repeat(64), podUid: 'u' })], config);
  t.same(container[0]?.workload, { containerId: 'c'.repeat(64), podUid: 'u' });
});

t.test('live: a process holding 300 sockets under ulimit -n 350 fires sockets.process naming its pid', async (t) => {
  if (!requireLive(t, { commands: ['python3', 'bash'] })) return;
  const child = spawn('bash', ['-c', 'ulimit -n 350 && exec python3 -c "import socket,sys,time; s=[socket.socket() for _ in range(300)]; print(\'ready\', flush=True); time.sleep(600)"'], { stdio: ['ignore', 'pipe', 'ignore'] }); // stderr not inherited: the test runner's may be a socket
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
  const r = await sockets.collect(contextFor(sockets, '/'));
  t.equal(r.kind, 'ok');
  if (r.kind !== 'ok') return;
  const f = r.observations.find((o) => o.subject === `pid:${child.pid}`);
  t.ok(f, `finding for pid ${child.pid}`);
  t.equal(f?.severity, 'warning', `300 of 350 is 86%: ${f?.message}`);
  t.equal(f?.evidence['sockets'], 301, '300 it opened, plus the stdout pipe Node gives it (a unix socketpair)');
  t.equal(f?.evidence['nofileSoft'], 350);
  t.equal(f?.evidence['comm'], 'python3');
  t.equal(r.data.top[0]?.pid, child.pid, 'top holder');
});

t.test('live: socket holders inside containers are named by the runtime model', async (t) => {
  const { ensureTestImage, removeContainer, requireRuntime, runContainer, inspectField } = await import('../helpers/runtime.js');
  if (!requireRuntime(t)) return;
  ensureTestImage();
  runContainer('nw-sockets', ['nc', '-l', '-p', '8080'], ['--label', 'io.kubernetes.pod.name=api-7', '--label', 'io.kubernetes.pod.namespace=shop', '--label', 'io.kubernetes.container.name=api']);
  t.teardown(() => removeContainer('nw-sockets'));
  const pid = Number(inspectField('nw-sockets', '{{.State.Pid}}'));
  // docker run -d returns before nc has opened its socket: wait for the socket, not for a fixed time.
  let h: SocketHolder | undefined;
  await eventually(async () => {
    const r = await sockets.collect(contextFor(sockets, '/', { sets: ['collectors.sockets.top=1000'] }));
    h = r.kind === 'ok' ? r.data.top.find((x) => x.pid === pid) : undefined;
    return h !== undefined;
  });
  t.ok(h, `nc (pid ${pid}) listening in the container is a holder`);
  t.same(h && { name: h.containerName, pod: h.pod, ns: h.namespace }, { name: 'api', pod: 'api-7', ns: 'shop' });
});
