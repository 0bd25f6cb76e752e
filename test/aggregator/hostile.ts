// The aggregator and the agent's listener against hostile peers at the socket level: idle TLS sockets,
// slowloris, a reconnecting flood at the connection cap, a TokenReview flood, readers that stop
// reading, wrong methods, an oversized frame. Small numbers here; `npm run bench -- hostile` runs the
// same cases at full size and reports memory, fds and /healthz answers.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import WebSocket from 'ws';
import { pino } from 'pino';
import { Aggregator } from '../../aggregator/server.js';
import { KubeAgentAuth } from '../../aggregator/kube-auth.js';
import type { Token } from '../../aggregator/auth.js';
import { AgentServer } from '../../agent/exporters/http.js';
import { createLogger } from '../../agent/log.js';
import { MAX_MESSAGE_BYTES } from '../../protocol/wire.js';
import { FakeApiServer, aggregatorKubeApi } from '../helpers/fake-apiserver.js';
import { finding } from '../helpers/findings.js';
import { until } from '../helpers/processes.js';

const TOKENS: Token[] = [
  { role: 'agent', name: 'agents', secret: 'agent-token-0123456789' },
  { role: 'tail', name: 'ops', secret: 'tail-token-0123456789' },
];
const log = pino({ level: 'silent' });

async function start(over: Partial<ConstructorParameters<typeof Aggregator>[0]> = {}) {
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: TOKENS, version: 'test', log, silentAfterMs: 60_000, heartbeatMs: 60_000, ...over });
  const { url, port } = await agg.start();
  return { agg, url, port };
}

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  return { cert, key };
}

/** GET path over http or https; the status, or 0 when the request failed. */
function get(port: number, pathname: string, opts: { tls?: boolean; method?: string; token?: string } = {}): Promise<number> {
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}${pathname}`;
  return fetch(url, { method: opts.method ?? 'GET', ...(opts.token ? { headers: { authorization: `Bearer ${opts.token}` } } : {}), signal: AbortSignal.timeout(5000) })
    .then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    })
    .catch(() => 0);
}

/** Server-side sockets of `port` in CLOSE-WAIT (the state a socket the server forgot stays in). */
function closeWait(port: number): number {
  const out = execFileSync('ss', ['-Htn', 'state', 'close-wait', `( sport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim()).length;
}

function agentHello(url: string, node: string, token = 'agent-token-0123456789'): Promise<'welcome' | string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: `Bearer ${token}` }, handshakeTimeout: 5000 });
    const done = (v: string) => {
      ws.terminate();
      resolve(v);
    };
    ws.once('unexpected-response', (_q, res) => done(`http ${res.statusCode}`));
    ws.once('error', (err) => done(`error ${err.message}`));
    ws.once('open', () => ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'test', collectors: ['disk'] })));
    ws.once('message', (raw: Buffer) => done((JSON.parse(raw.toString()) as { type: string }).type));
    ws.once('close', (code) => done(`close ${code}`));
  });
}

/** A cluster of one node (worker-1) with its agent pod, and the API as `--agent-auth kubernetes` reaches it. */
async function workerOne(t: { teardown(fn: () => unknown): void }) {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.addNode('worker-1');
  api.addPod('nodewarden', 'nodewarden-agent-aaaaa', 'worker-1', 'Running');
  return { api, kube: await aggregatorKubeApi(t, api) };
}

/** `n` idle sockets, each reconnecting as soon as it is closed, from `from` (in turn) until stop(). */
function reconnectingFlood(port: number, n: number, from: string[] = ['127.0.0.1']) {
  let stopped = false;
  let reconnects = 0;
  const one = (i: number) => {
    if (stopped) return;
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from[i % from.length]! });
    s.on('error', () => undefined);
    s.once('close', () => {
      reconnects++;
      setImmediate(() => one(i));
    });
  };
  for (let i = 0; i < n; i++) one(i);
  return { reconnects: () => reconnects, stop: () => void (stopped = true) };
}

process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0';

