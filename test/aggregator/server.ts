import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { pino } from 'pino';
import { Aggregator } from '../../aggregator/server.js';
import type { Token } from '../../aggregator/auth.js';
import { MAX_MESSAGE_BYTES } from '../../protocol/wire.js';
import { finding } from '../helpers/findings.js';

const TOKENS: Token[] = [
  { role: 'agent', name: 'agents', secret: 'agent-token-0123456789' },
  { role: 'tail', name: 'ops', secret: 'tail-token-0123456789' },
  { role: 'admin', name: 'admin', secret: 'admin-token-0123456789' },
];
const log = pino({ level: 'silent' });

async function start(over: Partial<ConstructorParameters<typeof Aggregator>[0]> = {}) {
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: TOKENS, version: 'test', log, silentAfterMs: 300, heartbeatMs: 60_000, ...over });
  const { url, port } = await agg.start();
  return { agg, url, port };
}

function open(url: string, token?: string): Promise<{ ws: WebSocket; status?: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => resolve({ ws, status: res.statusCode }));
    ws.once('error', () => undefined);
  });
}

/** Collects messages; `next(pred)` waits for one that matches. */
function inbox(ws: WebSocket) {
  const got: Record<string, unknown>[] = [];
  const waiters: { pred: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }[] = [];
  ws.on('message', (raw: Buffer) => {
    const m = JSON.parse(raw.toString()) as Record<string, unknown>;
    got.push(m);
    for (const w of [...waiters]) if (w.pred(m)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(m);
    }
  });
  return {
    got,
    next(pred: (m: Record<string, unknown>) => boolean, ms = 3000): Promise<Record<string, unknown>> {
      const hit = got.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        waiters.push({ pred, resolve });
        setTimeout(() => reject(new Error('timed out waiting for a message')), ms).unref();
      });
    },
  };
}

const closed = (ws: WebSocket) => new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));

async function agent(url: string, node: string) {
  const { ws } = await open(`${url}/api/agent`, 'agent-token-0123456789');
  const box = inbox(ws);
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'test', collectors: ['disk'] }));
  await box.next((m) => m['type'] === 'welcome');
  return { ws, box };
}

async function tailer(url: string, filter = {}) {
  const { ws } = await open(`${url}/api/tail`, 'tail-token-0123456789');
  const box = inbox(ws);
  ws.send(JSON.stringify({ v: 1, type: 'subscribe', filter }));
  await box.next((m) => m['type'] === 'active');
  return { ws, box };
}

t.test('agents stream, tailers see the active set and then transitions', async (t) => {
  const { agg, url, port } = await start();
  t.teardown(() => agg.stop());
  const a = await agent(url, 'node-a');
  const f1 = finding('node-a', 'disk.usage', '/');
  const f2 = finding('node-a', 'sockets.process', 'pid:1');
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [f1, f2] }));
  await new Promise((r) => setTimeout(r, 100));
  const tl = await tailer(url, { check: 'disk' });
  const active = tl.box.got.find((m) => m['type'] === 'active') as { findings: { id: string }[] };
  t.same(active.findings.map((f) => f.id), [f1.id], 'filtered active set');
  a.ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'resolved', finding: { ...f1, state: 'resolved' } }, { type: 'resolved', finding: { ...f2, state: 'resolved' } }] }));
  const m = (await tl.box.next((x) => x['type'] === 'transition')) as { transition: { type: string; finding: { id: string } } };
  t.same([m.transition.type, m.transition.finding.id], ['resolved', f1.id]);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(tl.box.got.filter((x) => x['type'] === 'transition').length, 1, 'the filter keeps sockets.* away');

  // A new snapshot replaces: what is missing resolves, what is new fires.
  const f3 = finding('node-a', 'disk.inodes', '/');
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [f3] }));
  const fired = (await tl.box.next((x) => x['type'] === 'transition' && (x['transition'] as { finding: { id: string } }).finding.id === f3.id)) as { transition: { type: string } };
  t.equal(fired.transition.type, 'firing');

  const auth = { headers: { authorization: 'Bearer tail-token-0123456789' } };
  const findings = (await (await fetch(`http://127.0.0.1:${port}/api/findings?node=node-a`, auth)).json()) as { check: string }[];
  t.same(findings.map((f) => f.check), ['disk.inodes']);
  const nodes = (await (await fetch(`http://127.0.0.1:${port}/api/nodes`, auth)).json()) as { node: string; connected: boolean }[];
  t.same(nodes.map((n) => [n.node, n.connected]), [['node-a', true]]);
  t.equal((await fetch(`http://127.0.0.1:${port}/api/findings`)).status, 401, 'the HTTP API needs a token too');
  t.equal((await fetch(`http://127.0.0.1:${port}/api/findings?severity=loud`, auth)).status, 400);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_findings\{check="disk.inodes",severity="warning"\} 1/);
  t.match(metrics, /nodewarden_aggregator_nodes\{connected="true"\} 1/);
  t.notMatch(metrics, /nodewarden_aggregator_findings\{check="disk.usage"/, 'resolved findings are not counted');
  t.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  a.ws.close();
  tl.ws.close();
});

