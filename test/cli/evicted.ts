import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { freePort, run, runAsync, until, writeTokens } from '../helpers/processes.js';

t.test('nodewarden evicted lists and deletes evicted pods through a kubeconfig, and says what RBAC is missing', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
  const evicted = (minutes: number, message: string) => ({ status: { reason: 'Evicted', message, conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: ago(minutes) }] } });
  api.addPod('shop', 'web-7f9c-abcde', 'worker-1', 'Failed', evicted(120, 'The node was low on resource: ephemeral-storage.'));
  api.addPod('shop', 'web-7f9c-fresh', 'worker-1', 'Failed', evicted(10, 'The node was low on resource: memory.'));
  api.addPod('ilog', 'ilogrescxlp-9b95d4bc7-6rxhr', 'worker-2', 'Failed', evicted(180, 'The node had condition: [DiskPressure].'));
  api.addPod('shop', 'batch-oom', 'worker-1', 'Failed', { status: { reason: 'OOMKilled' } });
  api.addPod('shop', 'web-running', 'worker-1', 'Running');
  api.grant('ops-token', 'ops', [{ verbs: ['list', 'delete'], resources: ['pods'] }]);
  api.grant('viewer-token', 'viewer', [{ verbs: ['get'], resources: ['pods'] }]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-kubeconfig-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = (token: string) => {
    const file = path.join(dir, `${token}.yaml`);
    writeFileSync(file, `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: ${token}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n    namespace: shop\ncurrent-context: c\n`);
    return { KUBECONFIG: file };
  };

  const all = await runAsync(['evicted', '--all-namespaces', '--older-than', '1h'], kubeconfig('ops-token'));
  t.equal(all.code, 0, all.stderr);
  t.match(all.stdout, /NAMESPACE\s+NAME\s+NODE\s+AGE\s+MESSAGE/);
  t.match(all.stdout, /ilog\s+ilogrescxlp-9b95d4bc7-6rxhr\s+worker-2\s+3h 0m\s+The node had condition: \[DiskPressure\]\./);
  t.match(all.stdout, /shop\s+web-7f9c-abcde\s+worker-1\s+2h 0m/);
  t.notMatch(all.stdout, /web-7f9c-fresh/, 'evicted 10 minutes ago: younger than --older-than 1h');
  t.notMatch(all.stdout, /batch-oom|web-running/, 'only pods kubelet evicted');
  t.ok(api.requests.some((r) => r.method === 'GET' && r.path === '/api/v1/pods'), 'one cluster-wide list (with a field selector), as kubectl would');

  const json = JSON.parse((await runAsync(['evicted', '--older-than', '0s', '--json'], kubeconfig('ops-token'))).stdout) as { name: string }[];
  t.same(json.map((p) => p.name), ['web-7f9c-abcde', 'web-7f9c-fresh'], "without -A: the kubeconfig context's namespace");

  const del = await runAsync(['evicted', '-n', 'shop', '--older-than', '1h', '--delete'], kubeconfig('ops-token'));
  t.equal(del.code, 0, del.stderr);
  t.match(del.stdout, /deleted shop\/web-7f9c-abcde/);
  t.same([...api.pods.keys()].sort(), ['ilog/ilogrescxlp-9b95d4bc7-6rxhr', 'shop/batch-oom', 'shop/web-7f9c-fresh', 'shop/web-running'], 'only that pod was deleted');

  const denied = await runAsync(['evicted', '-A'], kubeconfig('viewer-token'));
  t.equal(denied.code, 3);
  t.match(denied.stderr, /403.*cannot list resource "pods"/);
  const usage = await runAsync(['evicted', '-n', 'x', '-A'], kubeconfig('ops-token'));
  t.equal(usage.code, 3);
  t.match(usage.stderr, /exclude each other/);
});

t.test('the aggregator deletes evicted pods on a schedule when asked to (--evicted-cleanup)', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
  api.addPod('shop', 'old-evicted', 'worker-1', 'Failed', { status: { reason: 'Evicted', message: 'low on disk', conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: ago(90) }] } });
  api.addPod('shop', 'new-evicted', 'worker-1', 'Failed', { status: { reason: 'Evicted', message: 'low on disk', conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: ago(5) }] } });
  api.grant('agg-token', 'system:serviceaccount:nodewarden:nodewarden-aggregator', [{ verbs: ['list', 'delete'], resources: ['pods'] }]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-cleanup-'));
  const kubeconfig = path.join(dir, 'kubeconfig.yaml');
  writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: agg-token\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\ncurrent-context: c\n`);
  const tokens = writeTokens(dir);
  const port = await freePort();
  const agg = run(['aggregator', '--listen', `127.0.0.1:${port}`, '--tokens-dir', tokens, '--evicted-cleanup', '1s', '--evicted-older-than', '1h', '--log-level', 'info'], { KUBECONFIG: kubeconfig });
  t.teardown(() => {
    agg.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await until(() => !api.pods.has('shop/old-evicted'), 15_000, 'the scheduled cleanup');
  t.ok(api.pods.has('shop/new-evicted'), 'the recent one stays (younger than --evicted-older-than)');
});
