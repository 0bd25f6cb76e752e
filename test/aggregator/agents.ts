import t from 'tap';
import { pino } from 'pino';
import { Agents } from '../../aggregator/agents.js';
import type { Identity } from '../../aggregator/auth.js';
import { CommandBroker, type CommandReply } from '../../aggregator/commands.js';
import { Connections } from '../../aggregator/connections.js';
import { Fleet } from '../../aggregator/fleet.js';
import type { KubeAgentAuth } from '../../aggregator/kube-auth.js';
import { AggregatorCounters } from '../../aggregator/metrics.js';
import { CLOSE } from '../../protocol/wire.js';
import { finding } from '../helpers/findings.js';
import { FakeSocket } from '../helpers/fake-socket.js';

const log = pino({ level: 'silent' });
const SHARED: Identity = { role: 'agent', name: 'agents' };
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup(t: { teardown(fn: () => void): void }, over: { maxNodesPerToken?: number; kubeAuth?: Pick<KubeAgentAuth, 'nodeExists'> } = {}) {
  const fleet = new Fleet({ historyLimit: 1000, silentAfterMs: 60_000 });
  const connections = new Connections({ log, counters: new AggregatorCounters(), rateLimit: { perSecond: 1000, burst: 1000 } });
  const commands = new CommandBroker({ timeoutMs: 60_000, log });
  const forgotten: string[] = [];
  const agents = new Agents({
    fleet,
    connections,
    commands,
    limits: { handshakeTimeoutMs: 60_000, maxNodesPerToken: over.maxNodesPerToken ?? 100 },
    ...(over.kubeAuth ? { kubeAuth: over.kubeAuth as KubeAgentAuth } : {}),
    version: 'agg-test',
    forget: (node, why) => (forgotten.push(`${node}: ${why}`), fleet.forget(node)),
    log,
  });
  t.teardown(() => {
    commands.stop();
    fleet.close();
  });
  /** An agent connection; `hello(node)` says hello for a node. */
  const connect = (who: Identity = SHARED) => {
    const ws = new FakeSocket();
    agents.add(connections.add(ws.asWebSocket(), who));
    return Object.assign(ws, { hello: (node: string) => ws.receive({ v: 1, type: 'hello', protocol: 1, node, agentVersion: '1.2.3', collectors: ['disk'] }) });
  };
  return { fleet, agents, commands, connect, forgotten };
}

t.test('hello is welcomed with the version; snapshot, delta and status go into the fleet under that node', async (t) => {
  const { fleet, agents, connect } = setup(t);
  const a = connect();
  a.hello('node-a');
  t.same(a.messages(), [{ v: 1, type: 'welcome', aggregatorVersion: 'agg-test' }]);
  t.ok(agents.connected('node-a'));
  t.equal(agents.size, 1);
  t.match(fleet.nodeInfos()[0], { node: 'node-a', connected: true, agentVersion: '1.2.3' });
  const f = finding('node-a', 'disk.usage', '/');
  a.receive({ v: 1, type: 'snapshot', findings: [f] });
  t.same(fleet.active().map((x) => x.id), [f.id]);
  a.receive({ v: 1, type: 'delta', transitions: [{ type: 'resolved', finding: { ...f, state: 'resolved' } }] });
  t.same(fleet.active(), [], 'the delta resolved it');
  a.receive({ v: 1, type: 'status', collectors: [{ name: 'disk', status: 'ok', durationMs: 3 }] });
  t.match(fleet.nodeInfos()[0], { collectorStatus: [{ name: 'disk', status: 'ok' }] });
  t.equal(a.closed, undefined, 'nothing was refused');
});

t.test('an agent speaks only for its own node: no message before hello, no second hello, no finding of another node', async (t) => {
  const { fleet, connect } = setup(t);
  const early = connect();
  early.receive({ v: 1, type: 'snapshot', findings: [] });
  t.same(early.closed, { code: CLOSE.MALFORMED, reason: 'expected hello first, got snapshot' });
  const twice = connect();
  twice.hello('node-a');
  twice.hello('node-b');
  t.same(twice.closed, { code: CLOSE.MALFORMED, reason: 'hello sent twice' });
  const stranger = connect();
  stranger.hello('node-c');
  stranger.receive({ v: 1, type: 'snapshot', findings: [finding('node-x', 'disk.usage', '/')] });
  t.same(stranger.closed, { code: CLOSE.MALFORMED, reason: "finding for node node-x on node-c's connection" });
  t.same(fleet.active(), [], 'the stranger finding was not stored');
});

