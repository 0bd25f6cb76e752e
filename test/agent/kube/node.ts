// The agent's view of its own Node (Ready), of its pods' probe failures (kubelet's Unhealthy Events) and
// of kubelet's image-GC failures on the Node (ImageGCFailed, FreeDiskSpaceFailed):
// the pure readers over Node and Event objects in the API's own shape (test/fixtures/k8s/nodes, events),
// then NodeView against the local API server (test/helpers/fake-apiserver.ts) and against hostile ones:
// a huge list, malformed JSON, a server that never answers, an oversized Node.
// Waits are generous bounds (20 s), not speed claims.
import t, { type Test } from 'tap';
import fc from 'fast-check';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { KubeClient } from '../../../agent/kube/client.js';
import { NodeView, nodeReady, nodeWarningsSelector, summariseProbeFailures, toKubeletGcEvent, toProbeEvent } from '../../../agent/kube/node.js';
import { quietLog } from '../../helpers/context.js';
import { FakeApiServer } from '../../helpers/fake-apiserver.js';
import { until } from '../../helpers/processes.js';

type Json = Record<string, unknown>;
const NODE = 'ip-10-0-3-17.eu-west-1.compute.internal';
const TOKEN = 'agent-token-0123456789';
const fixture = (p: string): Json => JSON.parse(readFileSync(`test/fixtures/k8s/${p}`, 'utf8')) as Json;