t.test('TLS: sockets that never send a ClientHello are destroyed at the deadline, none left in CLOSE-WAIT, https serves on', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-hostile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { agg, port } = await start({ tls: selfSigned(dir), limits: { handshakeTimeoutMs: 500 } });
  t.teardown(() => agg.stop());
  // 200 sockets that connect and say nothing; half of them go away by themselves (the CLOSE-WAIT case).
  const socks = Array.from({ length: 200 }, () => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    return s;
  });
  await Promise.all(socks.map((s) => new Promise((r) => s.once('connect', r))));
  for (const s of socks.slice(0, 100)) s.end();
  const closedByServer = await Promise.all(socks.slice(100).map((s) => new Promise<boolean>((resolve) => {
    s.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 20_000).unref();
  })));
  t.equal(closedByServer.filter(Boolean).length, 100, 'every silent socket was closed by the aggregator');
  await until(() => closeWait(port) === 0, 10_000, 'no CLOSE-WAIT sockets').catch(() => undefined);
  t.equal(closeWait(port), 0, 'no socket of the aggregator is left in CLOSE-WAIT');
  t.equal(await get(port, '/healthz', { tls: true }), 200, 'https answers after the burst');
  const metrics = await (await fetch(`https://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_connections\{state="unauthenticated"\} 0/, 'no unauthenticated connection is held');
});

/** Sends a request head one byte at a time every `everyMs`; resolves with whether the server closed first. */
function slowloris(port: number, opts: { tls?: boolean; everyMs: number; maxMs: number }): Promise<{ closedByServer: boolean; bytesSent: number }> {
  return new Promise((resolve) => {
    const head = 'GET /healthz HTTP/1.1\r\nHost: x\r\n' + 'X-Slow: ' + 'a'.repeat(1000);
    const sock = opts.tls ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : net.connect(port, '127.0.0.1');
    let sent = 0;
    let finished = false;
    sock.on('error', () => undefined);
    const timer = setInterval(() => {
      if (sent < head.length) sock.write(head[sent++]!);
    }, opts.everyMs);
    const end = (closedByServer: boolean) => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      sock.destroy();
      resolve({ closedByServer, bytesSent: sent });
    };
    sock.once('close', () => end(true));
    setTimeout(() => end(false), opts.maxMs).unref();
  });
}

t.test('slowloris: a request head dripped a byte at a time is cut at the header deadline (aggregator http and https, agent listener)', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-hostile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plain = await start({ limits: { handshakeTimeoutMs: 1000 } });
  const secure = await start({ tls: selfSigned(dir), limits: { handshakeTimeoutMs: 1000 } });
  t.teardown(() => plain.agg.stop());
  t.teardown(() => secure.agg.stop());
  const agentSrv = new AgentServer({ runner: { active: () => [], statuses: () => [] }, node: 'n1', listen: { host: '127.0.0.1', port: 0 }, limits: { headersTimeoutMs: 1000, idleTimeoutMs: 2000 } });
  await agentSrv.start();
  t.teardown(() => agentSrv.stop());
  // A byte every 100 ms keeps any idle timer alive; only a deadline on the whole head stops it. The
  // drip lasts 20 s, twenty times the deadline.
  const results = await Promise.all([
    slowloris(plain.port, { everyMs: 100, maxMs: 20_000 }),
    slowloris(secure.port, { tls: true, everyMs: 100, maxMs: 20_000 }),
    slowloris(agentSrv.address!.port, { everyMs: 100, maxMs: 20_000 }),
  ]);
  for (const [i, name] of ['aggregator http', 'aggregator https', 'agent listener'].entries()) {
    t.ok(results[i]!.closedByServer, `${name}: the server closed the connection while the client was still dripping (${results[i]!.bytesSent} bytes sent)`);
  }
  t.equal(await get(plain.port, '/healthz'), 200);
  t.equal(await get(secure.port, '/healthz', { tls: true }), 200);
  t.equal(await get(agentSrv.address!.port, '/healthz'), 200);
});

t.test('the connection cap is no lockout: with 60 reconnecting idle sockets against a cap of 50, agents, a tailer and /healthz get in every time', async (t) => {
  const { agg, url, port } = await start({ limits: { maxConnections: 50, handshakeTimeoutMs: 10_000 } });
  t.teardown(() => agg.stop());
  const flood = reconnectingFlood(port, 60);
  t.teardown(flood.stop);
  await until(() => flood.reconnects() > 100, 10_000, 'the flood to be turning over');
  const answers: string[] = [];
  let healthz = 0;
  for (let i = 0; i < 10; i++) {
    answers.push(await agentHello(url, `node-${i}`));
    if ((await get(port, '/healthz')) === 200) healthz++;
  }
  t.same(answers, Array(10).fill('welcome'), 'every agent was welcomed during the flood');
  t.equal(healthz, 10, '/healthz answered 10 of 10');
  const tail = await new Promise<string>((resolve) => {
    const ws = new WebSocket(`${url}/api/tail`, { headers: { authorization: 'Bearer tail-token-0123456789' } });
    ws.once('open', () => ws.send(JSON.stringify({ v: 1, type: 'subscribe' })));
    ws.once('message', (raw: Buffer) => {
      ws.terminate();
      resolve((JSON.parse(raw.toString()) as { type: string }).type);
    });
    ws.once('error', (e) => resolve(`error ${e.message}`));
  });
  t.match(tail, /history|active/, 'a tailer subscribed during the flood');
  flood.stop();
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_connections_evicted_total [1-9]/, 'flood sockets were evicted, and counted');
});

t.test('the cap is no lockout at the issue\'s size: 600 idle sockets from four other hosts reconnecting at --max-connections 500; agents, a tailer and /healthz from this one get in every time', async (t) => {
  // 127.0.0.2-5 are loopback too: the flood comes from four hosts, each under its per-address share,
  // together over the unauthenticated pool. A newcomer must not evict this host's sockets mid-handshake.
  const { agg, url, port } = await start({ limits: { maxConnections: 500 } });
  t.teardown(() => agg.stop());
  const flood = reconnectingFlood(port, 600, ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']);
  t.teardown(flood.stop);
  await until(() => flood.reconnects() > 1000, 20_000, 'the flood to be turning over');
  const answers: string[] = [];
  let healthz = 0;
  for (let i = 0; i < 10; i++) {
    answers.push(await agentHello(url, `node-${i}`));
    if ((await get(port, '/healthz')) === 200) healthz++;
  }
  const tail = await new Promise<string>((resolve) => {
    const ws = new WebSocket(`${url}/api/tail`, { headers: { authorization: 'Bearer tail-token-0123456789' }, handshakeTimeout: 5000 });
    ws.once('open', () => ws.send(JSON.stringify({ v: 1, type: 'subscribe' })));
    ws.once('message', (raw: Buffer) => {
      ws.terminate();
      resolve((JSON.parse(raw.toString()) as { type: string }).type);
    });
    ws.once('error', (e) => resolve(`error ${e.message}`));
  });
  flood.stop();
  const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { connections: { evicted: number } };
  t.ok(health.connections.evicted > 0, `/healthz shows the evictions (${health.connections.evicted})`);
  t.same(answers, Array(10).fill('welcome'), `every agent was welcomed during the flood (${flood.reconnects()} flood sockets turned over)`);
  t.equal(healthz, 10, '/healthz answered 10 of 10');
  t.match(tail, /history|active/, 'a tailer subscribed during the flood');
});

t.test('TokenReview flood: garbage JWTs cost a bounded number of reviews, a refused token is not reviewed again, a real agent gets in', async (t) => {
  const { api, kube } = await workerOne(t);
  const kubeAuth = new KubeAgentAuth(kube, { audience: 'nodewarden', serviceAccounts: ['nodewarden:nodewarden-agent'], timeoutMs: 5000, cacheMs: 1, maxInFlight: 8 });
  const { agg, url } = await start({ kubeAuth });
  t.teardown(() => agg.stop());
  const real = api.issueToken({ namespace: 'nodewarden', serviceAccount: 'nodewarden-agent', audiences: ['nodewarden'], pod: 'nodewarden-agent-aaaaa', nodeExtra: true });
  t.equal(await agentHello(url, 'worker-1', real), 'welcome', 'the real agent is welcome before the flood');
  const reviews = () => api.requests.filter((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews').length;
  const before = reviews();
  // 300 attempts with 20 distinct garbage tokens, 30 at a time, and the real agent reconnecting meanwhile.
  const garbage = Array.from({ length: 20 }, (_, i) => `eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnYXJiYWdlLSR7aX0ifQ.${'c2lnbmF0dXJl'}${i}`);
  const realAnswers: string[] = [];
  for (let round = 0; round < 10; round++) {
    const wave = Array.from({ length: 30 }, (_, i) => agentHello(url, 'worker-1', garbage[(round * 30 + i) % garbage.length]!));
    realAnswers.push(await agentHello(url, 'worker-1', real));
    await Promise.all(wave);
  }
  const spent = reviews() - before;
  t.ok(spent <= garbage.length + 10, `300 garbage attempts with 20 distinct tokens cost ${spent} TokenReviews (at most one per token, plus the real agent's)`);
  t.same(realAnswers, Array(10).fill('welcome'), 'the real agent got in every time during the flood');
  t.ok(kubeAuth.stats.negativeHits > 0, 'refusals were answered from the negative cache');
  const metrics = await (await fetch(`${url.replace('ws', 'http')}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_token_reviews_total\{outcome="cached-refusal"\} [1-9]/);
});

t.test('TokenReview flood of distinct tokens: one address gets a burst of reviews and then one a second; one token presented 100 times at once is reviewed once', async (t) => {
  const { api, kube } = await workerOne(t);
  // A per-second refill too slow to matter during the test: what is reviewed is the burst.
  const kubeAuth = new KubeAgentAuth(kube, { audience: 'nodewarden', serviceAccounts: ['nodewarden:nodewarden-agent'], timeoutMs: 5000, cacheMs: 60_000, maxInFlight: 8, perAddressRate: { burst: 5, perSecond: 0.001 } });
  const { agg, url } = await start({ kubeAuth });
  t.teardown(() => agg.stop());
  const reviews = () => api.requests.filter((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews').length;
  const hello = (token: string, localAddress: string) =>
    new Promise<string>((resolve) => {
      const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: `Bearer ${token}` }, localAddress, handshakeTimeout: 5000 });
      ws.once('unexpected-response', (_q, res) => resolve(`http ${res.statusCode}`));
      ws.once('error', (err) => resolve(`error ${err.message}`));
      ws.once('open', () => {
        ws.terminate();
        resolve('open');
      });
    });
  const jwt = (i: number) => `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(JSON.stringify({ sub: `garbage-${i}` })).toString('base64url')}.c2lnbmF0dXJlLXNpZ25hdHVyZQ`;
  const before = reviews();
  const distinct = await Promise.all(Array.from({ length: 200 }, (_, i) => hello(jwt(i), '127.0.0.2')));
  const spentDistinct = reviews() - before;
  t.ok(spentDistinct <= 5, `200 distinct garbage tokens from one address cost ${spentDistinct} TokenReviews (its burst is 5)`);
  t.ok(distinct.every((a) => a === 'http 401' || a === 'http 503'), 'each was refused with 401 or 503');
  const mid = reviews();
  const same = await Promise.all(Array.from({ length: 100 }, () => hello(jwt(-1), '127.0.0.3')));
  t.equal(reviews() - mid, 1, 'one token presented 100 times at once is reviewed once');
  t.ok(same.every((a) => a === 'http 401' || a === 'http 503'), 'and refused every time');
  t.ok(kubeAuth.stats.joined + kubeAuth.stats.negativeHits >= 99, 'the others waited for that review or were answered from the negative cache');
  const real = api.issueToken({ namespace: 'nodewarden', serviceAccount: 'nodewarden-agent', audiences: ['nodewarden'], pod: 'nodewarden-agent-aaaaa', nodeExtra: true });
  t.equal(await agentHello(url, 'worker-1', real), 'welcome', 'a real agent from another address gets in');
  const metrics = await (await fetch(`${url.replace('ws', 'http')}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_token_reviews_total\{outcome="address-rate"\} [1-9]/, 'refusals by the per-address rate are counted');
});

t.test('a GET /api/findings reader that stops reading is dropped at the stall deadline and counted', async (t) => {
  const { agg, url, port } = await start({ limits: { readerStallMs: 500 } });
  t.teardown(() => agg.stop());
  // 24 MB of findings from six agents (each snapshot under the 4 MiB frame limit): more than loopback's
  // socket buffers hold, so a reader that does not read really stalls the response.
  const agents: WebSocket[] = [];
  for (let n = 0; n < 6; n++) {
    const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: `n${n}`, agentVersion: 'test', collectors: ['disk'] }));
    ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: Array.from({ length: 400 }, (_, i) => finding(`n${n}`, 'disk.usage', `/mnt/${i}`, 'warning', { evidence: { pad: 'x'.repeat(9000) } })) }));
    agents.push(ws);
  }
  await until(() => agg.fleet.active().length === 2400, 10_000, 'the snapshots');
  // Readers that send the request, then never read a byte (their receive window fills).
  const readers = Array.from({ length: 5 }, () => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /api/findings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tail-token-0123456789\r\n\r\n'));
    s.on('error', () => undefined);
    s.pause();
    return s;
  });
  t.teardown(() => readers.forEach((s) => s.destroy()));
  const stalled = async () => Number(/nodewarden_aggregator_rejected_total\{reason="reader stalled"\} (\d+)/.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? 0);
  await until(async () => (await stalled()) >= 5, 20_000, 'five stalled readers dropped').catch(() => undefined);
  t.equal(await stalled(), 5, 'each stalled reader was dropped by the aggregator, and counted');
  t.equal(((await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { connections: { stalledReaders: number } }).connections.stalledReaders, 5, 'and /healthz shows them');
  // Reading now, each finds its connection cut short: a truncated body, then the end.
  const bodies = await Promise.all(readers.map((s) => new Promise<string>((resolve) => {
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1').slice(-64)));
    s.once('close', () => resolve(got));
    s.resume();
  })));
  t.ok(bodies.every((b) => !b.endsWith(']')), 'no stalled reader got the complete list');
  const list = (await (await fetch(`http://127.0.0.1:${port}/api/findings`, { headers: { authorization: 'Bearer tail-token-0123456789' } })).json()) as unknown[];
  t.equal(list.length, 2400, 'a reader that reads gets the whole list');
  for (const ws of agents) ws.close();
});

