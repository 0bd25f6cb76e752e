// The web view's server side: its files and headers, the session routes, the cookie on the API and
// on the live feed, CSRF, and the hostile cases by name. The page itself in a browser: test/web/app.ts.
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { pino } from 'pino';
import { Aggregator, type AggregatorOptions } from '../../aggregator/server.js';
import type { Token } from '../../aggregator/auth.js';
import { decodeWebRequest, firstK, matchesWebFilter } from '../../aggregator/web-feed.js';
import { finding } from '../helpers/findings.js';
import { until } from '../helpers/processes.js';

const TOKENS: Token[] = [
  { role: 'agent', name: 'agents', secret: 'agent-token-0123456789' },
  { role: 'tail', name: 'ops', secret: 'tail-token-0123456789' },
  { role: 'admin', name: 'alice', secret: 'admin-token-0123456789' },
];
const log = pino({ level: 'silent' });

async function start(over: Partial<AggregatorOptions> = {}) {
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: TOKENS, version: 'test', log, heartbeatMs: 60_000, ...over });
  const { port } = await agg.start();
  const base = `http://127.0.0.1:${port}`;
  return { agg, port, base };
}

async function login(base: string, token = 'tail-token-0123456789', origin = base) {
  const r = await fetch(`${base}/api/session`, { method: 'POST', headers: { origin, 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0]!;
  const body = (await r.json()) as { csrf?: string; role?: string };
  return { status: r.status, cookie, csrf: body.csrf ?? '', role: body.role, setCookie: r.headers.get('set-cookie') };
}

/** A raw HTTP exchange; resolves with the status (0: closed without one). */
function raw(port: number, text: string): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
    s.end(text);
    setTimeout(() => s.destroy(), 5_000).unref();
  });
}

function tab(port: number, cookie: string, origin = `http://127.0.0.1:${port}`): Promise<{ ws: WebSocket; status?: number; got: Record<string, unknown>[] }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/web`, { headers: { cookie, origin } });
    const got: Record<string, unknown>[] = [];
    ws.on('message', (m: Buffer) => got.push(JSON.parse(m.toString()) as Record<string, unknown>));
    ws.once('open', () => resolve({ ws, got }));
    ws.once('unexpected-response', (_req, res) => resolve({ ws, status: res.statusCode, got }));
    ws.once('error', () => undefined);
  });
}

async function agent(port: number, node: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
  await new Promise((r) => ws.once('open', r));
  const welcome = new Promise((r) => ws.once('message', r));
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'test', collectors: ['disk'] }));
  await welcome;
  return ws;
}

t.test('the page is served from the package with a strict CSP; a tail token logs in for a cookie', async (t) => {
  const { agg, base } = await start();
  t.teardown(() => agg.stop());
  const page = await fetch(`${base}/`);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), /^text\/html/);
  const csp = page.headers.get('content-security-policy') ?? '';
  t.match(csp, /script-src 'self'(;|$)/, 'scripts from this origin only');
  t.notMatch(csp, /unsafe-inline|unsafe-eval/, 'no inline script, no eval');
  t.match(csp, /frame-ancestors 'none'/);
  t.equal(page.headers.get('x-content-type-options'), 'nosniff');
  const html = await page.text();
  t.match(html, /<script type="module" src="\/app.js"><\/script>/);
  t.notMatch(html, /<script>|https?:\/\//, 'no inline script, nothing from elsewhere');
  const js = await fetch(`${base}/app.js`);
  t.match(js.headers.get('content-type'), /^text\/javascript/);
  t.notMatch(await js.text(), /\beval\(|new Function|innerHTML|https?:\/\/[a-z]/, 'the script writes no HTML and loads nothing from elsewhere');
  t.match((await fetch(`${base}/app.css`)).headers.get('content-type'), /^text\/css/);
  t.equal((await fetch(`${base}/tsconfig.json`)).status, 404, 'only the built files');

  const s = await login(base);
  t.equal(s.status, 200);
  t.equal(s.role, 'tail');
  t.match(s.setCookie, /HttpOnly; SameSite=Strict; Max-Age=28800$/, 'HttpOnly, SameSite=Strict, an expiry; no Secure over plain http');
  t.notMatch(s.setCookie, /tail-token/, 'the cookie is not the token');
  const me = await fetch(`${base}/api/session`, { headers: { cookie: s.cookie } });
  t.same(((await me.json()) as { name: string }).name, 'ops');
  t.equal((await fetch(`${base}/api/nodes`, { headers: { cookie: s.cookie } })).status, 200, 'the cookie reads the API');
  t.equal((await login(base, 'agent-token-0123456789')).status, 401, 'an agent token is not for people');
  t.equal((await login(base, 'wrong-token-0123456789')).status, 401);
});

t.test('under TLS the page is https, the cookie Secure, and an http Origin is another origin', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-web-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  const { agg, port } = await start({ tls: { cert, key } });
  t.teardown(() => agg.stop());
  const post = (origin: string) =>
    new Promise<{ status: number; cookie: string }>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/api/session', method: 'POST', rejectUnauthorized: false, headers: { origin, 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, cookie: String(res.headers['set-cookie'] ?? '') }));
      });
      req.on('error', reject);
      req.end('{"token":"tail-token-0123456789"}');
    });
  const ok = await post(`https://127.0.0.1:${port}`);
  t.equal(ok.status, 200);
  t.match(ok.cookie, /HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/, 'Secure under TLS');
  t.equal((await post(`http://127.0.0.1:${port}`)).status, 403, 'an http page is not this origin');
});

