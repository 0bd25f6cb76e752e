import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import fc from 'fast-check';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { pino } from 'pino';
import { Aggregator } from '../../aggregator/server.js';
import type { Token } from '../../aggregator/auth.js';
import { MAX_MESSAGE_BYTES } from '../../protocol/wire.js';
import { finding } from '../helpers/findings.js';
import { until } from '../helpers/processes.js';

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

async function agent(url: string, node: string, token = 'agent-token-0123456789') {
  const { ws } = await open(`${url}/api/agent`, token);
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
  await until(() => agg.fleet.active({ node: 'node-a' }).length === 2, 10_000, 'the snapshot to be applied');
  const tl = await tailer(url, { check: 'disk' });
  const active = tl.box.got.find((m) => m['type'] === 'active') as { findings: { id: string }[] };
  t.same(active.findings.map((f) => f.id), [f1.id], 'filtered active set');
  a.ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'resolved', finding: { ...f1, state: 'resolved' } }, { type: 'resolved', finding: { ...f2, state: 'resolved' } }] }));
  const m = (await tl.box.next((x) => x['type'] === 'transition')) as { transition: { type: string; finding: { id: string } } };
  t.same([m.transition.type, m.transition.finding.id], ['resolved', f1.id]);

  // A new snapshot replaces: what is missing resolves, what is new fires.
  const f3 = finding('node-a', 'disk.inodes', '/');
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [f3] }));
  const fired = (await tl.box.next((x) => x['type'] === 'transition' && (x['transition'] as { finding: { id: string } }).finding.id === f3.id)) as { transition: { type: string } };
  t.equal(fired.transition.type, 'firing');
  // One connection delivers in order: had f2's resolution passed the filter, it would have come before f3's firing.
  t.same(tl.box.got.filter((x) => x['type'] === 'transition').map((x) => (x['transition'] as { finding: { id: string } }).finding.id), [f1.id, f3.id], 'the filter keeps sockets.* away');

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
  await until(() => agg.fleet.has('spoofer'), 10_000, "the spoofer's hello");
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
  await until(() => first.agg.fleet.historySize() === 3, 10_000, 'the snapshot and the delta to be applied (and journaled)');
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

/** One raw HTTP exchange: what a hostile client writes byte for byte; resolves with the status (0: no answer). */
function raw(port: number, text: string | Buffer, opts: { tls?: boolean; endAfter?: boolean } = {}): Promise<number> {
  return new Promise((resolve) => {
    const sock = opts.tls ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : net.connect(port, '127.0.0.1');
    let got = '';
    const done = () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0));
    sock.on(opts.tls ? 'secureConnect' : 'connect', () => {
      sock.write(text);
      if (opts.endAfter) sock.end();
    });
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (/\r\n\r\n/.test(got)) sock.destroy();
    });
    sock.on('error', () => undefined);
    sock.on('close', done);
    setTimeout(() => sock.destroy(), 3000).unref();
  });
}

const healthy = async (port: number, scheme = 'http') => {
  const res = await fetch(`${scheme}://127.0.0.1:${port}/healthz`);
  return res.status;
};

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  return { cert, key };
}