t.test('/healthz and /metrics answer 405 with Allow to anything but GET and HEAD (aggregator and agent listener)', async (t) => {
  const { agg, port } = await start();
  t.teardown(() => agg.stop());
  const agentSrv = new AgentServer({ runner: { active: () => [], statuses: () => [] }, node: 'n1', listen: { host: '127.0.0.1', port: 0 } });
  await agentSrv.start();
  t.teardown(() => agentSrv.stop());
  for (const [name, p, paths] of [['aggregator', port, ['/healthz', '/metrics']], ['agent', agentSrv.address!.port, ['/healthz', '/readyz', '/metrics']]] as const) {
    for (const pathname of paths) {
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
        const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.request({ host: '127.0.0.1', port: p, path: pathname, method }, resolve).on('error', reject).end());
        res.resume();
        t.equal(res.statusCode, 405, `${name} ${method} ${pathname}`);
        t.equal(res.headers['allow'], 'GET, HEAD');
      }
      t.equal(await get(p, pathname, { method: 'HEAD' }), 200, `${name} HEAD ${pathname}`);
      t.equal(await get(p, pathname), 200, `${name} GET ${pathname}`);
    }
  }
});

t.test('a WebSocket frame of 4 MiB + 1 byte closes 1009 (message too big), not 1006', async (t) => {
  const { agg, url } = await start();
  t.teardown(() => agg.stop());
  const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
  ws.on('error', () => undefined);
  await new Promise((r) => ws.once('open', r));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.send(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20));
  t.equal(await closed, 1009);
});