t.test('hostile requests to the web routes, by name', async (t) => {
  const { agg, port, base } = await start({ web: { sessionTtlMs: 1_000 } });
  t.teardown(() => agg.stop());
  const tail = await login(base);
  const admin = await login(base, 'admin-token-0123456789');
  const post = (path: string, headers: Record<string, string>, body = '{"dryRun":true}') => fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  t.equal((await fetch(`${base}/api/nodes?token=tail-token-0123456789`)).status, 401, 'a token in the URL is ignored');
  t.equal((await fetch(`${base}/api/session?token=tail-token-0123456789`)).status, 401, 'also on /api/session');
  t.equal((await login(base, 'tail-token-0123456789', 'http://evil.example')).status, 403, 'login from another origin');
  t.equal((await fetch(`${base}/api/session`, { method: 'POST', headers: { origin: base, 'content-type': 'text/plain' }, body: '{"token":"tail-token-0123456789"}' })).status, 415, 'login as a form post (no preflight) is refused');
  t.equal(await raw(port, `POST /api/session HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n${'x'.repeat(100000)}`), 413, 'a huge body');
  t.equal((await fetch(`${base}/api/session`, { method: 'POST', headers: { origin: base, 'content-type': 'application/json' }, body: '{"token":' })).status, 400, 'a body that is not JSON');
  t.equal((await fetch(`${base}/api/session`, { method: 'POST', headers: { origin: base, 'content-type': 'application/json' }, body: '{"__proto__":{"token":"tail-token-0123456789"}}' })).status, 401, 'a token under __proto__');
  t.equal((await fetch(`${base}/api/nodes`, { headers: { cookie: 'nw_session=not-a-session' } })).status, 401, 'a bad cookie');

  const agentWs = await agent(port, 'n1');
  t.teardown(() => agentWs.close());
  const path = '/api/nodes/n1/prune';
  t.equal((await post(path, { cookie: admin.cookie, origin: base })).status, 403, 'a session POST without the CSRF header');
  t.equal((await post(path, { cookie: admin.cookie, origin: base, 'x-nodewarden-csrf': tail.csrf })).status, 403, "another session's CSRF value");
  t.equal((await post(path, { cookie: admin.cookie, origin: 'http://evil.example', 'x-nodewarden-csrf': admin.csrf })).status, 403, 'the right CSRF value from the wrong Origin');
  t.equal((await post(path, { cookie: admin.cookie, 'x-nodewarden-csrf': admin.csrf })).status, 403, 'no Origin');
  t.equal((await post(path, { cookie: tail.cookie, origin: base, 'x-nodewarden-csrf': tail.csrf })).status, 403, 'a tail session cannot prune');
  t.equal((await fetch(`${base}/api/nodes/n1`, { method: 'DELETE', headers: { cookie: tail.cookie, origin: base, 'x-nodewarden-csrf': tail.csrf } })).status, 403, 'nor forget');

  // A replayed cookie after logout, and an expired one.
  const out = await fetch(`${base}/api/session`, { method: 'DELETE', headers: { cookie: tail.cookie, origin: base, 'x-nodewarden-csrf': tail.csrf } });
  t.equal(out.status, 200);
  t.match(out.headers.get('set-cookie'), /nw_session=; .*Max-Age=0/);
  t.equal((await fetch(`${base}/api/nodes`, { headers: { cookie: tail.cookie } })).status, 401, 'a session replayed after logout');
  await new Promise((r) => setTimeout(r, 1_100));
  t.equal((await fetch(`${base}/api/nodes`, { headers: { cookie: admin.cookie } })).status, 401, 'an expired session');

  // The live feed: cookie and Origin, checked before the upgrade.
  const fresh = await login(base);
  t.equal((await tab(port, 'nw_session=bad')).status, 401, 'feed: a bad cookie');
  t.equal((await tab(port, fresh.cookie, 'http://evil.example')).status, 403, 'feed: another origin (cross-site WebSocket hijacking)');
  const ok = await tab(port, fresh.cookie);
  t.equal(ok.status, undefined, 'feed: the page itself');
  ok.ws.send('{"type":"view","filter":{"node":{"$ne":1}}}');
  const code = await new Promise<number>((r) => ok.ws.once('close', (c) => r(c)));
  t.equal(code, 4000, 'a malformed view closes that tab with 4000');
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'and the server serves on');
});

