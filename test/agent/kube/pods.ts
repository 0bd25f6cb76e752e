import t, { type Test } from 'tap';
// Waits are generous bounds (20 s), not speed claims: under a full test run on a 2-core machine a watch can take seconds to reopen.
import fc from 'fast-check';
import { KubeClient } from '../../../agent/kube/client.js';
import { PodWatcher, toPodInfo } from '../../../agent/kube/pods.js';
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
    containers: [{ name: 'app', state: 'waiting', containerId: 'abc', reason: 'ContainerCreating', finishedAt: '2026-01-01T00:01:00Z' }],
    volumes: ['data'], resourceVersion: '7', deletionTimestamp: '2026-01-01T00:00:00Z', deletionGracePeriodSeconds: 30, terminationGracePeriodSeconds: 30, startTime: '2026-01-01T00:00:00Z', phase: 'Running', nodeName: 'n1',
  } as never);
  t.notOk(JSON.stringify(info).includes('xxxx'), 'annotations are not kept');
  t.equal(toPodInfo({ metadata: { name: 'no-uid' } }), undefined, 'a pod without uid is not used');
  t.equal(toPodInfo('nonsense'), undefined);
});

t.test('fuzz: toPodInfo never throws on what an API server (or a proxy) might send, and keeps types straight', async (t) => {
  const podish = fc.record({
    metadata: fc.record({ uid: fc.oneof(fc.string(), fc.integer()), namespace: fc.string(), name: fc.string(), finalizers: fc.anything(), ownerReferences: fc.anything(), deletionTimestamp: fc.anything(), deletionGracePeriodSeconds: fc.anything() }, { requiredKeys: [] }),
    spec: fc.anything(),
    status: fc.oneof(fc.anything(), fc.record({ phase: fc.anything(), containerStatuses: fc.array(fc.record({ name: fc.anything(), state: fc.anything(), containerID: fc.anything(), lastState: fc.anything() }, { requiredKeys: [] })) }, { requiredKeys: [] })),
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(fc.oneof(fc.anything(), podish), (raw) => {
      const info = toPodInfo(raw);
      if (info === undefined) return true;
      return typeof info.uid === 'string' && info.finalizers.every((f) => typeof f === 'string') && info.containers.every((c) => typeof c.name === 'string' && ['waiting', 'running', 'terminated', 'unknown'].includes(c.state)) && (info.deletionGracePeriodSeconds === undefined || typeof info.deletionGracePeriodSeconds === 'number');
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
