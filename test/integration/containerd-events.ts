// Live: containerd's event stream against the real containerd, in the CRI's k8s.io namespace. A task
// that exits makes the collectors look again within a second or two (no timed assertion: we wait for
// it); containerd restarted -> the stream reconnects and everything is read afresh.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { ContainerdClient } from '../../agent/runtime/containerd.js';
import { ContainerdEvents, containerdStatus, decodeEnvelope, SUBSCRIBE, subscribeRequest, VERSION_METHOD } from '../../agent/runtime/containerd-events.js';
import { grpcStream } from '../../agent/runtime/grpc.js';
import { requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';
import { CONTAINERD_SOCK, copyToContainerd, ctrTry, ensureTestImage, followForTest, ourDaemonPid, requireRuntime, startContainerd, startRuntime, TEST_IMAGE } from '../helpers/runtime.js';

/** Whether `pred` came true within `ms` (30 s by default, for a loaded machine). */
const until = (pred: () => boolean, ms = 30_000) => eventually(pred, ms);

t.test('live: a k8s.io task exits -> collectors triggered; containerd restarted -> reconnect and resync', async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { commands: ['ctr'] })) return;
  if (ourDaemonPid('containerd') === undefined && !requireLive(t, { paths: ['/nonexistent: containerd was not started by scripts/start-test-runtime.sh, so this test will not restart it'] })) return;
  ensureTestImage();
  const image = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=events']);
  const name = `nw-events-${process.pid}`;
  const client = new ContainerdClient(CONTAINERD_SOCK, 5000);
  const events = new ContainerdEvents(CONTAINERD_SOCK, ['moby', 'k8s.io'], 5000, 1000);
  let connected = 0;
  events.on('connected', () => connected++);
  const { seen, triggered } = followForTest(t, events, (id, ev) => containerdStatus(client, id, ev));
  t.teardown(() => {
    ctrTry('-n', 'k8s.io', 'tasks', 'delete', name);
    ctrTry('-n', 'k8s.io', 'containers', 'delete', name);
    startRuntime();
  });
  events.start();
  t.ok(await until(() => connected === 1), 'the stream is up');
  const labels = ['io.kubernetes.pod.name=events', 'io.kubernetes.pod.namespace=default', 'io.kubernetes.container.name=work', 'io.kubernetes.pod.uid=00000000-0000-4000-8000-0000000000e1', 'io.cri-containerd.kind=container'];
  // Without --rm: the task exits and is left STOPPED, nobody cleans it up.
  const run = ctrTry('-n', 'k8s.io', 'run', ...labels.flatMap((l) => ['--label', l]), image, name, 'sh', '-c', 'exit 3');
  t.equal(run.code, 3, 'the task ran and exited');
  const t0 = Date.now();
  t.ok(await until(() => seen.some((e) => e.id === name && e.topic === '/tasks/exit' && e.namespace === 'k8s.io')), 'its /tasks/exit arrived');
  t.ok(await until(() => triggered.some((n) => n.join() === 'immutable,mounts')), 'the exited container left behind made the removal collectors run');
  t.comment(`task exit -> collectors triggered in ${Date.now() - t0} ms`);
  ctrTry('-n', 'k8s.io', 'tasks', 'delete', name);
  ctrTry('-n', 'k8s.io', 'containers', 'delete', name);
  t.ok(await until(() => seen.some((e) => e.id === name && e.topic === '/containers/delete')), 'its /containers/delete arrived');

  // containerd restarted: the stream reconnects and the gap makes every runtime collector run again.
  const before = triggered.length;
  const pid = ourDaemonPid('containerd')!;
  process.kill(pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 500));
  startContainerd();
  const t1 = Date.now();
  t.ok(await until(() => connected >= 2, 60_000), 'the stream reconnected');
  t.ok(await until(() => triggered.slice(before).some((n) => n.includes('drift') && n.includes('runtime'))), 'and the gap made every runtime collector run again');
  t.comment(`containerd started -> resync in ${Date.now() - t1} ms`);
});