t.test('a revoked token ends its web sessions and tabs', async (t) => {
  const { agg, port, base } = await start();
  t.teardown(() => agg.stop());
  const s = await login(base);
  const open = await tab(port, s.cookie);
  const closed = new Promise<number>((r) => open.ws.once('close', (c) => r(c)));
  agg.replaceTokens(TOKENS.filter((x) => x.role !== 'tail'));
  t.equal(await closed, 4001);
  t.equal((await fetch(`${base}/api/nodes`, { headers: { cookie: s.cookie } })).status, 401);
});

/** An aggregator with one agent (node-a) and one logged-in tab viewing critical findings, its first snapshot in. */
async function criticalTab(t: Test, web: { flushMs: number; maxPending?: number }) {
  const { agg, port, base } = await start({ web });
  t.teardown(() => agg.stop());
  const a = await agent(port, 'node-a');
  t.teardown(() => a.close());
  const s = await login(base);
  const { ws, got } = await tab(port, s.cookie);
  t.teardown(() => ws.close());
  ws.send(JSON.stringify({ type: 'view', filter: { severity: 'critical' }, limit: 10 }));
  await until(() => got.some((m) => m['type'] === 'snapshot'), 10_000, 'the snapshot');
  return { agg, port, base, a, ws, got };
}

t.test('the feed: a snapshot for the view, coalesced deltas, and a fresh snapshot for a tab that falls behind', async (t) => {
  const { agg, base, a, got } = await criticalTab(t, { flushMs: 100, maxPending: 5 });
  const snap = got.find((m) => m['type'] === 'snapshot')!;
  t.same(snap['nodes'], [['node-a', -1, 0, 1, 0]], 'every node as a cell: none firing, connected, not silent');
  t.same(snap['rows'], []);

  const crit = finding('node-a', 'disk.usage', '/', 'critical');
  const warn = finding('node-a', 'disk.inodes', '/', 'warning');
  // The same finding fires and updates within one flush: one change, the latest.
  a.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: warn }, { type: 'firing', finding: crit }] }));
  a.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'updated', finding: { ...crit, message: 'fuller now' } }] }));
  await until(() => got.some((m) => m['type'] === 'delta' && (m['changes'] as unknown[]).length > 0), 10_000, 'a delta');
  const deltas = got.filter((m) => m['type'] === 'delta');
  const changes = deltas.flatMap((d) => d['changes'] as [string, { message: string; check: string }][]);
  t.ok(changes.every(([, f]) => f.check === 'disk.usage'), 'only what matches the filter');
  t.equal(changes.at(-1)?.[1].message, 'fuller now', 'the latest state of the finding');
  t.same(deltas.at(-1)!['nodes'], [['node-a', 2, 2, 1, 0]], 'the cell turns critical');

  // Past maxPending changes between two flushes: the queue is dropped and a fresh snapshot comes instead.
  const before = got.filter((m) => m['type'] === 'snapshot').length;
  const many = Array.from({ length: 20 }, (_, i) => finding('node-a', 'sockets.process', `pid:${i}`, 'critical'));
  a.send(JSON.stringify({ v: 1, type: 'delta', transitions: many.map((f) => ({ type: 'firing', finding: f })) }));
  await until(() => got.filter((m) => m['type'] === 'snapshot').length > before, 10_000, 'a fresh snapshot');
  const again = got.filter((m) => m['type'] === 'snapshot').at(-1)!;
  t.equal(again['total'], 21, 'it counts every match');
  t.equal((again['rows'] as unknown[]).length, 10, 'and carries only the limit');
  t.equal(agg.web.resyncs, 1);
  const health = (await (await fetch(`${base}/healthz`)).json()) as { web: { tabs: number; sessions: number; resyncs: number } };
  t.same(health.web, { tabs: 1, sessions: 1, resyncs: 1 }, '/healthz counts tabs, sessions and the snapshots sent to tabs that fell behind');
});