t.test('crashes from the issue: odd request-targets, bad percent-encoding, truncated bodies are refused over http and https; the server answers on', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plain = await start();
  const secure = await start({ tls: selfSigned(dir) });
  t.teardown(() => plain.agg.stop());
  t.teardown(() => secure.agg.stop());
  process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0';
  t.teardown(() => delete process.env['NODE_TLS_REJECT_UNAUTHORIZED']);
  for (const [port, tls] of [[plain.port, false], [secure.port, true]] as const) {
    const scheme = tls ? 'https' : 'http';
    t.equal(await raw(port, 'GET //[ HTTP/1.1\r\nHost: x\r\n\r\n', { tls }), 400, `${scheme}: GET //[`);
    t.equal(await raw(port, 'GET http://x:99999/ HTTP/1.1\r\nHost: x\r\n\r\n', { tls }), 400, `${scheme}: absolute-form with a bad port`);
    t.equal(await raw(port, 'GET * HTTP/1.1\r\nHost: x\r\n\r\n', { tls }), 400, `${scheme}: asterisk-form`);
    t.equal(await raw(port, 'POST /api/nodes/%E0%A4%A/prune HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-0123456789\r\nContent-Length: 0\r\n\r\n', { tls }), 400, `${scheme}: bad percent-encoding`);
    t.equal(await raw(port, 'DELETE /api/nodes/%E0%A4%A HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-0123456789\r\n\r\n', { tls }), 400, `${scheme}: bad percent-encoding on forget`);
    // A body cut off midway: the client goes away with 10 of 100 bytes sent.
    await raw(port, 'POST /api/nodes/n1/prune HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token-0123456789\r\nContent-Length: 100\r\n\r\n{"untilMs"', { tls, endAfter: true });
    t.equal(await raw(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n', { tls }), 400, `${scheme}: a malformed header`);
    t.equal(await healthy(port, scheme), 200, `${scheme}: still serving`);
  }
  const metrics = await (await fetch(`http://127.0.0.1:${plain.port}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_rejected_total\{reason="http 400"\} \d+/, 'refusals are counted');
});

t.test('crashes from the issue over WebSocket: subscribe with filter null or missing, 5,000-deep evidence, __proto__ types', async (t) => {
  const { agg, url, port } = await start();
  t.teardown(() => agg.stop());
  const a = await agent(url, 'busy');
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('busy', 'disk.usage', '/')] }));
  await until(() => agg.fleet.active({ node: 'busy' }).length === 1, 10_000, 'the snapshot to be applied');

  const { ws: nul } = await open(`${url}/api/tail`, 'tail-token-0123456789');
  const c1 = closed(nul);
  nul.send('{"v":1,"type":"subscribe","filter":null}');
  t.match(await c1, { code: 4000, reason: /filter is required and must be an object, got null/ }, 'filter null is refused with a reason');

  // Without a filter: every finding, not silence.
  const { ws: all } = await open(`${url}/api/tail`, 'tail-token-0123456789');
  const box = inbox(all);
  all.send('{"v":1,"type":"subscribe"}');
  const active = (await box.next((m) => m['type'] === 'active')) as { findings: unknown[] };
  t.equal(active.findings.length, 1, 'the active set arrives');

  const deep = JSON.stringify({ v: 1, type: 'snapshot', findings: [{ ...finding('busy', 'disk.usage', '/x'), evidence: { x: 0 } }] }).replace('{"x":0}', `{"x":${'['.repeat(5000)}${']'.repeat(5000)}}`);
  const c2 = closed(a.ws);
  a.ws.send(deep);
  t.match(await c2, { code: 4000, reason: /evidence must nest at most 8 levels deep/ });

  for (const type of ['__proto__', 'constructor']) {
    const { ws } = await open(`${url}/api/agent`, 'agent-token-0123456789');
    const c = closed(ws);
    ws.send(JSON.stringify({ v: 1, type }));
    const got = await c;
    t.equal(got.code, 4000, `type ${type}`);
    t.match(got.reason, /unknown message type/);
    t.notMatch(got.reason, /TypeError/);
  }
  const b = await agent(url, 'other');
  b.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('other', 'disk.usage', '/')] }));
  await box.next((m) => m['type'] === 'transition');
  t.pass('the filterless tailer sees new transitions');
  t.equal(await healthy(port), 200);
  b.ws.close();
  all.close();
});

t.test('limits: findings per node, nodes per token, one subscribe per connection, metric labels from the registry', async (t) => {
  const { agg, url, port } = await start({ limits: { maxFindingsPerNode: 5, maxNodesPerToken: 3 } });
  t.teardown(() => agg.stop());
  const a = await agent(url, 'full');
  const c = closed(a.ws);
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: Array.from({ length: 6 }, (_, i) => finding('full', 'disk.usage', `/m${i}`)) }));
  t.match(await c, { code: 4006, reason: /snapshot of 6 findings for node full is over the limit of 5/ });

  const b = await agent(url, 'deltas');
  b.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: Array.from({ length: 5 }, (_, i) => finding('deltas', 'disk.usage', `/m${i}`)) }));
  const cb = closed(b.ws);
  b.ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: finding('deltas', 'disk.usage', '/m9') }] }));
  t.match(await cb, { code: 4006, reason: /more than 5 active findings for node deltas/ });
  t.equal(agg.fleet.active({ node: 'deltas' }).length, 5, 'the refused delta changed nothing');

  // The token has spoken for full and deltas; one more node is allowed, a fourth is not.
  await agent(url, 'third');
  const { ws } = await open(`${url}/api/agent`, 'agent-token-0123456789');
  const c4 = closed(ws);
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'invented-4', agentVersion: 'x', collectors: [] }));
  t.match(await c4, { code: 4005, reason: /token agents already speaks for 3 nodes, its limit/ });
  t.notOk(agg.fleet.has('invented-4'), 'no node was made up');
  const again = await agent(url, 'full');
  t.ok(again, 'a node the token already speaks for reconnects');

  const tl = await tailer(url);
  const ct = closed(tl.ws);
  tl.ws.send(JSON.stringify({ v: 1, type: 'subscribe', filter: {} }));
  t.match(await ct, { code: 4006, reason: /one subscribe per connection/ });

  again.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: Array.from({ length: 5 }, (_, i) => finding('full', `made.up${i}`, '/')) }));
  await until(() => agg.fleet.active({ node: 'full' }).length === 5, 10_000, 'the snapshot to be applied');
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_findings\{check="other",severity="warning"\} 5/, 'invented check names are one series, "other"');
  t.notMatch(metrics, /made\.up/);
  t.match(metrics, /nodewarden_aggregator_errors_total\{where="agent",code="NW_ERR_LIMIT"\} 2/);
});

t.test('history and active sets reach a tailer in chunks under its frame limit: --since with 10,000 entries', async (t) => {
  const { agg, url } = await start({ historyLimit: 10_000, limits: { maxFindingsPerNode: 20_000 } });
  t.teardown(() => agg.stop());
  const a = await agent(url, 'chatty');
  // 10,000 transitions of findings with 2 KiB messages: about 23 MB of history, as in the issue.
  for (let batch = 0; batch < 10; batch++) {
    const transitions = Array.from({ length: 1000 }, (_, i) => ({ type: 'firing', finding: finding('chatty', 'disk.usage', `/m${batch * 1000 + i}`, 'warning', { message: 'm'.repeat(2000) }) }));
    a.ws.send(JSON.stringify({ v: 1, type: 'delta', transitions }));
  }
  await until(() => agg.fleet.historySize() >= 10_000, 60_000, '10,000 transitions to be applied').catch(() => undefined);
  t.equal(agg.fleet.historySize(), 10_000, 'about 23 MB of history is held (under the 24 MiB bound)');
  const { ws } = await open(`${url}/api/tail`, 'tail-token-0123456789');
  const sizes: number[] = [];
  let history = 0;
  let active = 0;
  const done = new Promise<void>((resolve) => {
    ws.on('message', (data: Buffer) => {
      sizes.push(data.length);
      const m = JSON.parse(data.toString()) as { type: string; transitions?: unknown[]; findings?: unknown[]; more?: boolean };
      if (m.type === 'history') history += m.transitions!.length;
      if (m.type === 'active') {
        active += m.findings!.length;
        if (!m.more) resolve();
      }
    });
  });
  ws.send(JSON.stringify({ v: 1, type: 'subscribe', filter: {}, sinceMs: Date.now() - 3_600_000 }));
  await done;
  t.equal(history, 10_000, 'every history entry arrived');
  t.equal(active, 10_000, 'and every active finding');
  t.ok(Math.max(...sizes) <= 1.1 * 1024 * 1024, `largest frame ${Math.max(...sizes)} bytes, far under the tailer's 16 MiB`);
  ws.close();
});

t.test('/api/findings is streamed: many findings, several clients, complete JSON', async (t) => {
  const { agg, url, port } = await start({ limits: { maxFindingsPerNode: 20_000 } });
  t.teardown(() => agg.stop());
  const a = await agent(url, 'many');
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: Array.from({ length: 5000 }, (_, i) => finding('many', 'disk.usage', `/m${i}`)) }));
  await until(() => agg.fleet.active({ node: 'many' }).length === 5000, 10_000, 'the snapshot of 5,000 to be applied');
  const auth = { headers: { authorization: 'Bearer tail-token-0123456789' } };
  const lists = await Promise.all(Array.from({ length: 6 }, async () => (await (await fetch(`http://127.0.0.1:${port}/api/findings`, auth)).json()) as unknown[]));
  t.same(lists.map((l) => l.length), [5000, 5000, 5000, 5000, 5000, 5000]);
});

