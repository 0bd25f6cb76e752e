import t, { type Test } from 'tap';
// Waits are generous bounds (20 s), not speed claims: under a full test run on a 2-core machine a watch can take seconds to reopen.
import fc from 'fast-check';
import { KubeClient } from '../../../agent/kube/client.js';
import { readFileSync } from 'node:fs';
import { PodWatcher, describeProbe, ephemeralEviction, toPodInfo } from '../../../agent/kube/pods.js';
import { quietLog } from '../../helpers/context.js';
import { FakeApiServer } from '../../helpers/fake-apiserver.js';
import { until } from '../../helpers/processes.js';
import type { PodInfo, PodListState } from '../../../collectors/types.js';

const RULES = [{ verbs: ['get', 'list', 'watch'], resources: ['pods'] }];

async function setup(t: Test, opts: { pageSize?: number; watchSeconds?: number } = {}) {
  const api = new FakeApiServer();
  await api.start();
  api.grant('agent-token-0123456789', 'system:serviceaccount:nodewarden:nodewarden-agent', RULES);
  const client = new KubeClient({ server: api.url, token: 'agent-token-0123456789', timeoutMs: 2000 });
  const watcher = new PodWatcher({ client, node: 'n1', log: quietLog, pageSize: opts.pageSize ?? 2, watchSeconds: opts.watchSeconds ?? 30, initialBackoffMs: 20, maxBackoffMs: 100 });
  t.teardown(async () => {
    await watcher.stop();
    await api.stop();
  });
  return { api, watcher };
}

/** The pods a state carries (an absent API server carries none). */
const podsOf = (s: PodListState): PodInfo[] => ('pods' in s ? s.pods : []);
const names = (w: PodWatcher) => podsOf(w.state()).map((p) => `${p.namespace}/${p.name}`).sort();

t.test('toPodInfo keeps only what the diagnosis reads', async (t) => {
  const info = toPodInfo({
    metadata: { uid: 'u1', namespace: 'ns', name: 'web', resourceVersion: '7', deletionTimestamp: '2026-01-01T00:00:00Z', deletionGracePeriodSeconds: 30, finalizers: ['example.com/cleanup'], ownerReferences: [{ kind: 'ReplicaSet', name: 'web-7d' }], annotations: { big: 'x'.repeat(10000) }, managedFields: [{ manager: 'kubelet' }] },
    spec: { nodeName: 'n1', terminationGracePeriodSeconds: 30, volumes: [{ name: 'data', emptyDir: {} }], containers: [{ name: 'app', image: 'x', env: [{ name: 'A', value: 'b' }] }] },
    status: { phase: 'Running', startTime: '2026-01-01T00:00:00Z', containerStatuses: [{ name: 'app', containerID: 'containerd://abc', state: { waiting: { reason: 'ContainerCreating' } }, lastState: { terminated: { finishedAt: '2026-01-01T00:01:00Z' } } }] },
  });
  t.same(info, {
    uid: 'u1', namespace: 'ns', name: 'web', finalizers: ['example.com/cleanup'], owners: ['ReplicaSet/web-7d'],
    containers: [{ name: 'app', state: 'waiting', containerId: 'abc', reason: 'ContainerCreating', finishedAt: '2026-01-01T00:01:00Z', lastTermination: { finishedAt: '2026-01-01T00:01:00Z' } }],
    volumes: ['data'], resourceVersion: '7', deletionTimestamp: '2026-01-01T00:00:00Z', deletionGracePeriodSeconds: 30, terminationGracePeriodSeconds: 30, startTime: '2026-01-01T00:00:00Z', phase: 'Running', nodeName: 'n1',
  } as never);
  t.notOk(JSON.stringify(info).includes('xxxx'), 'annotations are not kept');
  t.equal(toPodInfo({ metadata: { name: 'no-uid' } }), undefined, 'a pod without uid is not used');
  t.equal(toPodInfo('nonsense'), undefined);
});