t.test('nodeReady: the Ready condition of a real Node, NotReady with kubelet\'s PLEG message; Unknown; Ready; none', async (t) => {
  t.same(nodeReady(fixture('nodes/pleg-notready.json')), { status: 'False', reason: 'KubeletNotReady', message: 'PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s', lastTransitionTime: '2026-11-22T10:04:31Z' });
  t.same(nodeReady(fixture('nodes/status-unknown.json')), { status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Kubelet stopped posting node status.', lastTransitionTime: '2026-11-22T10:03:02Z' });
  t.equal(nodeReady(fixture('nodes/ready.json'))?.status, 'True');
  t.equal(nodeReady({ status: { conditions: [{ type: 'MemoryPressure', status: 'False' }] } }), undefined, 'no Ready condition');
  t.equal(nodeReady({ status: { conditions: [{ type: 'Ready', status: 'maybe' }] } }), undefined, 'a status that is not one of the three');
  t.equal(nodeReady({ status: { conditions: 'nope' } }), undefined);
  t.equal(nodeReady('nonsense'), undefined);
  t.equal(nodeReady({ status: { conditions: [{ type: 'Ready', status: 'False', message: 'x'.repeat(100_000) }] } })?.message.length, 1000, 'the message is bounded');
});

t.test('toProbeEvent: kubelet\'s Unhealthy Events on this node, by source host or by this node\'s pod uids; nothing else', async (t) => {
  const live = toProbeEvent(fixture('events/unhealthy-liveness.json'), NODE);
  t.same(live, { namespace: 'shop', pod: 'cart-api-7d9f8b6c4-x2lqp', uid: '5f0c6a2e-8b1d-4c3a-9e7f-1a2b3c4d5e6f', probe: 'Liveness', count: 12, lastSeen: Date.parse('2026-11-22T10:01:40Z'), message: 'Liveness probe failed: Get "http://10.244.3.21:8080/healthz": context deadline exceeded (Client.Timeout exceeded while awaiting headers)' });
  t.equal(toProbeEvent(fixture('events/unhealthy-readiness.json'), NODE)?.probe, 'Readiness');
  t.equal(toProbeEvent(fixture('events/unhealthy-liveness.json'), 'another-node'), undefined, 'another node\'s kubelet');
  const noHost = { ...fixture('events/unhealthy-liveness.json'), source: { component: 'kubelet' }, reportingInstance: '' };
  t.equal(toProbeEvent(noHost, NODE), undefined, 'no host and not one of our pods');
  t.equal(toProbeEvent(noHost, NODE, new Set(['5f0c6a2e-8b1d-4c3a-9e7f-1a2b3c4d5e6f']))?.pod, 'cart-api-7d9f8b6c4-x2lqp', 'one of this node\'s pods, by uid');
  t.equal(toProbeEvent({ ...fixture('events/unhealthy-liveness.json'), reason: 'BackOff' }, NODE), undefined, 'not Unhealthy');
  t.equal(toProbeEvent({ ...fixture('events/unhealthy-liveness.json'), message: 'Readiness probe errored: rpc error: code = NotFound' }, NODE)?.probe, 'Readiness', 'an errored probe counts');
  t.equal(toProbeEvent({ ...fixture('events/unhealthy-liveness.json'), message: 'something else' }, NODE), undefined, 'not a probe message');
  t.equal(toProbeEvent({ ...fixture('events/unhealthy-liveness.json'), count: 1e12 }, NODE)?.count, 1e6, 'a count is bounded');
  t.equal(toProbeEvent({ ...fixture('events/unhealthy-liveness.json'), lastTimestamp: null, firstTimestamp: null, metadata: {} }, NODE), undefined, 'no time: not counted');
  // events.k8s.io/v1's shape (regarding, note, series, reportingInstance) as some clusters serve it.
  const v1 = { reason: 'Unhealthy', regarding: { kind: 'Pod', namespace: 'a', name: 'b' }, note: 'Startup probe failed: dial tcp 10.0.0.1:80: connect: connection refused', reportingInstance: NODE, series: { count: 4, lastObservedTime: '2026-11-22T10:00:00.000000Z' } };
  t.same(toProbeEvent(v1, NODE), { namespace: 'a', pod: 'b', probe: 'Startup', count: 4, lastSeen: Date.parse('2026-11-22T10:00:00.000000Z'), message: v1.note });
  for (const junk of [null, 1, 'x', [], { reason: 'Unhealthy', involvedObject: 'Pod' }, { reason: 'Unhealthy', involvedObject: { kind: 'Pod', name: 7, namespace: 'a' }, source: { host: NODE } }]) t.equal(toProbeEvent(junk, NODE), undefined, JSON.stringify(junk));
});

t.test('fuzz: nodeReady and toProbeEvent never throw on what an API server (or a proxy) might send, and keep types and bounds', async (t) => {
  const condition = fc.record({ type: fc.oneof(fc.constant('Ready'), fc.anything()), status: fc.oneof(fc.constantFrom('True', 'False', 'Unknown'), fc.anything()), reason: fc.anything(), message: fc.oneof(fc.string({ maxLength: 3000 }), fc.anything()), lastTransitionTime: fc.anything() }, { requiredKeys: [] });
  fc.assert(fc.property(fc.oneof(fc.anything(), fc.record({ status: fc.oneof(fc.anything(), fc.record({ conditions: fc.oneof(fc.anything(), fc.array(condition)) })) })), (raw) => {
    const r = nodeReady(raw);
    return r === undefined || (['True', 'False', 'Unknown'].includes(r.status) && typeof r.message === 'string' && r.message.length <= 1000 && typeof r.reason === 'string' && r.reason.length <= 128);
  }), { numRuns: 2000 });
  const event = fc.record({
    reason: fc.oneof(fc.constant('Unhealthy'), fc.anything()),
    involvedObject: fc.oneof(fc.anything(), fc.record({ kind: fc.oneof(fc.constant('Pod'), fc.anything()), namespace: fc.oneof(fc.string(), fc.anything()), name: fc.oneof(fc.string({ maxLength: 400 }), fc.anything()), uid: fc.anything() }, { requiredKeys: [] })),
    source: fc.oneof(fc.anything(), fc.record({ host: fc.oneof(fc.constant(NODE), fc.anything()) })),
    message: fc.oneof(fc.constantFrom('Liveness probe failed: x', 'Readiness probe errored: y'), fc.anything()),
    count: fc.anything(),
    lastTimestamp: fc.oneof(fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.anything()),
    series: fc.anything(),
  }, { requiredKeys: [] });
  fc.assert(fc.property(fc.oneof(fc.anything(), event), (raw) => {
    const e = toProbeEvent(raw, NODE);
    return e === undefined || (typeof e.namespace === 'string' && typeof e.pod === 'string' && e.pod.length <= 253 && ['Liveness', 'Readiness', 'Startup'].includes(e.probe) && Number.isInteger(e.count) && e.count >= 1 && e.count <= 1e6 && Number.isFinite(e.lastSeen) && e.message.length <= 300);
  }), { numRuns: 3000 });
  t.pass('5,000 arbitrary inputs');
});

t.test("toKubeletGcEvent: kubelet's ImageGCFailed and FreeDiskSpaceFailed on this Node, in both Event APIs' shapes; nothing else", async (t) => {
  t.same(toKubeletGcEvent(fixture('events/image-gc-failed-1.27.json'), NODE), { reason: 'ImageGCFailed', message: '(combined from similar events): failed to garbage collect required amount of images. Wanted to free 6089891840 bytes, but freed 0 bytes', count: 14, firstSeen: Date.parse('2026-11-22T09:18:02Z'), lastSeen: Date.parse('2026-11-22T10:03:05Z') });
  t.equal(toKubeletGcEvent(fixture('events/free-disk-space-failed-1.34.json'), NODE)?.reason, 'FreeDiskSpaceFailed');
  t.equal(toKubeletGcEvent(fixture('events/image-gc-failed-1.27.json'), 'another-node'), undefined, "another Node's");
  t.equal(toKubeletGcEvent(fixture('events/unhealthy-liveness.json'), NODE), undefined, 'a pod\'s Event');
  t.equal(toKubeletGcEvent({ ...fixture('events/image-gc-failed-1.27.json'), reason: 'NodeHasDiskPressure' }, NODE), undefined, 'another reason');
  t.equal(toKubeletGcEvent({ ...fixture('events/image-gc-failed-1.27.json'), message: 'x'.repeat(100_000) }, NODE)?.message.length, 1000, 'the message is bounded');
  t.equal(toKubeletGcEvent({ ...fixture('events/image-gc-failed-1.27.json'), firstTimestamp: '2026-11-22T11:00:00Z' }, NODE)?.firstSeen, Date.parse('2026-11-22T10:03:05Z'), 'a first time after the last is not believed');
  t.equal(toKubeletGcEvent({ ...fixture('events/image-gc-failed-1.27.json'), lastTimestamp: null, firstTimestamp: null, metadata: {} }, NODE), undefined, 'no time: not kept');
  const v1 = { reason: 'FreeDiskSpaceFailed', regarding: { kind: 'Node', name: NODE }, note: 'Failed to garbage collect required amount of images. Attempted to free 1 bytes, but only found 0 bytes eligible to free.', series: { count: 3, lastObservedTime: '2026-11-22T10:00:00.000000Z' }, eventTime: '2026-11-22T09:50:00.000000Z' };
  t.same(toKubeletGcEvent(v1, NODE), { reason: 'FreeDiskSpaceFailed', message: v1.note, count: 3, firstSeen: Date.parse(v1.eventTime), lastSeen: Date.parse(v1.series.lastObservedTime) }, 'events.k8s.io/v1');
  for (const junk of [null, 1, 'x', [], { reason: 'ImageGCFailed', involvedObject: 'Node' }, { reason: 'ImageGCFailed', involvedObject: { kind: 'Node', name: NODE }, message: 7, lastTimestamp: '2026-11-22T10:00:00Z' }]) t.equal(toKubeletGcEvent(junk, NODE), undefined, JSON.stringify(junk));
  t.equal(nodeWarningsSelector(NODE), `involvedObject.kind=Node,involvedObject.name=${NODE},type=Warning`);
});

t.test('fuzz: toKubeletGcEvent never throws on what an API server might send, and keeps types and bounds', async (t) => {
  const event = fc.record({
    reason: fc.oneof(fc.constantFrom('ImageGCFailed', 'FreeDiskSpaceFailed'), fc.anything()),
    involvedObject: fc.oneof(fc.anything(), fc.record({ kind: fc.oneof(fc.constant('Node'), fc.anything()), name: fc.oneof(fc.constant(NODE), fc.anything()) }, { requiredKeys: [] })),
    message: fc.oneof(fc.string({ maxLength: 3000 }), fc.anything()),
    count: fc.anything(),
    firstTimestamp: fc.oneof(fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.anything()),
    lastTimestamp: fc.oneof(fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.anything()),
    series: fc.anything(),
    metadata: fc.anything(),
  }, { requiredKeys: [] });
  fc.assert(fc.property(fc.oneof(fc.anything(), event), (raw) => {
    const e = toKubeletGcEvent(raw, NODE);
    return e === undefined || (['ImageGCFailed', 'FreeDiskSpaceFailed'].includes(e.reason) && typeof e.message === 'string' && e.message.length <= 1000 && Number.isInteger(e.count) && e.count >= 1 && e.count <= 1e6 && Number.isFinite(e.lastSeen) && e.firstSeen <= e.lastSeen);
  }), { numRuns: 3000 });
  t.pass('3,000 arbitrary inputs');
});

t.test('summariseProbeFailures: per pod and probe, within the window, most failures first', async (t) => {
  const now = Date.parse('2026-11-22T10:05:00Z');
  const e = (pod: string, probe: 'Liveness' | 'Readiness', count: number, minutesAgo: number) => ({ namespace: 'ns', pod, probe, count, lastSeen: now - minutesAgo * 60_000, message: `${probe} probe failed: ${pod}` });
  const out = summariseProbeFailures([e('a', 'Liveness', 3, 1), e('a', 'Liveness', 9, 2), e('b', 'Liveness', 20, 3), e('c', 'Readiness', 5, 4), e('old', 'Liveness', 99, 11)], now, 10 * 60_000);
  t.same(out.map((f) => [f.pod, f.probe, f.count]), [['b', 'Liveness', 20], ['a', 'Liveness', 12], ['c', 'Readiness', 5]], 'the 11-minute-old one is out of the window');
  t.equal(out[1]?.message, 'Liveness probe failed: a', 'the latest message');
});

async function api(t: Test) {
  const server = new FakeApiServer();
  await server.start();
  t.teardown(() => server.stop());
  server.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }, { verbs: ['create', 'list'], resources: ['events'] }]);
  return server;
}

