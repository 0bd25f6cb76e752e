import t from 'tap';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';
import { cleanUpEvicted, deleteEvicted, listEvicted, scheduleEvictedCleanup } from '../../aggregator/evicted.js';

const NOW = Date.parse('2026-12-01T12:00:00Z');
function pod(ns: string, name: string, reason: string | undefined, at: string): V1Pod {
  return {
    metadata: { namespace: ns, name, creationTimestamp: new Date('2026-11-01T00:00:00Z') },
    spec: { nodeName: 'node-a', containers: [] },
    status: { phase: 'Failed', reason, message: reason === 'Evicted' ? 'The node was low on resource: ephemeral-storage.' : 'OOM', conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: new Date(at) }] },
  };
}

function fakeApi(pods: V1Pod[], fail?: { code: number; body: string }) {
  const calls: string[] = [];
  const api = {
    async listPodForAllNamespaces(q: { fieldSelector: string }) {
      calls.push(`list * ${q.fieldSelector}`);
      if (fail) throw Object.assign(new Error('HTTP-Code: 403'), fail);
      return { items: pods };
    },
    async listNamespacedPod(q: { namespace: string; fieldSelector: string }) {
      calls.push(`list ${q.namespace} ${q.fieldSelector}`);
      return { items: pods.filter((p) => p.metadata?.namespace === q.namespace) };
    },
    async deleteNamespacedPod(q: { name: string; namespace: string }) {
      calls.push(`delete ${q.namespace}/${q.name}`);
      if (q.name.includes('stuck')) throw Object.assign(new Error('x'), { code: 404, body: '{"message":"pods \\"stuck\\" not found"}' });
      return {};
    },
  };
  return { api: api as unknown as CoreV1Api, calls };
}

t.test('lists only evicted pods older than the cut-off, sorted, with node, message and when', async (t) => {
  const { api, calls } = fakeApi([
    pod('shop', 'web-2', 'Evicted', '2026-12-01T10:00:00Z'),
    pod('default', 'job-1', 'Evicted', '2026-12-01T09:00:00Z'),
    pod('shop', 'web-1', 'Evicted', '2026-12-01T11:59:00Z'),
    pod('shop', 'oom', 'OOMKilled', '2026-12-01T08:00:00Z'),
  ]);
  const pods = await listEvicted(api, { olderThanMs: 60 * 60 * 1000, now: NOW });
  t.same(pods.map((p) => `${p.namespace}/${p.name}`), ['default/job-1', 'shop/web-2'], 'the recent one and the OOM-killed one are left alone');
  t.same(pods[0], { namespace: 'default', name: 'job-1', node: 'node-a', message: 'The node was low on resource: ephemeral-storage.', evictedAt: '2026-12-01T09:00:00.000Z' });
  t.same(calls, ['list * status.phase=Failed'], 'the API filters on phase, not the client on every pod');
  const inShop = await listEvicted(api, { namespace: 'shop', olderThanMs: 0, now: NOW });
  t.same(inShop.map((p) => p.name), ['web-1', 'web-2']);
});

t.test('an API refusal is NW_ERR_RUNTIME carrying the API server’s message', async (t) => {
  const { api } = fakeApi([], { code: 403, body: '{"message":"pods is forbidden: User \\"x\\" cannot list resource"}' });
  const err = await listEvicted(api, { olderThanMs: 0, now: NOW }).catch((e: unknown) => e);
  t.match(err, { code: 'NW_ERR_RUNTIME', message: /403 pods is forbidden/ });
});

t.test('delete reports each pod it could not delete and carries on with the rest', async (t) => {
  const { api, calls } = fakeApi([]);
  const deleted: string[] = [];
  const list = [
    { namespace: 'a', name: 'stuck', node: 'n', message: '', evictedAt: '' },
    { namespace: 'a', name: 'gone', node: 'n', message: '', evictedAt: '' },
  ];
  const failed = await deleteEvicted(api, list, (p) => deleted.push(p.name));
  t.same(deleted, ['gone']);
  t.same(calls, ['delete a/stuck', 'delete a/gone']);
  t.equal(failed.length, 1);
  t.match(failed[0]?.error, /404 pods "stuck" not found/);
});

function logLines() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

t.test('a cleanup round deletes the evicted pods past the cut-off, logs each, and the ones it could not delete', async (t) => {
  const old = new Date(Date.now() - 2 * 3_600_000).toISOString();
  const { api, calls } = fakeApi([pod('shop', 'web-1', 'Evicted', old), pod('shop', 'stuck-1', 'Evicted', old), pod('shop', 'fresh', 'Evicted', new Date().toISOString()), pod('shop', 'oom', 'OOMKilled', old)]);
  const { log, lines } = logLines();
  await cleanUpEvicted(api, 3_600_000, log);
  t.same(calls, ['list * status.phase=Failed', 'delete shop/stuck-1', 'delete shop/web-1'], 'only evicted pods older than an hour, cluster-wide');
  t.match(lines.find((l) => l['msg'] === 'deleted evicted pod'), { namespace: 'shop', pod: 'web-1', node: 'node-a' });
  t.match(lines.find((l) => l['msg'] === 'evicted-pod cleanup done'), { found: 2, failed: 1 });
  t.match(lines.find((l) => l['msg'] === 'could not delete evicted pod'), { level: 40, pod: 'shop/stuck-1', error: /404/ });
});

t.test('a round that cannot list is logged with the API server’s reason and does not throw (the aggregator serves on)', async (t) => {
  const { api } = fakeApi([], { code: 403, body: '{"message":"pods is forbidden"}' });
  const { log, lines } = logLines();
  await t.resolves(cleanUpEvicted(api, 0, log));
  t.match(lines.find((l) => l['msg'] === 'evicted-pod cleanup failed'), { level: 50, err: /403 pods is forbidden/ });
});

t.test('the schedule runs a round at once and then every interval, until stopped', async (t) => {
  const { api, calls } = fakeApi([]);
  const { log } = logLines();
  const stop = scheduleEvictedCleanup(api, { everyMs: 5, olderThanMs: 0, log });
  t.equal(calls.length, 1, 'the first round starts at once, not after the first interval');
  await new Promise<void>((resolve) => {
    const wait = setInterval(() => calls.length >= 3 && (clearInterval(wait), resolve()), 2);
  });
  stop();
  const rounds = calls.length;
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.equal(calls.length, rounds, 'no round after stop');
});