t.test('bad clients are rejected with a reason; everyone else keeps being served', async (t) => {
  const { agg, url } = await start({ rateLimit: { perSecond: 20, burst: 40 } });
  t.teardown(() => agg.stop());
  const good = await agent(url, 'good');
  const tl = await tailer(url);

  t.equal((await open(`${url}/api/agent`)).status, 401, 'no token');
  t.equal((await open(`${url}/api/agent`, 'wrong-token-0123456789')).status, 401, 'wrong token');
  t.equal((await open(`${url}/api/agent`, 'tail-token-0123456789')).status, 401, 'a tail token is not an agent token');
  t.equal((await open(`${url}/api/tail`)).status, 401, 'tailers need a token too');
  t.equal((await open(`${url}/api/nowhere`, 'admin-token-0123456789')).status, 404);

  const cases: [string, (ws: WebSocket) => void, number, RegExp][] = [
    ['malformed JSON', (ws) => ws.send('{oops'), 4000, /malformed JSON/],
    ['unknown type', (ws) => ws.send(JSON.stringify({ v: 1, type: 'reboot-node' })), 4000, /unknown message type/],
    ['wrong version', (ws) => ws.send(JSON.stringify({ v: 9, type: 'hello' })), 4002, /unsupported protocol version 9/],
    ['snapshot before hello', (ws) => ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [] })), 4000, /expected hello first/],
    // ws closes an over-limit frame itself with the standard 1009 (message too big): the code is the reason.
    ['oversized frame', (ws) => ws.send(Buffer.alloc(MAX_MESSAGE_BYTES + 10, 120)), 1009, /^$|payload/i],
    ['hello twice', (ws) => { ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'twice', agentVersion: 'x', collectors: [] })); ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'twice', agentVersion: 'x', collectors: [] })); }, 4000, /hello sent twice/],
    ['flood', (ws) => {
      ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'flooder', agentVersion: 'x', collectors: [] }));
      for (let i = 0; i < 200; i++) ws.send(JSON.stringify({ v: 1, type: 'status', collectors: [] }));
    }, 1008, /more than 20 messages per second/],
  ];
  for (const [name, act, want, reason] of cases) {
    const { ws } = await open(`${url}/api/agent`, 'agent-token-0123456789');
    const c = closed(ws);
    act(ws);
    const got = await c;
    t.equal(got.code, want, `${name}: closed with ${got.code} "${got.reason}"`);
    t.match(got.reason, reason);
  }
  const { ws: spoof } = await open(`${url}/api/agent`, 'agent-token-0123456789');
  spoof.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'spoofer', agentVersion: 'x', collectors: [] }));
  await new Promise((r) => setTimeout(r, 50));
  const c = closed(spoof);
  spoof.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('good', 'disk.usage', '/')] }));
  t.match((await c).reason, /finding for node good on spoofer's connection/, 'an agent cannot speak for another node');

  // The good agent and the tailer never noticed.
  const f = finding('good', 'disk.usage', '/data', 'critical');
  good.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [f] }));
  const m = (await tl.box.next((x) => x['type'] === 'transition')) as { transition: { finding: { id: string } } };
  t.equal(m.transition.finding.id, f.id, 'still served');
  t.equal(good.ws.readyState, WebSocket.OPEN);
  good.ws.close();
  tl.ws.close();
});

t.test('an agent that goes away turns its node node.silent; coming back resolves it', async (t) => {
  const { agg, url } = await start({ silentAfterMs: 300 });
  t.teardown(() => agg.stop());
  const tl = await tailer(url);
  const a = await agent(url, 'quiet');
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('quiet', 'disk.usage', '/')] }));
  await tl.box.next((x) => x['type'] === 'transition');
  a.ws.terminate();
  const silent = (await tl.box.next((x) => x['type'] === 'transition' && (x['transition'] as { finding: { check: string } }).finding.check === 'node.silent')) as { transition: { type: string; finding: { severity: string; node: string; message: string } } };
  t.same([silent.transition.type, silent.transition.finding.severity, silent.transition.finding.node], ['firing', 'critical', 'quiet']);
  t.match(silent.transition.finding.message, /Silence is not health/);
  t.ok(agg.fleet.active({ node: 'quiet' }).some((f) => f.check === 'disk.usage'), 'its last findings are kept, not dropped');
  await agent(url, 'quiet');
  const back = (await tl.box.next((x) => x['type'] === 'transition' && (x['transition'] as { type: string; finding: { check: string } }).finding.check === 'node.silent' && (x['transition'] as { type: string }).type === 'resolved')) as object;
  t.ok(back, 'resolved when the agent says hello again');
  tl.ws.close();
});

t.test('--journal: history and the last known active set survive a restart', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const journal = path.join(dir, 'journal.ndjson');
  const first = await start({ journal, silentAfterMs: 60_000 });
  const a = await agent(first.url, 'kept');
  const f = finding('kept', 'disk.usage', '/');
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [f, finding('kept', 'disk.inodes', '/')] }));
  a.ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'resolved', finding: { ...finding('kept', 'disk.inodes', '/'), state: 'resolved' } }] }));
  await new Promise((r) => setTimeout(r, 150));
  await first.agg.stop();
  const second = await start({ journal, silentAfterMs: 60_000 });
  t.teardown(() => second.agg.stop());
  t.same(second.agg.fleet.active().map((x) => x.id), [f.id], 'active set restored');
  t.same(second.agg.fleet.historySince(0).map((x) => [x.type, x.finding.check]), [['firing', 'disk.usage'], ['firing', 'disk.inodes'], ['resolved', 'disk.inodes']], 'history restored');
  const { ws } = await open(`${second.url}/api/tail`, 'tail-token-0123456789');
  const box = inbox(ws);
  ws.send(JSON.stringify({ v: 1, type: 'subscribe', filter: {}, sinceMs: 0 }));
  const hist = (await box.next((m) => m['type'] === 'history')) as { transitions: unknown[] };
  t.equal(hist.transitions.length, 3, '--since replays the journal');
  ws.close();
});