function view(t: Test, url: string, opts: Partial<ConstructorParameters<typeof NodeView>[0]> = {}, timeoutMs = 2000) {
  const v = new NodeView({ client: new KubeClient({ server: url, token: TOKEN, timeoutMs }), node: NODE, log: quietLog, pollMs: 50, eventsMaxAgeMs: 50, ...opts });
  t.teardown(() => v.stop());
  return v;
}

t.test('NodeView against the local API server: Ready read and re-read; NotReady with PLEG; a missing Node; probe failures listed only when asked, paged, this node\'s only', async (t) => {
  const server = await api(t);
  server.addNode(NODE);
  server.setReady(NODE, 'True', 'KubeletReady', 'kubelet is posting ready status');
  const v = view(t, server.url, { pageSize: 2 });
  t.equal(v.ready().status, 'unsynced', 'not read yet');
  v.start();
  await until(() => v.ready().status === 'synced', 20_000, 'the Node read');
  const r = v.ready();
  t.equal(r.status === 'synced' ? r.ready?.status : r.status, 'True');
  server.setReady(NODE, 'False', 'KubeletNotReady', 'PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s');
  await until(() => {
    const st = v.ready();
    return st.status === 'synced' && st.ready?.status === 'False';
  }, 20_000, 'NotReady through the next read');
  t.equal(server.requests.filter((q) => q.path === '/api/v1/events').length, 0, 'no Events listed while nobody asks');

  const ev = fixture('events/unhealthy-liveness.json');
  const recent = new Date(Date.now() - 60_000).toISOString();
  for (const [i, pod] of ['a', 'b', 'c'].entries()) server.addEvent({ ...ev, metadata: { name: `${pod}.1`, namespace: 'shop' }, involvedObject: { kind: 'Pod', namespace: 'shop', name: pod, uid: `uid-${pod}` }, lastTimestamp: recent, count: 10 - i, source: { component: 'kubelet', host: NODE } });
  server.addEvent({ ...ev, metadata: { name: 'elsewhere.1', namespace: 'shop' }, involvedObject: { kind: 'Pod', namespace: 'shop', name: 'elsewhere', uid: 'uid-elsewhere' }, lastTimestamp: recent, source: { component: 'kubelet', host: 'another-node' } });
  server.addEvent({ ...ev, metadata: { name: 'pulled.1', namespace: 'shop' }, reason: 'Pulled', message: 'Successfully pulled image', lastTimestamp: recent });
  t.equal(v.probeFailures(600_000).status, 'unsynced', 'the first ask starts the list');
  await until(() => v.probeFailures(600_000).status === 'synced', 20_000, 'listed');
  const pf = v.probeFailures(600_000);
  t.same(pf.status === 'synced' ? pf.failures.map((f) => `${f.namespace}/${f.pod} ${f.count}`) : pf, ['shop/a 10', 'shop/b 9', 'shop/c 8'], 'this node\'s, by count; another node\'s and other reasons left out');
  t.same(pf.status === 'synced' ? [pf.scanned, pf.truncated] : [], [4, false], 'the selector let only Unhealthy pod Events through: 4 read');
  t.ok(server.requests.filter((q) => q.path === '/api/v1/events').length >= 2, 'paged (2 per page)');

  // The right to list Events goes: the last list stands (marked stale), so a firing pressure.load does not flap.
  server.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }]);
  const errors = v.stats.listErrors;
  await until(() => (v.probeFailures(600_000), v.stats.listErrors > errors), 20_000, 'a list refused');
  const stale = v.probeFailures(600_000);
  t.same(stale.status === 'synced' ? [stale.failures.length, /403/.test(stale.stale ?? '')] : stale, [3, true], 'the last list stands, with why it is stale');

  server.nodes.delete(NODE);
  await until(() => v.ready().status === 'unsynced', 20_000, 'the Node gone');
  const gone = v.ready();
  t.match(gone.status === 'unsynced' ? gone.reason : '', /does not exist/);
  t.equal(gone.status === 'unsynced' ? gone.last?.ready?.status : undefined, 'False', 'the last good read is kept: nothing clears by an API server that stopped answering');
});