t.test('node-bound credentials: only their node, and a shared token cannot take their place', async (t) => {
  const { connect } = setup(t);
  const bound = connect({ role: 'agent', name: 'system:serviceaccount:nodewarden:nodewarden-agent', node: 'node-a' });
  bound.hello('node-b');
  t.same(bound.closed, { code: CLOSE.FORBIDDEN, reason: 'this credential speaks for node node-a, not node-b' });
  const real = connect({ role: 'agent', name: 'sa', node: 'node-a' });
  real.hello('node-a');
  const shared = connect();
  shared.hello('node-a');
  t.same(shared.closed, { code: CLOSE.FORBIDDEN, reason: 'node node-a has a node-bound agent connected; a shared token cannot replace it' });
  t.equal(real.closed, undefined, 'the bound agent stays');
});

t.test('a newer agent for the same node replaces the older one (4003); the old one leaving does not disconnect the node', async (t) => {
  const { fleet, connect } = setup(t);
  const old = connect();
  old.hello('node-a');
  const fresh = connect();
  fresh.hello('node-a');
  t.same(old.closed, { code: CLOSE.REPLACED, reason: 'another agent connected for node node-a' });
  await tick();
  t.equal(old.readyState, 3);
  t.match(fleet.nodeInfos()[0], { node: 'node-a', connected: true }, 'still connected through the newer agent');
  fresh.terminate();
  t.match(fleet.nodeInfos()[0], { node: 'node-a', connected: false });
});

t.test('a shared token speaks for at most maxNodesPerToken nodes; forgetting one frees its place', async (t) => {
  const { fleet, connect } = setup(t, { maxNodesPerToken: 2 });
  connect().hello('node-a');
  const b = connect();
  b.hello('node-b');
  const c = connect();
  c.hello('node-c');
  t.same(c.closed, { code: CLOSE.FORBIDDEN, reason: 'token agents already speaks for 2 nodes, its limit' });
  b.terminate();
  fleet.forget('node-b');
  const again = connect();
  again.hello('node-c');
  t.equal(again.closed, undefined, 'node-b forgotten: node-c fits');
});

t.test("an agent that disconnects during a prune ends the requester's command with an error", async (t) => {
  const { agents, commands, connect } = setup(t);
  const a = connect();
  a.hello('node-a');
  const lines: string[] = [];
  const reply: CommandReply = { writeHead: () => undefined, write: (s) => lines.push(s), end: (s) => lines.push(s), on: () => undefined };
  const id = commands.start('node-a', { untilMs: 0, dryRun: true }, 'admin', reply, (m) => agents.send('node-a', m));
  t.match(a.messages().at(-1), { type: 'command', id, command: 'prune', dryRun: true, requestedBy: 'admin' }, 'the command reached the agent');
  a.receive({ v: 1, type: 'progress', commandId: id, progress: { image: 'busybox:old', size: 1, state: 'would-remove', index: 1, total: 1 } });
  a.terminate();
  t.same(lines.map((l) => JSON.parse(l).type), ['accepted', 'progress', 'error']);
  t.match(JSON.parse(lines.at(-1)!), { message: 'the agent on node-a disconnected during the command' });
  t.notOk(agents.connected('node-a'));
});

t.test('Kubernetes mode: a shared token saying hello for a node the cluster does not have is refused and the node forgotten', async (t) => {
  const exists = new Map([['node-a', true], ['node-gone', false]]);
  const { fleet, agents, connect, forgotten } = setup(t, { kubeAuth: { nodeExists: async (n: string) => exists.get(n) ?? false } });
  const real = connect();
  real.hello('node-a');
  const fake = connect();
  fake.hello('node-made-up');
  t.same(fake.messages(), [{ v: 1, type: 'welcome', aggregatorVersion: 'agg-test' }], 'welcomed first: the check does not hold up the agent');
  await tick();
  t.same(fake.closed, { code: CLOSE.FORBIDDEN, reason: 'node node-made-up does not exist in the cluster' });
  t.equal(real.closed, undefined);
  t.match(forgotten, [/^node-made-up: a shared token \(agents\) said hello for it/]);
  // A node without an agent that was deleted from the cluster is forgotten by the sweep.
  const gone = connect();
  gone.hello('node-gone');
  gone.terminate();
  await tick();
  fleet.connect('node-old', { agentVersion: 'x', collectors: [] });
  fleet.disconnect('node-old');
  exists.set('node-old', true);
  await agents.sweepDeletedNodes();
  t.same(fleet.nodeInfos().map((n) => n.node).sort(), ['node-a', 'node-old'], 'node-gone is forgotten, node-old exists and stays');
});