t.test('hostile refresh over the wire: a refresh that rewrites workload and the pid in a remedy is refused, counted and logged with one node key; tailers and /api/findings see nothing', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-hostile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = path.join(dir, 'log');
  const fd = openSync(logFile, 'w');
  const { agg, url, port } = await start({ log: createLogger({ component: 'aggregator', level: 'info', destination: fd }) });
  t.teardown(() => agg.stop());
  const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
  await new Promise((r) => ws.once('open', r));
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'n1', agentVersion: 'test', collectors: ['mounts'] }));
  const held = finding('n1', 'mount.holder', '/var/lib/kubelet/pods/x', 'warning', { remedy: 'ps -f 4242; nsenter -t 4242 -m umount /var/lib/kubelet/pods/x', workload: { pod: 'web-1', namespace: 'default' } } as never);
  ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: held }] }));
  await until(() => agg.fleet.active().length === 1, 10_000, 'the finding');
  const tail = new WebSocket(`${url}/api/tail`, { headers: { authorization: 'Bearer tail-token-0123456789' } });
  const got: { type: string; transition?: { finding: { subject: string } } }[] = [];
  tail.on('message', (raw: Buffer) => got.push(JSON.parse(raw.toString()) as never));
  await new Promise((r) => tail.once('open', r));
  tail.send(JSON.stringify({ v: 1, type: 'subscribe' }));
  await until(() => got.some((m) => m.type === 'active'), 10_000, 'the active set');
  ws.send(JSON.stringify({ v: 1, type: 'refresh', findings: [{ ...held, remedy: 'ps -f 1; nsenter -t 1 -m umount /var/lib/kubelet/pods/x', workload: { pod: 'coredns', namespace: 'kube-system' } }] }));
  // A later delta on the same connection: once the tailer has it, the refresh was handled before it.
  ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: finding('n1', 'disk.usage', '/', 'warning') }] }));
  await until(() => got.some((m) => m.type === 'transition' && m.transition?.finding.subject === '/'), 10_000, 'the later delta');
  t.equal(got.filter((m) => m.type === 'transition').length, 1, 'the tailer saw no transition for the refused refresh');
  const list = (await (await fetch(`http://127.0.0.1:${port}/api/findings?check=mount.holder`, { headers: { authorization: 'Bearer tail-token-0123456789' } })).json()) as { remedy: string; workload: { pod: string } }[];
  t.match(list, [{ remedy: /nsenter -t 4242/, workload: { pod: 'web-1' } }], 'the stored finding is unchanged');
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_rejected_total\{reason="refresh rewrite"\} 1/);
  ws.close();
  tail.close();
  await until(() => readFileSync(logFile, 'utf8').includes('agent disconnected'), 10_000, 'the disconnect logged');
  closeSync(fd);
  const lines = readFileSync(logFile, 'utf8').trim().split('\n');
  const refused = lines.find((l) => l.includes('refresh refused'));
  t.match(refused, /"code":"NW_ERR_PROTOCOL"/, 'the refusal is logged with its code');
  for (const l of lines) t.ok((l.match(/"node":/g) ?? []).length <= 1, `one node key: ${l.slice(0, 120)}`);
  t.match(JSON.parse(lines.find((l) => l.includes('agent disconnected'))!), { component: 'aggregator', node: 'n1' }, 'node is the peer, component the aggregator');
});