t.test('the feed: a tab holding its limit hears only of changes that reach its rows, and the total of all', async (t) => {
  const { agg, port, base } = await start({ web: { flushMs: 100 } });
  t.teardown(() => agg.stop());
  const a = await agent(port, 'node-a');
  t.teardown(() => a.close());
  const crit = ['a', 'b', 'c'].map((s) => finding('node-a', 'disk.usage', `/${s}`, 'critical'));
  a.send(JSON.stringify({ v: 1, type: 'snapshot', findings: crit }));
  await until(() => agg.fleet.active().length === 3, 10_000, 'the snapshot');
  const s = await login(base);
  const { ws, got } = await tab(port, s.cookie);
  t.teardown(() => ws.close());
  ws.send(JSON.stringify({ type: 'view', filter: {}, limit: 2 }));
  await until(() => got.some((m) => m['type'] === 'snapshot'), 10_000, 'the snapshot');
  t.same((got[0]!['rows'] as { subject: string }[]).map((f) => f.subject), ['/a', '/b'], 'the first two, most severe first');
  t.equal(got[0]!['total'], 3);
  // A warning sorts after the last row: only the total changes. A critical /0 sorts first: it comes.
  a.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: finding('node-a', 'disk.inodes', '/w', 'warning') }, { type: 'firing', finding: finding('node-a', 'disk.usage', '/0', 'critical') }] }));
  // /b resolves: it is a row, so it comes.
  a.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'resolved', finding: { ...crit[1]!, state: 'resolved' } }] }));
  await until(() => got.some((m) => m['type'] === 'delta' && m['total'] === 4), 10_000, 'a delta with the total');
  const changes = got.filter((m) => m['type'] === 'delta').flatMap((d) => d['changes'] as [string, { subject: string }][]).map(([type, f]) => `${type} ${f.subject}`);
  t.same(changes, ['firing /0', 'resolved /b'], 'not the warning, which sorts after every row');
  t.same(firstK([5, 1, 4, 2, 3, 0], 3, (x, y) => x - y), [0, 1, 2]);

  // A tab changing its view 50 times at once gets a snapshot for the first and one for the last.
  const before = got.filter((m) => m['type'] === 'snapshot').length;
  for (let i = 0; i < 50; i++) ws.send(JSON.stringify({ type: 'view', filter: { text: i === 49 ? '/c' : `x${i}` }, limit: 2 }));
  await until(() => got.some((m) => m['type'] === 'snapshot' && m['total'] === 1), 10_000, 'the last view');
  await new Promise((r) => setTimeout(r, 300));
  const snaps = got.filter((m) => m['type'] === 'snapshot').slice(before);
  t.ok(snaps.length <= 3, `at most one snapshot per flush (${snaps.length} for 50 views)`);
  t.same((snaps.at(-1)!['rows'] as { subject: string }[]).map((f) => f.subject), ['/c'], 'for the latest view');
});

t.test('the feed: the total counts a finding updated into the filter and out of it, and not a replayed firing twice', async (t) => {
  const { a, ws, got } = await criticalTab(t, { flushMs: 100 });
  const last = () => got.filter((m) => m['type'] === 'delta' || m['type'] === 'snapshot').at(-1)?.['total'];
  const warn = finding('node-a', 'disk.usage', '/', 'warning');
  const send = (type: string, f: object) => a.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type, finding: f }] }));
  send('firing', warn);
  send('firing', finding('node-a', 'disk.inodes', '/', 'critical'));
  await until(() => last() === 1, 10_000, 'one critical');
  send('updated', { ...warn, severity: 'critical', message: 'fuller' });
  await until(() => last() === 2, 10_000, 'the warning that became critical counts');
  t.equal(last(), 2);
  // The agent replays a firing of a finding the aggregator already holds (a reconnect, or a hostile peer).
  send('firing', { ...warn, severity: 'critical', message: 'fuller' });
  send('firing', { ...warn, severity: 'critical', message: 'fuller' });
  await new Promise((r) => setTimeout(r, 400));
  t.equal(last(), 2, 'a replayed firing is not counted again');
  send('updated', { ...warn, severity: 'warning', message: 'less full' });
  await until(() => last() === 1, 10_000, 'back out of the filter');
  // What a fresh snapshot counts is what the deltas said.
  ws.send(JSON.stringify({ type: 'view', filter: { severity: 'critical' }, limit: 10 }));
  await until(() => got.filter((m) => m['type'] === 'snapshot').length === 2, 10_000, 'a fresh snapshot');
  t.equal(got.filter((m) => m['type'] === 'snapshot').at(-1)!['total'], 1, 'the snapshot agrees');
});