t.test('toPodInfo keeps what a crash loop means: restartCount, the last termination, the memory limit and the liveness probe', async (t) => {
  const oom = toPodInfo(JSON.parse(readFileSync('test/fixtures/k8s/pods/oom-crashloop.json', 'utf8')));
  t.same(oom?.containers, [{
    name: 'api', state: 'waiting', containerId: '8e0b5f3c2a1d4e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f', reason: 'CrashLoopBackOff',
    message: 'back-off 20s restarting failed container=api pod=cart-api-7d9f8b6c4-x2lqp_shop(5f0c6a2e-8b1d-4c3a-9e7f-1a2b3c4d5e6f)', finishedAt: '2026-11-22T09:58:40Z',
    restartCount: 2, lastTermination: { reason: 'OOMKilled', exitCode: 137, finishedAt: '2026-11-22T09:58:40Z' },
    memoryLimit: '256Mi', livenessProbe: 'HTTP GET :8080/healthz every 10s, timeout 1s, 3 failures',
  }] as never);
  const batch = toPodInfo(JSON.parse(readFileSync('test/fixtures/k8s/pods/exit-1-crashloop.json', 'utf8')));
  t.same(batch?.containers.map((c) => [c.name, c.restartCount, c.memoryLimit, c.livenessProbe ?? null]), [['envoy', 0, '128Mi', 'TCP :9901 every 5s, timeout 1s, 3 failures'], ['worker', 7, '512Mi', null]], 'joined to the spec by name, not by position');
  const terminated = toPodInfo({ metadata: { uid: 'u', namespace: 'n', name: 'p' }, status: { containerStatuses: [{ name: 'a', restartCount: 4, state: { terminated: { reason: 'Error', exitCode: 143, finishedAt: '2026-01-01T00:02:00Z' } }, lastState: { terminated: { reason: 'OOMKilled', exitCode: 137, finishedAt: '2026-01-01T00:01:00Z' } } }] } });
  t.same(terminated?.containers[0]?.lastTermination, { reason: 'Error', exitCode: 143, finishedAt: '2026-01-01T00:02:00Z' }, 'a container terminated right now: that is its latest termination');
  t.equal(describeProbe({ exec: { command: ['sh', '-c', 'pg_isready -U postgres'] }, failureThreshold: 6 }), 'exec sh -c pg_isready -U postgres every 10s, timeout 1s, 6 failures');
  t.equal(describeProbe({ grpc: { port: 9090 } }), 'gRPC :9090 every 10s, timeout 1s, 3 failures');
  t.equal(describeProbe({ httpGet: { port: 'https', scheme: 'HTTPS' } }), 'HTTPS GET :https/ every 10s, timeout 1s, 3 failures');
  t.equal(describeProbe({ periodSeconds: 5 }), undefined, 'a probe with no handler is not described');
});

t.test("ephemeralEviction reads which local-storage bound kubelet's eviction message names", async (t) => {
  const Mi = 2 ** 20;
  t.same(ephemeralEviction('Evicted', 'Usage of EmptyDir volume "cache" exceeds the limit "1Gi". '), { scope: 'emptyDir', volume: 'cache', limit: 2 ** 30, usage: [] });
  t.same(ephemeralEviction('Evicted', 'Container app exceeded its local ephemeral storage limit "500Mi". '), { scope: 'container', container: 'app', limit: 500 * Mi, usage: [] });
  t.same(ephemeralEviction('Evicted', 'Pod ephemeral local storage usage exceeds the total limit of containers 2Gi. '), { scope: 'pod', limit: 2 * 2 ** 30, usage: [] });
  t.same(
    ephemeralEviction('Evicted', 'The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. Container app was using 900Ki, which exceeds its request of 0. Container side was using 12Mi, which exceeds its request of 1Mi. '),
    { scope: 'node-pressure', usage: [{ container: 'app', bytes: 900 * 1024, request: 0 }, { container: 'side', bytes: 12 * Mi, request: Mi }] },
  );
  t.equal(ephemeralEviction('Evicted', 'The node was low on resource: memory. Container app was using 2Gi, which exceeds its request of 1Gi. '), undefined, 'a memory eviction is not a storage one');
  t.equal(ephemeralEviction('OutOfcpu', 'Usage of EmptyDir volume "cache" exceeds the limit "1Gi". '), undefined, 'only Evicted');
  t.same(ephemeralEviction('Evicted', 'Usage of EmptyDir volume "cache" exceeds the limit "lots". '), { scope: 'emptyDir', volume: 'cache', usage: [] }, 'a malformed quantity is left out, not a throw');
  const evicted = toPodInfo({ metadata: { uid: 'u4', namespace: 'data', name: 'ingest-4' }, status: { phase: 'Failed', reason: 'Evicted', message: 'Usage of EmptyDir volume "cache" exceeds the limit "1Gi". ' } });
  t.same(evicted?.eviction, { scope: 'emptyDir', volume: 'cache', limit: 2 ** 30, usage: [] }, 'the watcher keeps it on the pod');
  t.equal(toPodInfo({ metadata: { uid: 'u5', namespace: 'n', name: 'p' }, status: { phase: 'Running' } })?.eviction, undefined);
});