t.test('pod.stuck is taken only from the node the pod is bound to: a spoofed kube-system/coredns from another node is refused and counted', async (t) => {
  const { agg, url, port } = await start();
  t.teardown(() => agg.stop());
  const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
  await new Promise((r) => ws.once('open', r));
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'evil-node', agentVersion: 'test', collectors: ['pods'] }));
  const podEvidence = (nodeName: string | null) => ({ pod: { namespace: 'kube-system', name: 'coredns', uid: 'u1', nodeName } });
  const spoofed = finding('evil-node', 'pod.stuck', 'kube-system/coredns', 'critical', { evidence: podEvidence('worker-1') });
  const unbound = finding('evil-node', 'pod.stuck', 'kube-system/coredns-2', 'critical', { evidence: { pod: { namespace: 'kube-system', name: 'coredns-2' } } });
  const own = finding('evil-node', 'pod.stuck', 'default/mine', 'critical', { evidence: podEvidence('evil-node') });
  ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [spoofed, unbound, own] }));
  ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: { ...spoofed, subject: 'kube-system/coredns-3', id: 'x'.repeat(20) } }] }));
  await until(() => agg.fleet.active().length >= 1, 10_000, 'the snapshot');
  const metricsText = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  await until(async () => /reason="pod.stuck from another node"\} 3/.test(await metricsText()), 10_000, 'three refusals counted').catch(() => undefined);
  t.same(agg.fleet.active().map((f) => f.subject), ['default/mine'], "only the pod bound to the reporting node is kept");
  t.match(await metricsText(), /nodewarden_aggregator_rejected_total\{reason="pod.stuck from another node"\} 3/);
  // The same for a crash loop: another node's pod is not this node's to report.
  const loop = finding('evil-node', 'pod.crashLoop', 'kube-system/coredns/coredns', 'warning', { evidence: podEvidence('worker-1') });
  ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: loop }] }));
  await until(async () => /reason="pod.crashLoop from another node"\} 1/.test(await metricsText()), 10_000, 'the crash-loop refusal counted').catch(() => undefined);
  t.match(await metricsText(), /nodewarden_aggregator_rejected_total\{reason="pod.crashLoop from another node"\} 1/);
  t.same(agg.fleet.active().map((f) => f.subject), ['default/mine'], 'the spoofed crash loop is not kept');
  ws.close();
});