t.test("NodeView: kubelet's image-GC failures listed only when asked, this Node's Warnings by field selector, the latest kept; paced; 403 is no permission", async (t) => {
  const server = await api(t);
  server.addNode(NODE);
  const v = view(t, server.url, { maxGcEvents: 3, gcEventsMaxAgeMs: 60_000 });
  v.start();
  await until(() => v.ready().status === 'synced', 20_000, 'the Node read');
  t.equal(server.requests.filter((q) => q.path === '/api/v1/events').length, 0, 'no Events listed while nobody asks');
  const node = (name: string, reason: string, message: string, minutesAgo: number, over: Json = {}) =>
    server.addEvent({ ...fixture('events/image-gc-failed-1.27.json'), metadata: { name, namespace: 'default' }, reason, message, lastTimestamp: new Date(Date.now() - minutesAgo * 60_000).toISOString(), ...over });
  for (let i = 0; i < 5; i++) node(`gc.${i}`, 'ImageGCFailed', `failed to garbage collect required amount of images. Wanted to free ${1000 + i} bytes, but freed 0 bytes`, 50 - i * 10);
  node('fds.1', 'FreeDiskSpaceFailed', 'Failed to garbage collect required amount of images. Attempted to free 5 bytes, but only found 0 bytes eligible to free.', 1);
  node('other-node', 'ImageGCFailed', 'Wanted to free 7 bytes, but freed 0 bytes', 1, { involvedObject: { kind: 'Node', name: 'another-node' } });
  node('normal', 'ImageGCFailed', 'Wanted to free 8 bytes, but freed 0 bytes', 1, { type: 'Normal' });
  node('pressure', 'EvictionThresholdMet', 'Attempting to reclaim ephemeral-storage', 1);
  t.equal(v.kubeletGcFailures().status, 'unsynced', 'the first ask starts the list');
  await until(() => v.kubeletGcFailures().status === 'synced', 20_000, 'listed');
  const st = v.kubeletGcFailures();
  t.same(st.status === 'synced' ? st.events.map((e) => `${e.reason} ${e.message.match(/\d+ bytes/)?.[0]}`) : st, ['FreeDiskSpaceFailed 5 bytes', 'ImageGCFailed 1004 bytes', 'ImageGCFailed 1003 bytes'], 'the latest 3 of this Node\'s, newest first');
  t.same(st.status === 'synced' ? [st.scanned, st.truncated] : [], [7, false], "the selector let only this Node's Warnings through");
  const q = server.requests.find((r) => r.path === '/api/v1/events')?.query ?? '';
  t.equal(new URLSearchParams(q).get('fieldSelector'), nodeWarningsSelector(NODE));
  t.equal(new URLSearchParams(q).get('resourceVersion'), '0', "from the API server's watch cache, not etcd");
  const lists = v.stats.gcLists;
  v.kubeletGcFailures();
  t.equal(v.stats.gcLists, lists, 'paced: not listed again within a minute');

  const fresh = view(t, server.url);
  server.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }]);
  fresh.start();
  fresh.kubeletGcFailures();
  await until(() => fresh.stats.gcListErrors > 0, 20_000, 'the list refused');
  const denied = fresh.kubeletGcFailures();
  t.same(denied.status === 'unsynced' ? [denied.forbidden, /^no permission to list this Node's Events/.test(denied.reason), /events: list/.test(denied.reason)] : denied, [true, true, true], 'unsynced: no permission, with what to grant');
});