t.test('live: a quiet stream stays up; it is kept alive by calls containerd answers, not by PINGs it punishes', async (t) => {
  if (!requireRuntime(t)) return;
  // Liveness every 100 ms: with HTTP/2 PINGs containerd (grpc-go's keepalive enforcement) answers the
  // third with GOAWAY ENHANCE_YOUR_CALM, "too_many_pings"; at the default 10 s that ended the stream
  // every 30 s, and every end re-ran the runtime collectors.
  const events = new ContainerdEvents(CONTAINERD_SOCK, ['nw-quiet-namespace'], 5000, 100);
  const gaps: string[] = [];
  let connected = 0;
  events.on('gap', (err: Error) => gaps.push(err.message));
  events.on('connected', () => connected++);
  t.teardown(() => events.stop());
  events.start();
  t.ok(await until(() => connected === 1), 'connected');
  await new Promise((r) => setTimeout(r, 3000));
  t.same(gaps, [], 'no gap in 3 s of liveness checks every 100 ms');
  t.equal(connected, 1, 'one connection all along (no reconnect, so no re-read of everything)');
});

t.test("live: docker's namespace left out of the subscription: containerd sends none of its events, the CRI's still come; back in, they come again", async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { commands: ['ctr'] })) return;
  ensureTestImage();
  const k8s = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=events']);
  const moby = copyToContainerd(TEST_IMAGE, 'moby', ['nodewarden-test=events']);
  const events = new ContainerdEvents(CONTAINERD_SOCK, ['moby', 'k8s.io'], 5000, 1000);
  let connected = 0;
  const resyncs: string[] = [];
  events.on('connected', () => connected++);
  events.on('resync', (why: string) => resyncs.push(why));
  const { seen } = followForTest(t, events, async () => undefined);
  const runOnce = (ns: string, image: string, name: string) => {
    const r = ctrTry('-n', ns, 'run', '--rm', image, name, 'true');
    if (r.code !== 0) t.fail(`ctr -n ${ns} run ${name}: exit ${r.code} ${r.stdout}`);
  };
  // What containerd itself sends for a subscription that names k8s.io only (decoded for every namespace).
  const raw: string[] = [];
  const rawStream = grpcStream(CONTAINERD_SOCK, SUBSCRIBE, subscribeRequest(['k8s.io']), { timeoutMs: 5000, pingMs: 1000, probe: VERSION_METHOD }, {
    onMessage: (m) => {
      const e = decodeEnvelope(m, ['moby', 'k8s.io']);
      if (e) raw.push(e.namespace ?? '');
    },
    onEnd: () => {},
  });
  t.teardown(() => rawStream.close());
  events.start();
  t.ok(await until(() => connected === 1), 'the stream is up');
  events.skip(['moby']);
  t.ok(await until(() => connected === 2), 'skipping moby subscribes again');
  t.same(events.following, ['k8s.io']);
  runOnce('moby', moby, `nw-skip-moby-${process.pid}`);
  runOnce('k8s.io', k8s, `nw-skip-k8s-${process.pid}`);
  t.ok(await until(() => seen.some((e) => e.id === `nw-skip-k8s-${process.pid}` && e.topic === '/containers/delete')), "the CRI's container's events arrive");
  t.same(seen.filter((e) => e.namespace === 'moby').map((e) => `${e.id} ${e.topic}`), [], "none of docker's namespace, though a container ran and ended there");
  t.ok(raw.includes('k8s.io') && !raw.includes('moby'), `containerd itself sent none of moby's (the filter is the server's): ${[...new Set(raw)].join(', ')}`);
  events.skip(['moby', 'k8s.io']);
  t.same(events.following, ['k8s.io'], 'never every namespace left out (no filter would be all of them)');
  events.skip([]);
  t.ok(await until(() => connected === 3), 'back in: subscribes again');
  t.same(resyncs, ['resubscribed', 'resubscribed'], 'each a resync said to be ours, not an outage (logged at debug, not warn)');
  runOnce('moby', moby, `nw-skip-moby2-${process.pid}`);
  t.ok(await until(() => seen.some((e) => e.id === `nw-skip-moby2-${process.pid}` && e.namespace === 'moby' && e.topic === '/containers/delete')), "docker's namespace's events arrive again");
});