t.test('fuzz: ephemeralEviction never throws and yields whole non-negative bytes', async () => {
  const sentence = fc.tuple(fc.constantFrom('Usage of EmptyDir volume "', 'Container ', 'Pod ephemeral local storage usage exceeds the total limit of containers ', 'The node was low on resource: ephemeral-storage. Container '), fc.string(), fc.constantFrom('" exceeds the limit "', ' exceeded its local ephemeral storage limit "', ' was using ', ', which exceeds its request of '), fc.oneof(fc.string(), fc.constantFrom('1Gi', '1e3', '-1', '0'))).map((p) => p.join(''));
  fc.assert(
    fc.property(fc.oneof(fc.constant('Evicted'), fc.string()), fc.oneof(fc.string(), sentence), (reason, message) => {
      const e = ephemeralEviction(reason, message);
      const bytes = e ? [e.limit, ...e.usage.flatMap((u) => [u.bytes, u.request])] : [];
      return bytes.every((b) => b === undefined || (Number.isInteger(b) && b >= 0));
    }),
    { numRuns: 2000 },
  );
});

t.test('fuzz: toPodInfo never throws on what an API server (or a proxy) might send, and keeps types straight', async (t) => {
  const podish = fc.record({
    metadata: fc.record({ uid: fc.oneof(fc.string(), fc.integer()), namespace: fc.string(), name: fc.string(), finalizers: fc.anything(), ownerReferences: fc.anything(), deletionTimestamp: fc.anything(), deletionGracePeriodSeconds: fc.anything() }, { requiredKeys: [] }),
    spec: fc.oneof(fc.anything(), fc.record({ containers: fc.array(fc.record({ name: fc.oneof(fc.constant('app'), fc.anything()), resources: fc.anything(), livenessProbe: fc.oneof(fc.anything(), fc.record({ httpGet: fc.anything(), exec: fc.anything(), periodSeconds: fc.anything() }, { requiredKeys: [] })) }, { requiredKeys: [] })) }, { requiredKeys: [] })),
    status: fc.oneof(fc.anything(), fc.record({ phase: fc.anything(), containerStatuses: fc.array(fc.record({ name: fc.oneof(fc.constant('app'), fc.anything()), state: fc.anything(), containerID: fc.anything(), lastState: fc.anything(), restartCount: fc.anything() }, { requiredKeys: [] })) }, { requiredKeys: [] })),
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(fc.oneof(fc.anything(), podish), (raw) => {
      const info = toPodInfo(raw);
      if (info === undefined) return true;
      return typeof info.uid === 'string' && info.finalizers.every((f) => typeof f === 'string') && info.containers.every((c) => typeof c.name === 'string' && ['waiting', 'running', 'terminated', 'unknown'].includes(c.state) && (c.restartCount === undefined || Number.isFinite(c.restartCount)) && (c.memoryLimit === undefined || typeof c.memoryLimit === 'string') && (c.livenessProbe === undefined || (typeof c.livenessProbe === 'string' && c.livenessProbe.length < 400)) && (c.lastTermination?.exitCode === undefined || typeof c.lastTermination.exitCode === 'number')) && (info.deletionGracePeriodSeconds === undefined || typeof info.deletionGracePeriodSeconds === 'number');
    }),
    { numRuns: 2000 },
  );
  t.pass('2,000 arbitrary inputs');
});

t.test('lists its node\'s pods page by page, then follows the watch', async (t) => {
  const { api, watcher } = await setup(t);
  for (let i = 0; i < 5; i++) api.addPod('ns', `p${i}`, 'n1', 'Running');
  api.addPod('ns', 'elsewhere', 'n2', 'Running');
  t.equal(watcher.state().status, 'unsynced', 'not synced before the first list');
  watcher.start();
  t.ok(await watcher.whenSynced(20_000), 'synced');
  t.same(names(watcher), ['ns/p0', 'ns/p1', 'ns/p2', 'ns/p3', 'ns/p4'], 'only this node\'s pods, across 3 pages');
  t.ok(api.requests.filter((r) => r.path === '/api/v1/pods').length >= 3, 'paged');
  await until(() => api.openWatches() === 1, 20_000, 'the watch');
  api.addPod('ns', 'p5', 'n1', 'Pending');
  api.markDeleted('ns', 'p1', { graceSeconds: 30 });
  api.removePod('ns', 'p2');
  api.addPod('ns', 'other-node', 'n2', 'Pending');
  await until(() => names(watcher).includes('ns/p5') && !names(watcher).includes('ns/p2'), 20_000, 'watch events');
  t.same(names(watcher), ['ns/p0', 'ns/p1', 'ns/p3', 'ns/p4', 'ns/p5']);
  t.ok(podsOf(watcher.state()).find((p) => p.name === 'p1')?.deletionTimestamp, 'deletionTimestamp seen through the watch');
});

t.test('a watch that expires (410 Gone) is re-listed without losing or duplicating pods', async (t) => {
  const { api, watcher } = await setup(t);
  for (let i = 0; i < 4; i++) api.addPod('ns', `p${i}`, 'n1', 'Running');
  watcher.start();
  await watcher.whenSynced(20_000);
  await until(() => api.openWatches() === 1, 20_000, 'the watch');
  // Changes the watcher never sees as events: they happen, then history is compacted and the watch ends.
  api.compact();
  api.addPod('ns', 'born-in-the-gap', 'n1', 'Pending');
  api.removePod('ns', 'p0');
  api.updatePod('ns', 'p1', { metadata: { finalizers: ['example.com/x'] } });
  api.compact();
  await until(() => watcher.stats.expired >= 1 && names(watcher).includes('ns/born-in-the-gap'), 20_000, 're-list after 410');
  t.same(names(watcher), ['ns/born-in-the-gap', 'ns/p1', 'ns/p2', 'ns/p3'], 'the gap\'s changes are there, nothing twice, nothing lost');
  t.same(podsOf(watcher.state()).find((p) => p.name === 'p1')?.finalizers, ['example.com/x']);
  t.equal(watcher.state().status, 'synced');
  t.ok(watcher.stats.lists >= 2, `listed ${watcher.stats.lists} times`);
  await until(() => api.openWatches() === 1, 20_000, 'watching again');
  api.addPod('ns', 'after', 'n1', 'Pending');
  await until(() => names(watcher).includes('ns/after'), 20_000, 'events after the re-list');
});

t.test('a pod created between the list and the watch is not lost (the watch starts at the list\'s resourceVersion)', async (t) => {
  const { api, watcher } = await setup(t, { pageSize: 100 });
  api.addPod('ns', 'listed', 'n1', 'Running');
  api.afterList = () => api.addPod('ns', 'in-the-window', 'n1', 'Pending');
  watcher.start();
  await watcher.whenSynced(20_000);
  await until(() => names(watcher).includes('ns/in-the-window'), 20_000, 'the pod created after the list');
  t.same(names(watcher), ['ns/in-the-window', 'ns/listed']);
  t.equal(watcher.stats.lists, 1, 'seen through the watch, not by listing again');
});

t.test('a watch the server ends is reopened from the last resourceVersion, not re-listed', async (t) => {
  const { api, watcher } = await setup(t, { watchSeconds: 1 });
  api.addPod('ns', 'a', 'n1', 'Running');
  watcher.start();
  await watcher.whenSynced(20_000);
  await until(() => watcher.stats.watches >= 2, 20_000, 'a second watch');
  api.addPod('ns', 'b', 'n1', 'Running');
  await until(() => names(watcher).includes('ns/b'), 20_000, 'b');
  t.equal(watcher.stats.lists, 1, 'one list only');
});

t.test('an API server that refuses, or is not there: unsynced with the reason, retried with backoff', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  api.grant('no-pods-token-0123456789', 'nobody', []);
  const client = new KubeClient({ server: api.url, token: 'no-pods-token-0123456789', timeoutMs: 1000 });
  const w = new PodWatcher({ client, node: 'n1', log: quietLog, initialBackoffMs: 10, maxBackoffMs: 50 });
  w.start();
  await until(() => w.stats.errors >= 2, 20_000, 'retries');
  const st = w.state();
  t.equal(st.status, 'unsynced');
  t.match(st.status === 'unsynced' ? st.reason : '', /403.*cannot list resource "pods"/);
  await w.stop();
  await api.stop();
  const gone = new PodWatcher({ client: new KubeClient({ server: api.url, token: 'x', timeoutMs: 500 }), node: 'n1', log: quietLog, initialBackoffMs: 10, maxBackoffMs: 50 });
  gone.start();
  await until(() => gone.stats.errors >= 1, 20_000, 'connection refused');
  t.match(gone.state().status === 'unsynced' ? (gone.state() as { reason: string }).reason : '', /ECONNREFUSED/);
  await gone.stop();
});

