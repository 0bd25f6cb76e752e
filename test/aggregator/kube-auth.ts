import t from 'tap';
import WebSocket from 'ws';
import { pino } from 'pino';
import { Aggregator } from '../../aggregator/server.js';
import { KubeAgentAuth } from '../../aggregator/kube-auth.js';
import { FakeApiServer, aggregatorKubeApi } from '../helpers/fake-apiserver.js';
import { finding } from '../helpers/findings.js';
import { until } from '../helpers/processes.js';

const log = pino({ level: 'silent' });

/** Opens an agent connection with `token` and says hello as `node`: welcome, a close, or an HTTP refusal. */
function hello(url: string, token: string, node: string): Promise<{ ws?: WebSocket; welcome?: boolean; code?: number; reason?: string; status?: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: `Bearer ${token}` } });
    ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode }));
    ws.once('error', () => undefined);
    ws.once('open', () => ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'test', collectors: ['disk'] })));
    ws.once('message', (raw: Buffer) => {
      if ((JSON.parse(raw.toString()) as { type: string }).type === 'welcome') resolve({ ws, welcome: true });
    });
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
}

t.test('--agent-auth kubernetes: a bound service-account token speaks for its own node only', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.addNode('worker-1');
  api.addNode('worker-2');
  api.addPod('nodewarden', 'nodewarden-agent-aaaaa', 'worker-1', 'Running');
  api.addPod('nodewarden', 'nodewarden-agent-bbbbb', 'worker-2', 'Running');
  api.addPod('default', 'web', 'worker-1', 'Running');
  const kube = await aggregatorKubeApi(t, api);
  const kubeAuth = new KubeAgentAuth(kube, { audience: 'nodewarden', serviceAccounts: ['nodewarden:nodewarden-agent'], timeoutMs: 5000, cacheMs: 60_000, maxInFlight: 8 });
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: [{ role: 'agent', name: 'shared', secret: 'shared-agent-token-0123456789' }, { role: 'tail', name: 'ops', secret: 'tail-token-0123456789' }], kubeAuth, nodeSweepMs: 200, version: 'test', log, silentAfterMs: 60_000, heartbeatMs: 60_000 });
  const { url } = await agg.start();
  t.teardown(() => agg.stop());

  const issue = (pod: string, opts: { audiences?: string[]; nodeExtra?: boolean; serviceAccount?: string; namespace?: string } = {}) =>
    api.issueToken({ namespace: opts.namespace ?? 'nodewarden', serviceAccount: opts.serviceAccount ?? 'nodewarden-agent', audiences: opts.audiences ?? ['nodewarden'], pod, nodeExtra: opts.nodeExtra ?? true });
  const w1 = issue('nodewarden-agent-aaaaa');

  const real = await hello(url, w1, 'worker-1');
  t.ok(real.welcome, `the agent on worker-1 is welcome as worker-1 (${JSON.stringify({ ...real, ws: undefined })})`);
  t.ok(api.requests.some((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews'), 'checked with a TokenReview');
  const impostor = await hello(url, w1, 'worker-2');
  t.match(impostor, { code: 4005, reason: /this credential speaks for node worker-1, not worker-2/ }, "worker-1's token cannot hello as worker-2");
  const shared = await hello(url, 'shared-agent-token-0123456789', 'worker-1');
  t.match(shared, { code: 4005, reason: /node-bound agent connected; a shared token cannot replace it/ }, 'a shared token cannot kick the real agent off');
  t.equal(real.ws!.readyState, WebSocket.OPEN, 'the real agent is still connected');
  real.ws!.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('worker-1', 'disk.usage', '/', 'critical')] }));

  // A shared token may still speak for nodes outside the cluster's control, but only for nodes that exist.
  const ghost = await hello(url, 'shared-agent-token-0123456789', 'ghost-node');
  t.ok(ghost.welcome, 'welcomed first (its messages are not held up)');
  const ghostClosed = await new Promise<{ code: number; reason: string }>((resolve) => ghost.ws!.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  t.match(ghostClosed, { code: 4005, reason: /node ghost-node does not exist in the cluster/ });
  t.notOk(agg.fleet.has('ghost-node'), 'a made-up node is not kept, silent or otherwise');
  const sharedReal = await hello(url, 'shared-agent-token-0123456789', 'worker-2');
  t.ok(sharedReal.welcome, 'a shared token for a node that exists is welcome (shared tokens are not node-bound)');
  sharedReal.ws!.close();
  await until(() => agg.fleet.nodeInfos().some((n) => n.node === 'worker-2' && !n.connected), 10_000, 'the aggregator to see the shared-token agent go');

  // Before Kubernetes 1.30 there is no node-name extra: the pod the token is bound to says where it runs.
  const old = await hello(url, issue('nodewarden-agent-bbbbb', { nodeExtra: false }), 'worker-2');
  t.ok(old.welcome, 'node found through the pod (spec.nodeName)');
  t.ok(api.requests.some((r) => r.method === 'GET' && r.path === '/api/v1/namespaces/nodewarden/pods/nodewarden-agent-bbbbb'));

  t.match(await hello(url, issue('nodewarden-agent-aaaaa', { audiences: ['https://kubernetes.default.svc'] }), 'worker-1'), { status: 401 }, 'a token for another audience');
  t.match(await hello(url, issue('web', { namespace: 'default', serviceAccount: 'default' }), 'worker-1'), { status: 403 }, "another service account's token");
  t.match(await hello(url, 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJl', 'worker-1'), { status: 401 }, 'a token the API server never issued');
  t.match(await hello(url, 'not-a-token-at-all-0123456789', 'worker-1'), { status: 401 });
  const afterPodGone = issue('nodewarden-agent-bbbbb', { nodeExtra: false });
  api.pods.delete('nodewarden/nodewarden-agent-bbbbb');
  t.match(await hello(url, afterPodGone, 'worker-2'), { status: 401 }, 'the pod it was bound to is gone');

  // worker-2 is deleted from the cluster: once its agent is gone, the node is forgotten, not silent forever.
  old.ws!.close();
  api.nodes.delete('worker-2');
  await until(() => !agg.fleet.has('worker-2'), 30_000, 'the node sweep to forget worker-2').catch(() => undefined);
  t.notOk(agg.fleet.has('worker-2'), 'a node deleted from the cluster is forgotten');
  t.ok(agg.fleet.has('worker-1'), 'a node that exists is kept');
  real.ws!.close();
});