t.test('NodeView without the right to list Events: unsynced with the 403, the Node still read', async (t) => {
  const server = await api(t);
  server.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }]);
  server.addNode(NODE);
  const v = view(t, server.url);
  v.start();
  v.probeFailures(600_000);
  await until(() => v.stats.listErrors > 0, 20_000, 'the list failed');
  const pf = v.probeFailures(600_000);
  t.match(pf.status === 'unsynced' ? pf.reason : '', /403/);
  await until(() => v.ready().status === 'synced', 20_000, 'the Node read');
});

/** A server that answers every request with `answer`. */
async function hostile(t: Test, answer: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<string> {
  const server = http.createServer(answer);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

t.test('hostile API servers cannot hurt the agent: malformed JSON, a huge list that ignores limit, one that never answers, an oversized Node', async (t) => {
  await t.test('malformed JSON: the Node is not a Node, the list is NW_ERR_PARSE; both unsynced with a reason', async (t) => {
    const url = await hostile(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind":"Node","metadata":{"name":"x"');
    });
    const v = view(t, url);
    await v.readNode();
    const r = v.ready();
    t.match(r.status === 'unsynced' ? r.reason : '', /not this Node/);
    v.start();
    v.probeFailures(600_000);
    await until(() => v.stats.listErrors > 0, 20_000, 'the list failed');
    const pf = v.probeFailures(600_000);
    t.match(pf.status === 'unsynced' ? pf.reason : '', /NW_ERR_PARSE|not JSON|Unexpected|JSON/);
  });

  await t.test('a list of 200,000 Events that ignores limit: at most maxEvents read, none kept that is not this node\'s, truncated', async (t) => {
    const item = JSON.stringify({ ...fixture('events/unhealthy-liveness.json'), lastTimestamp: new Date().toISOString(), source: { host: 'another-node' } });
    const url = await hostile(t, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      if (req.url?.startsWith('/api/v1/nodes/')) return res.end(JSON.stringify({ kind: 'Node', metadata: { name: NODE }, status: {} }));
      res.write('{"kind":"EventList","metadata":{"resourceVersion":"1","continue":"more"},"items":[');
      // Written as fast as the agent reads (the server's own buffers are not what is measured), until it hangs up.
      let i = 0;
      const more = () => {
        while (i < 200_000 && !res.destroyed) {
          const ok = res.write(Array.from({ length: 1000 }, (_, j) => (i + j === 0 ? '' : ',') + item).join(''));
          i += 1000;
          if (!ok) return void res.once('drain', more);
        }
        if (!res.destroyed) res.end(']}');
      };
      more();
    });
    const v = view(t, url, { maxEvents: 3000 }, 20_000);
    const heap = process.memoryUsage().heapUsed;
    v.start();
    v.probeFailures(600_000);
    await until(() => v.stats.lists + v.stats.listErrors > 0, 30_000, 'the list ended');
    const pf = v.probeFailures(600_000);
    t.same(pf.status === 'synced' ? [pf.failures.length, pf.scanned, pf.truncated] : pf, [0, 3000, true]);
    t.ok(process.memoryUsage().heapUsed - heap < 64 * 1024 * 1024, `the list was not held whole (heap grew ${Math.round((process.memoryUsage().heapUsed - heap) / 1048576)} MiB for a list of 200,000 Events, about 200 MiB)`);
    const asked = v.stats.lists;
    v.probeFailures(600_000);
    t.equal(v.stats.lists, asked, 'a continue token after maxEvents is not followed');
  });

  await t.test('a server that never answers: each call ends at the client\'s timeout, unsynced', async (t) => {
    const url = await hostile(t, () => {});
    const v = view(t, url, {}, 300);
    const started = Date.now();
    await v.readNode();
    t.ok(Date.now() - started < 5000, `the Node read gave up after ${Date.now() - started} ms`);
    const r = v.ready();
    t.match(r.status === 'unsynced' ? r.reason : '', /within 300 ms/);
    v.start();
    v.probeFailures(600_000);
    await until(() => v.stats.listErrors > 0, 20_000, 'the list timed out');
    const pf = v.probeFailures(600_000);
    t.match(pf.status === 'unsynced' ? pf.reason : '', /within 300 ms/);
  });

  await t.test('stopping the agent does not wait out a list or a read the server never answers', async (t) => {
    const url = await hostile(t, () => {});
    const v = view(t, url, {}, 20_000);
    v.start();
    v.probeFailures(600_000);
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await v.stop();
    t.ok(Date.now() - started < 2000, `stopped in ${Date.now() - started} ms with a 20 s timeout pending`);
  });

  await t.test('a Node over 4 MiB is refused, not buffered further', async (t) => {
    const url = await hostile(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Node', metadata: { name: NODE, annotations: { a: 'x'.repeat(5 * 1024 * 1024) } } }));
    });
    const v = view(t, url);
    await v.readNode();
    const r = v.ready();
    t.match(r.status === 'unsynced' ? r.reason : '', /larger than 4194304 bytes/);
  });
});
