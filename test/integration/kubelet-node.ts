// The agent against the local API server (test/helpers/fake-apiserver.ts, the real protocol) for what it
// reads of its own Node and of its pods' probes: kubelet's "PLEG is not healthy" NotReady while dockerd is
// really frozen (SIGSTOP) names the hanging call, and clears only once the Node is Ready again; kubelet's
// Unhealthy Events with a loaded node (a fixture /proc/loadavg under --host-root) name the pods, and a
// calm node says nothing. kubelet cannot run here: its healthz is a local HTTP server answering as
// kubelet's does. Waits are generous bounds (30 s), not speed claims.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t, { type Test } from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../agent/config.js';
import { startAgent, type AgentDaemon } from '../../agent/daemon.js';
import { COLLECTORS } from '../../collectors/index.js';
import type { Finding } from '../../protocol/finding.js';
import { quietLog } from '../helpers/context.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { requireLive } from '../helpers/live.js';
import { eventually, until } from '../helpers/processes.js';
import { ourDaemonPid, requireRuntime } from '../helpers/runtime.js';

const TOKEN = 'agent-token-0123456789abcdef';
const NODE = 'test-node';
const RULES = [
  { verbs: ['get'], resources: ['nodes'] },
  { verbs: ['patch'], resources: ['nodes/status'] },
  { verbs: ['create', 'list'], resources: ['events'] },
  { verbs: ['get', 'list', 'watch'], resources: ['pods'] },
];
const PLEG = 'PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s';
const PLEG_BODY = `[+]ping ok\n[+]log ok\n[-]pleg failed: ${PLEG}\n[+]syncloop ok\nhealthz check failed\n`;