t.test('idle sockets: a connection that never sends a byte is closed; connections are capped', async (t) => {
  const { agg, port } = await start({ limits: { handshakeTimeoutMs: 300, maxConnections: 5 } });
  t.teardown(() => agg.stop());
  const idle = net.connect(port, '127.0.0.1');
  idle.on('error', () => undefined);
  await new Promise<void>((resolve) => idle.on('close', () => resolve()));
  t.pass('the idle connection was closed by the aggregator');
  const many = Array.from({ length: 10 }, () => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    return s;
  });
  const ended = await Promise.all(many.map((s) => new Promise<void>((resolve) => s.on('close', () => resolve()))));
  t.equal(ended.length, 10, 'over the cap the oldest unauthenticated ones are evicted at once, the rest closed at their deadline');
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_connections_evicted_total [1-9]/);
  t.match(metrics, /nodewarden_aggregator_rejected_total\{reason="handshake timeout"\} [1-9]/);
});

t.test('property: any request to any route is answered (never a 5xx) and the server answers on', async (t) => {
  const { agg, port } = await start();
  t.teardown(() => agg.stop());
  const seg = fc.oneof(fc.constantFrom('api', 'nodes', 'findings', 'prune', 'healthz', 'metrics', 'agent', 'tail', '%E0%A4%A', '%', '%zz', '..', '', '[', '?', '#', 'x'.repeat(300)), fc.webSegment());
  const target = fc.oneof(fc.array(seg, { maxLength: 5 }).map((s) => `/${s.join('/')}`), fc.constantFrom('//[', 'http://x:99999/', '*', 'x', '/api/findings?severity=%', '/api/findings?state=__proto__&node=%E0'));
  const method = fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'HEAD');
  const auth = fc.constantFrom('', 'Authorization: Bearer admin-token-0123456789\r\n', 'Authorization: Bearer tail-token-0123456789\r\n', 'Authorization: Bearer x\r\n');
  const body = fc.oneof(fc.constant(''), fc.string({ maxLength: 200 }), fc.json({ maxDepth: 3 }));
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(method, target, auth, body, fc.boolean(), async (m, tgt, a, b, cut) => {
      const len = Buffer.byteLength(b);
      const status = await raw(port, `${m} ${tgt} HTTP/1.1\r\nHost: x\r\n${a}Content-Length: ${cut ? len + 10 : len}\r\nConnection: close\r\n\r\n${b}`, { endAfter: cut });
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status >= 500) throw new Error(`${m} ${tgt} answered ${status}`);
    }),
    { numRuns: 300 },
  );
  t.equal(await healthy(port), 200, 'still serving');
  t.comment(`statuses: ${JSON.stringify([...statuses])}`);
});