t.test('a pod spec\'s local-storage limits: containers\' ephemeral-storage, emptyDirs\' sizeLimit and medium; none set, none kept', async (t) => {
  const pod = (spec: Record<string, unknown>) => toPodInfo({ metadata: { uid: 'u1', namespace: 'data', name: 'ingest-3' }, spec, status: {} });
  const limited = pod({
    containers: [
      { name: 'app', resources: { limits: { 'ephemeral-storage': '2Gi', memory: '1Gi' }, requests: { 'ephemeral-storage': '1Gi' } } },
      { name: 'sidecar' },
    ],
    volumes: [{ name: 'cache', emptyDir: { sizeLimit: '500Mi' } }, { name: 'scratch', emptyDir: {} }, { name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } }, { name: 'cfg', configMap: { name: 'x' } }],
  });
  t.same(limited?.storage, {
    containers: [{ name: 'app', limit: 2 * 2 ** 30 }, { name: 'sidecar' }],
    emptyDirs: [{ name: 'cache', memory: false, sizeLimit: 500 * 2 ** 20 }, { name: 'scratch', memory: false }, { name: 'shm', memory: true, sizeLimit: 64 * 2 ** 20 }],
  });
  t.equal(pod({ containers: [{ name: 'app', resources: { limits: { memory: '1Gi' } } }], volumes: [{ name: 'scratch', emptyDir: {} }] })?.storage, undefined, 'no storage limit: nothing kept');
  t.equal(pod({ containers: [{ name: 'app' }], volumes: [{ name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: '1Gi' } }] })?.storage, undefined, 'only a memory-backed sizeLimit (RAM, not disk): nothing kept');
  t.same(pod({ containers: [{ name: 'app', resources: { limits: { 'ephemeral-storage': 'lots' } } }], volumes: [{ name: 'c', emptyDir: { sizeLimit: '1Gi' } }] })?.storage?.containers, [{ name: 'app' }], 'a malformed quantity is ignored');
});