t.test('the feed: a refresh (fresh numbers, no transition) moves the total and the rows of a text filter on a number', async (t) => {
  const { a, ws, got } = await criticalTab(t, { flushMs: 100 });
  const last = () => got.filter((m) => m['type'] === 'delta' || m['type'] === 'snapshot').at(-1);
  const full = finding('node-a', 'disk.usage', '/', 'critical', { message: '/ is 91% full' });
  const varFull = finding('node-a', 'disk.usage', '/var', 'critical', { message: '/var is 93% full' });
  a.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: full }, { type: 'firing', finding: varFull }] }));
  await until(() => last()?.['total'] === 2, 10_000, 'two criticals');
  // Fresh numbers of a finding this tab neither shows nor could match (no text filter): nothing is sent.
  const inodes = finding('node-a', 'disk.inodes', '/', 'warning', { message: '/ has used 90% of its inodes' });
  a.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: inodes }] }));
  await new Promise((r) => setTimeout(r, 400));
  const heard = got.length;
  for (let i = 91; i < 96; i++) a.send(JSON.stringify({ v: 1, type: 'refresh', findings: [{ ...inodes, message: `/ has used ${i}% of its inodes`, lastSeen: new Date().toISOString() }] }));
  await new Promise((r) => setTimeout(r, 500));
  t.same(got.slice(heard).filter((m) => m['type'] !== 'tick'), [], 'a refresh of a finding the tab does not show, with no text filter: no message');
  ws.send(JSON.stringify({ type: 'view', filter: { text: '91%' }, limit: 10 }));
  await until(() => last()?.['type'] === 'snapshot' && last()!['total'] === 1, 10_000, 'a snapshot of the one at 91%');
  const refresh = (message: string) => a.send(JSON.stringify({ v: 1, type: 'refresh', findings: [{ ...full, message, lastSeen: new Date().toISOString() }] }));
  refresh('/ is 92% full');
  await until(() => last()?.['total'] === 0, 10_000, 'out of the filter: the total is 0');
  t.same((last()!['changes'] as [string, { subject: string }][]).map(([type, f]) => `${type} ${f.subject}`), ['resolved /'], 'and its row leaves the tab');
  refresh('/ is 91% full');
  await until(() => last()?.['total'] === 1, 10_000, 'back in');
  t.same((last()!['changes'] as [string, { message: string }][]).map(([type, f]) => `${type} ${f.message}`), ['updated / is 91% full'], 'the row comes back with the fresh numbers');
  ws.send(JSON.stringify({ type: 'view', filter: { text: '91%' }, limit: 10 }));
  await until(() => got.filter((m) => m['type'] === 'snapshot').length === 3, 10_000, 'a fresh snapshot');
  t.equal(got.filter((m) => m['type'] === 'snapshot').at(-1)!['total'], 1, 'the snapshot agrees with the deltas');
  // The same numbers again, for a row shown: the row is sent, the total did not move.
  const before = got.length;
  refresh('/ is 91% full');
  await until(() => got.slice(before).some((m) => m['type'] === 'delta'), 10_000, 'the shown row refreshed');
  t.same(got.slice(before).filter((m) => m['type'] === 'delta').map((m) => [m['total'], (m['changes'] as unknown[]).length]), [[1, 1]]);
  // Every finding matches, one row shown: fresh numbers of another (it matches, sorts after the row) move
  // nothing this tab sees, and nothing is sent.
  ws.send(JSON.stringify({ type: 'view', filter: {}, limit: 1 }));
  await until(() => got.filter((m) => m['type'] === 'snapshot').length === 4, 10_000, 'a snapshot of one row');
  t.same((got.filter((m) => m['type'] === 'snapshot').at(-1)!['rows'] as { subject: string }[]).map((f) => f.subject), ['/']);
  await new Promise((r) => setTimeout(r, 400));
  const quiet = got.length;
  for (let i = 94; i < 99; i++) a.send(JSON.stringify({ v: 1, type: 'refresh', findings: [{ ...varFull, message: `/var is ${i}% full`, lastSeen: new Date().toISOString() }] }));
  await new Promise((r) => setTimeout(r, 600));
  t.same(got.slice(quiet).filter((m) => m['type'] !== 'tick'), [], 'a refresh of a matching finding the tab does not show, with no text filter: no message');
});