t.test('forget: an admin makes the aggregator forget a node; its findings resolve and it stays gone after a restart', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-forget-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const journal = path.join(dir, 'journal.ndjson');
  const first = await start({ journal, silentAfterMs: 60_000 });
  const a = await agent(first.url, 'gone');
  a.ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('gone', 'disk.usage', '/')] }));
  await until(() => first.agg.fleet.active({ node: 'gone' }).length === 1, 10_000, 'the snapshot to be applied');
  const del = (tok: string) => fetch(`http://127.0.0.1:${first.port}/api/nodes/gone`, { method: 'DELETE', headers: { authorization: `Bearer ${tok}` } });
  t.equal((await del('tail-token-0123456789')).status, 403, 'tail tokens cannot forget');
  t.equal((await del('admin-token-0123456789')).status, 409, 'not while its agent is connected');
  const tl = await tailer(first.url);
  a.ws.close();
  await until(() => first.agg.fleet.nodeInfos().some((n) => n.node === 'gone' && !n.connected), 10_000, 'the aggregator to see the agent go');
  t.equal((await del('admin-token-0123456789')).status, 200);
  const m = (await tl.box.next((x) => x['type'] === 'transition')) as { transition: { type: string; finding: { node: string } } };
  t.same([m.transition.type, m.transition.finding.node], ['resolved', 'gone'], 'tailers see its findings resolve');
  t.notOk(first.agg.fleet.has('gone'));
  t.equal((await del('admin-token-0123456789')).status, 404, 'an unknown node');
  tl.ws.close();
  await first.agg.stop();
  const second = await start({ journal, silentAfterMs: 60_000 });
  t.teardown(() => second.agg.stop());
  t.notOk(second.agg.fleet.has('gone'), 'still forgotten after a restart');
});

t.test('a revoked token stops working at once, for connections already open too', async (t) => {
  const { agg, url } = await start();
  t.teardown(() => agg.stop());
  const a = await agent(url, 'rotating');
  const tl = await tailer(url);
  const c = closed(a.ws);
  agg.replaceTokens([{ role: 'agent', name: 'agents-2026', secret: 'agent-token-9876543210' }, TOKENS[1]!, TOKENS[2]!]);
  t.match(await c, { code: 4001, reason: /revoked/ }, 'the agent on the old token is closed');
  t.equal((await open(`${url}/api/agent`, 'agent-token-0123456789')).status, 401, 'and cannot come back with it');
  t.ok(await agent(url, 'rotating', 'agent-token-9876543210'), 'the new token works');
  t.equal(tl.ws.readyState, WebSocket.OPEN, 'connections on tokens that stay are untouched');
  tl.ws.close();
});