/** kubelet's healthz: 200 "ok", or 500 with its failed checks, as `answer` says at the time. */
async function fakeHealthz(t: Test, answer: () => { status: number; body: string }): Promise<string> {
  const server = http.createServer((_req, res) => {
    const a = answer();
    res.writeHead(a.status);
    res.end(a.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`;
}

/** The local API server with this node and the agent's RBAC. */
async function apiFor(t: Test): Promise<FakeApiServer> {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', RULES);
  api.addNode(NODE);
  return api;
}

/** The agent on NODE against `api`, with only `keep` collectors enabled and `sets` on top. */
async function agentFor(t: Test, api: FakeApiServer, keep: string[], sets: string[]): Promise<AgentDaemon> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-kubelet-node-'));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, TOKEN);
  const all = ['kubernetes.enabled=true', `kubernetes.server=${api.url}`, `kubernetes.tokenFile=${tokenFile}`, 'kubernetes.nodeInterval=1s', "agent.listen=''", ...sets];
  for (const c of COLLECTORS) if (!keep.includes(c.name)) all.push(`collectors.${c.name}.enabled=false`);
  const agent = await startAgent(loadConfig({ sets: all, node: NODE }), { log: quietLog });
  t.teardown(async () => {
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return agent;
}

const find = (agent: AgentDaemon, check: string): Finding | undefined => agent.runner.active().find((f) => f.check === check);

t.test('live: the Node NotReady with "PLEG is not healthy" while dockerd is frozen: kubelet.pleg is critical, quotes kubelet and names the call that hangs; it stays while the Node is NotReady, and clears once the Node is Ready', async (t) => {
  if (!requireRuntime(t)) return;
  const pid = ourDaemonPid('dockerd');
  if (pid === undefined && !requireLive(t, { paths: ['/nonexistent: dockerd was not started by scripts/start-test-runtime.sh, so this test will not freeze it'] })) return;
  const api = await apiFor(t);
  api.setReady(NODE, 'True', 'KubeletReady', 'kubelet is posting ready status');
  let healthz = { status: 200, body: 'ok' };
  const url = await fakeHealthz(t, () => healthz);
  const agent = await agentFor(t, api, ['runtime', 'kubelet'], ['runtime.timeout=1s', 'collectors.runtime.interval=1s', 'collectors.kubelet.interval=1s', `collectors.kubelet.healthzUrl=${url}`]);
  await until(() => agent.runner.statuses().some((s) => s.name === 'kubelet' && s.status === 'ok'), 30_000, 'a first kubelet run');
  t.equal(find(agent, 'kubelet.pleg'), undefined, 'Ready, docker answers: nothing');

  let resumed = false;
  t.teardown(() => {
    if (!resumed) process.kill(pid!, 'SIGCONT');
  });
  process.kill(pid!, 'SIGSTOP');
  // What kubelet does three minutes into such a freeze, played at once: healthz fails, the Node goes NotReady.
  healthz = { status: 500, body: PLEG_BODY };
  api.setReady(NODE, 'False', 'KubeletNotReady', PLEG);
  t.ok(await eventually(() => /NotReady.*docker unresponsive/.test(find(agent, 'kubelet.pleg')?.message ?? ''), 30_000), 'kubelet.pleg names the frozen runtime');
  const f = find(agent, 'kubelet.pleg')!;
  t.equal(f.severity, 'critical');
  t.match(f.message, new RegExp(`^${NODE} is NotReady since \\S+: kubelet says "PLEG is not healthy: pleg was last seen active 3m0\\.5s ago; threshold is 3m0s"\\. On this node the container runtime does not answer: docker unresponsive for \\d+ s \\(docker GET /\\S*_ping: [^)]*within 1000 ms\\)`), 'the call that hangs, from the agent\'s own probe');
  t.same([f.evidence['reason'], f.evidence['kubeletMessage']], ['KubeletNotReady', PLEG]);

  process.kill(pid!, 'SIGCONT');
  resumed = true;
  t.ok(await eventually(() => /no runtime call of the agent's is slow/.test(find(agent, 'kubelet.pleg')?.message ?? ''), 30_000), 'docker answers again: the finding stays (the Node is still NotReady) and says the runtime is fast now');

  healthz = { status: 200, body: 'ok' };
  api.setReady(NODE, 'True', 'KubeletReady', 'kubelet is posting ready status');
  t.ok(await eventually(() => find(agent, 'kubelet.pleg') === undefined, 30_000), 'the Node Ready again: resolved');
  t.equal(find(agent, 'kubelet.notReady'), undefined, 'and never a second NotReady finding beside it');
});

t.test('live: another NotReady (the CNI not ready) is kubelet.notReady with kubelet\'s reason; the API server not answering keeps it; Ready clears it', async (t) => {
  const api = await apiFor(t);
  api.setReady(NODE, 'False', 'KubeletNotReady', 'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized');
  const url = await fakeHealthz(t, () => ({ status: 200, body: 'ok' }));
  const agent = await agentFor(t, api, ['kubelet'], ['collectors.kubelet.interval=1s', `collectors.kubelet.healthzUrl=${url}`]);
  t.ok(await eventually(() => find(agent, 'kubelet.notReady') !== undefined, 30_000), 'kubelet.notReady');
  t.match(find(agent, 'kubelet.notReady')?.message, /^test-node is NotReady \(Ready=False, KubeletNotReady\) since \S+: "container runtime network not ready/);
  // The agent may no longer read its Node (RBAC changed under it): the last read stands.
  api.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', RULES.filter((r) => !r.resources.includes('nodes')));
  const reads = agent.node!.stats.readErrors;
  await until(() => agent.node!.stats.readErrors >= reads + 3, 30_000, 'three failed reads of the Node');
  t.ok(find(agent, 'kubelet.notReady'), 'not cleared by an API server that does not answer');
  api.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', RULES);
  api.setReady(NODE, 'True', 'KubeletReady', 'kubelet is posting ready status');
  t.ok(await eventually(() => find(agent, 'kubelet.notReady') === undefined, 30_000), 'Ready: resolved');
});

t.test('live: kubelet\'s Unhealthy Events on a loaded node name the pods (pressure.load); the same Events on a calm node say nothing', async (t) => {
  const api = await apiFor(t);
  // Three pods on this node whose liveness probes kubelet reported failing, one on another node.
  const ev = JSON.parse(readFileSync('test/fixtures/k8s/events/unhealthy-liveness.json', 'utf8')) as Record<string, unknown>;
  const recent = new Date(Date.now() - 120_000).toISOString();
  for (const [pod, count] of [['cart-api', 12], ['checkout', 9], ['search', 4], ['elsewhere', 30]] as const) {
    api.addEvent({ ...ev, metadata: { name: `${pod}.17a9c2e5d3b4f1a0`, namespace: 'shop' }, involvedObject: { kind: 'Pod', namespace: 'shop', name: pod, uid: `uid-${pod}` }, count, lastTimestamp: recent, source: { component: 'kubelet', host: pod === 'elsewhere' ? 'other-node' : NODE } });
  }
  // A host root holding the loaded node's /proc/loadavg (5.3) and /proc/stat (2 cores), and nothing else.
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-loaded-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  cpSync('test/fixtures/host/loaded-node', root, { recursive: true });
  const agent = await agentFor(t, api, ['pressure'], [`hostRoot=${root}`, 'collectors.pressure.interval=1s']);
  t.ok(await eventually(() => find(agent, 'pressure.load') !== undefined, 30_000), 'pressure.load');
  const f = find(agent, 'pressure.load')!;
  t.equal(f.severity, 'critical');
  t.equal(f.message, 'load15 is 5.3 on 2 cores (2.6 per core, above 2); liveness probes failed for 3 pods on this node in the last 10 min: shop/cart-api (12 times), shop/checkout (9 times), shop/search (4 times): kubelet restarts containers whose liveness probes time out on a node this busy.');
  t.ok(api.requests.some((r) => r.path === '/api/v1/events' && r.method === 'GET'), 'the Events were listed');

  // The load falls: resolved, and the Events are not listed again while it stays low.
  writeFileSync(path.join(root, 'proc', 'loadavg'), '0.31 0.42 0.50 3/790 40311\n');
  t.ok(await eventually(() => find(agent, 'pressure.load') === undefined, 30_000), 'a calm node: resolved');
  const lists = api.requests.filter((r) => r.path === '/api/v1/events' && r.method === 'GET').length;
  const finished = () => Date.parse(agent.runner.statuses().find((s) => s.name === 'pressure')?.finishedAt ?? '') || 0;
  const since = finished();
  await until(() => finished() > since + 2000, 30_000, 'two more pressure runs');
  t.equal(api.requests.filter((r) => r.path === '/api/v1/events' && r.method === 'GET').length, lists, 'no Events listed while the load is low');
});