t.test('web requests: named hostile ones refused, fuzzed ones decode or throw a WireError', async (t) => {
  for (const [name, raw] of [
    ['not JSON', '{oops'],
    ['__proto__ type', '{"__proto__":{"type":"view"}}'],
    ['a filter that is an object', '{"type":"view","filter":{"node":{}}}'],
    ['an unknown filter', '{"type":"view","filter":{"constructor":"x"}}'],
    ['limit 0', '{"type":"view","limit":0}'],
    ['limit huge', '{"type":"view","limit":1e9}'],
    ['a long filter', JSON.stringify({ type: 'view', filter: { text: 'x'.repeat(300) } })],
    ['over 4 KiB', JSON.stringify({ type: 'view', pad: 'x'.repeat(5000) })],
  ] as const) t.throws(() => decodeWebRequest(raw), { code: 'NW_ERR_PROTOCOL' }, name);
  t.same(decodeWebRequest('{"type":"view","filter":{"text":"DISK","severity":"warning"}}'), { type: 'view', filter: { text: 'disk', severity: 'warning' }, limit: 200 });
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json(), fc.record({ type: fc.constantFrom('view', 'refresh', 'x'), filter: fc.dictionary(fc.constantFrom('node', 'check', 'severity', 'pod', 'text', 'z'), fc.oneof(fc.string(), fc.integer())), limit: fc.integer() }).map((o) => JSON.stringify(o))), (raw) => {
      try {
        decodeWebRequest(raw);
      } catch (err) {
        if ((err as { code?: string }).code !== 'NW_ERR_PROTOCOL') throw err;
      }
    }),
    { numRuns: 3000 },
  );
  const f = finding('n1', 'pod.stuck', 'prod/api-0', 'critical', { message: 'Pod prod/api-0 is stuck Terminating', workload: { namespace: 'prod', pod: 'api-0' } });
  t.ok(matchesWebFilter(f, { pod: 'prod/api' }));
  t.ok(matchesWebFilter(f, { text: 'terminating', check: 'pod' }));
  t.notOk(matchesWebFilter(f, { pod: 'dev/' }));
  t.notOk(matchesWebFilter({ ...f, severity: 'warning' }, { severity: 'critical' }));
});

t.test('property: any request to the web routes, with or without a session, is answered below 500', async (t) => {
  const { agg, port, base } = await start();
  t.teardown(() => agg.stop());
  const s = await login(base, 'admin-token-0123456789');
  const target = fc.constantFrom('/', '/app.js', '/index.html', '/api/session', '/api/session?token=admin-token-0123456789', '/api/nodes/n1/prune', '/api/web', '/api/nodes', '/%2e%2e/package.json');
  const method = fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'HEAD', 'OPTIONS');
  const header = fc.constantFrom('', `Cookie: ${s.cookie}\r\n`, `Cookie: ${s.cookie}; ${s.cookie}\r\n`, 'Cookie: nw_session=\r\n', `Origin: ${base}\r\n`, 'Origin: null\r\n', `X-Nodewarden-CSRF: ${s.csrf}\r\n`, 'Content-Type: application/json\r\n');
  const body = fc.oneof(fc.constant(''), fc.string({ maxLength: 200 }), fc.json({ maxDepth: 3 }), fc.constant('{"token":"admin-token-0123456789"}'));
  await fc.assert(
    fc.asyncProperty(method, target, fc.array(header, { maxLength: 4 }), body, async (m, tgt, hs, b) => {
      const status = await raw(port, `${m} ${tgt} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${hs.join('')}Content-Length: ${Buffer.byteLength(b)}\r\nConnection: close\r\n\r\n${b}`);
      if (status >= 500 || status === 0) throw new Error(`${m} ${tgt} answered ${status}`);
    }),
    { numRuns: 200 },
  );
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'still serving');
});
