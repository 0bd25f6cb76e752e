// Bench: the aggregator's connection layer at full size against the tricks of issue 16, each on a fresh
// aggregator process: 10,000 TLS sockets that never send a ClientHello, then released; slowloris (one
// header byte every 5 s); 600 sockets reconnecting as soon as they are closed at --max-connections 500;
// a flood of JWT-shaped garbage at --agent-auth kubernetes (against a stand-in API server here that
// counts TokenReviews); 20 GET /api/findings readers that stop reading. For each: the aggregator's peak
// RSS and fds, and /healthz probed every 250 ms during and after (a probe over 2 s counts as missed).
// Attackers connect from 127.0.0.2 and up, honest peers from 127.0.0.1. Stops by itself.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { findingId, type Finding } from '../protocol/finding.js';
import { healthzStatus, procStat, startBenchAggregator } from './aggregator.js';

const AGENT = 'bench-agent-token-0123456789';
/** Every count below times this (1 in `npm run bench`; a smoke run of the bench itself uses less). */
let SCALE = 1;
const n = (full: number) => Math.max(2, Math.round(full * SCALE));
const TAIL = 'bench-tail-token-0123456789';
/** The heap cap the manifests run the aggregator with (manifests/aggregator.yaml). */
const HEAP = ['--max-old-space-size=192'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fds = (pid: number) => {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
};
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

/** /healthz every 250 ms with the aggregator's RSS and fds, until stop(): a one-line summary. */
function watch(pid: number, port: number, tls = false) {
  let probes = 0;
  let answered = 0;
  let maxFds = 0;
  let maxRss = 0;
  const timer = setInterval(() => {
    probes++;
    void healthzStatus(port, tls).then((s) => s === 200 && answered++);
    maxFds = Math.max(maxFds, fds(pid));
    maxRss = Math.max(maxRss, rssMiB(pid));
  }, 250);
  return async () => {
    clearInterval(timer);
    await sleep(2100); // the last probes answer or time out
    return `/healthz ${answered}/${probes}, fds max ${maxFds}, RSS max ${maxRss.toFixed(0)} MiB`;
  };
}

/** An agent connection that says hello as `node`: resolves true once welcomed (and keeps it open in `keep`). */
function hello(url: string, token: string, node: string, opts: { localAddress?: string; keep?: WebSocket[] } = {}): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false, handshakeTimeout: 5000, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    ws.on('error', () => resolve(false));
    ws.on('unexpected-response', () => resolve(false));
    ws.on('close', () => resolve(false));
    ws.on('open', () => ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'bench', collectors: [] })));
    ws.once('message', (raw: Buffer) => {
      const ok = (JSON.parse(raw.toString()) as { type: string }).type === 'welcome';
      if (opts.keep && ok) opts.keep.push(ws);
      else ws.close();
      resolve(ok);
    });
  });
}

/** A real agent connecting every 500 ms until stop(): how many of its tries were welcomed. */
function honestAgent(url: string, token: string) {
  let tries = 0;
  let welcomed = 0;
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      tries++;
      if (await hello(url, token, 'honest-node')) welcomed++;
      await sleep(500);
    }
  })();
  return async () => {
    running = false;
    await done;
    return `a real agent got in ${welcomed} of ${tries} times`;
  };
}

export async function tlsIdleBurst(): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-bench-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  const { agg, port, stop } = await startBenchAggregator(HEAP, ['--tls-cert', cert, '--tls-key', key, '--log-level', 'fatal'], { tls: true });
  try {
    const pid = agg.pid!;
    const idle = { fds: fds(pid), rss: rssMiB(pid) };
    const during = watch(pid, port, true);
    const sockets: net.Socket[] = [];
    let closedByServer = 0;
    for (let i = 0; i < n(10_000); i++) {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 4)}` });
      s.on('error', () => undefined);
      s.on('close', () => closedByServer++);
      sockets.push(s);
      if (i % 500 === 499) await sleep(20);
    }
    await sleep(3000);
    const inBurst = await during();
    const closedBefore = closedByServer;
    const t0 = performance.now();
    for (const s of sockets) s.destroy();
    let firstHttpsMs = NaN;
    for (;;) {
      if ((await healthzStatus(port, true)) === 200) {
        firstHttpsMs = performance.now() - t0;
        break;
      }
      if (performance.now() - t0 > 30_000) break;
    }
    const after = watch(pid, port, true);
    await sleep(1000);
    const at1s = { fds: fds(pid), rss: rssMiB(pid) };
    await sleep(4000);
    const at5s = { fds: fds(pid), rss: rssMiB(pid) };
    const afterLine = await after();
    const peak = procStat(pid).hwmKiB / 1024;
    return [
      `TLS idle burst: ${n(10_000)} TCP sockets that never send a ClientHello (--tls-cert), held 3 s, then released`,
      `  idle before: ${idle.fds} fds, RSS ${idle.rss.toFixed(0)} MiB; during: ${inBurst}; ${closedBefore} of them closed by the aggregator while held (pool and deadline)`,
      `  released: first https /healthz answered ${firstHttpsMs.toFixed(0)} ms later; 1 s after: ${at1s.fds} fds, RSS ${at1s.rss.toFixed(0)} MiB; 5 s after: ${at5s.fds} fds, RSS ${at5s.rss.toFixed(0)} MiB; after: ${afterLine}; peak RSS ${peak.toFixed(0)} MiB`,
    ].join('\n');
  } finally {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function slowloris(): Promise<string> {
  const { agg, port, stop } = await startBenchAggregator(HEAP, ['--log-level', 'fatal']);
  try {
    const during = watch(agg.pid!, port);
    const lifetimes: number[] = [];
    const head = 'GET /healthz HTTP/1.1\r\nHost: x\r\n' + 'X-Slow: '.padEnd(1000, 'a');
    await Promise.all(Array.from({ length: n(500) }, (_, i) => new Promise<void>((resolve) => {
      const t0 = performance.now();
      const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 4)}` });
      let sent = 0;
      const timer = setInterval(() => s.writable && s.write(head[sent++ % head.length]!), 5000);
      s.on('connect', () => s.write(head[sent++]!));
      s.on('error', () => undefined);
      s.on('close', () => {
        clearInterval(timer);
        lifetimes.push(performance.now() - t0);
        resolve();
      });
      setTimeout(() => s.destroy(), 60_000).unref(); // a bench stops by itself
    })));
    const line = await during();
    lifetimes.sort((a, b) => a - b);
    return [
      `slowloris: ${lifetimes.length} connections sending one header byte every 5 s (head deadline 10 s)`,
      `  closed by the aggregator after: median ${(lifetimes[lifetimes.length >> 1]! / 1000).toFixed(1)} s, longest ${(lifetimes[lifetimes.length - 1]! / 1000).toFixed(1)} s (60 s means it was never closed); during: ${line}; peak RSS ${(procStat(agg.pid!).hwmKiB / 1024).toFixed(0)} MiB`,
    ].join('\n');
  } finally {
    await stop();
  }
}

async function reconnectingFlood(): Promise<string> {
  const { agg, port, stop } = await startBenchAggregator(HEAP, ['--max-connections', String(n(500)), '--log-level', 'fatal']);
  const url = `ws://127.0.0.1:${port}`;
  let stopped = false;
  const open = new Set<net.Socket>();
  let churned = 0;
  const one = (i: number) => {
    if (stopped) return;
    const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 4)}` });
    open.add(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      open.delete(s);
      churned++;
      if (!stopped) setImmediate(() => one(i));
    });
  };
  try {
    for (let i = 0; i < n(600); i++) one(i);
    await sleep(1000);
    const during = watch(agg.pid!, port);
    const agent = honestAgent(url, AGENT);
    const keep: WebSocket[] = [];
    const tailer = new WebSocket(`${url}/api/tail`, { headers: { authorization: `Bearer ${TAIL}` }, perMessageDeflate: false });
    let tailerActive = false;
    tailer.on('error', () => undefined);
    tailer.on('open', () => tailer.send(JSON.stringify({ v: 1, type: 'subscribe', filter: {} })));
    tailer.on('message', (raw: Buffer) => (tailerActive ||= (JSON.parse(raw.toString()) as { type: string }).type === 'active'));
    await sleep(15_000);
    const agentLine = await agent();
    const line = await during();
    const tailerOpen = tailer.readyState === WebSocket.OPEN;
    tailer.close();
    for (const ws of keep) ws.close();
    return [
      `reconnecting flood: --max-connections ${n(500)}, ${n(600)} idle sockets reconnecting as soon as they are closed, for 15 s`,
      `  ${agentLine}; a tailer ${tailerActive ? 'subscribed and got the active set' : 'NEVER got the active set'}${tailerOpen ? ', still connected at the end' : ', DISCONNECTED'}; flood sockets closed by the aggregator: ${churned}`,
      `  during: ${line}; peak RSS ${(procStat(agg.pid!).hwmKiB / 1024).toFixed(0)} MiB`,
    ].join('\n');
  } finally {
    stopped = true;
    for (const s of open) s.destroy();
    await stop();
  }
}

/** A stand-in API server for --agent-auth kubernetes: TokenReviews (counted, 20 ms each) and GET node. */
async function tokenReviewer(good: string): Promise<{ url: string; reviews: () => number; close: () => void }> {
  let reviews = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const json = (status: number, o: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(o));
      };
      if (req.method === 'POST' && req.url?.startsWith('/apis/authentication.k8s.io/v1/tokenreviews')) {
        reviews++;
        const token = (JSON.parse(body) as { spec: { token: string } }).spec.token;
        const status = token === good ? { authenticated: true, audiences: ['nodewarden'], user: { username: 'system:serviceaccount:nodewarden:nodewarden-agent', extra: { 'authentication.kubernetes.io/node-name': ['honest-node'], 'authentication.kubernetes.io/pod-name': ['nodewarden-agent-x'] } } } : { authenticated: false, error: 'invalid bearer token' };
        setTimeout(() => json(201, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: {}, status }), 20);
        return;
      }
      if (req.method === 'GET' && req.url?.startsWith('/api/v1/nodes/')) return json(200, { apiVersion: 'v1', kind: 'Node', metadata: { name: req.url.slice(14) } });
      json(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 404, reason: 'NotFound', message: 'not found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, reviews: () => reviews, close: () => server.close() };
}

async function tokenReviewFlood(): Promise<string> {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const good = `${b64({ alg: 'RS256' })}.${b64({ sub: 'system:serviceaccount:nodewarden:nodewarden-agent', n: 1 })}.c2lnbmF0dXJlLWdvb2Q`;
  const api = await tokenReviewer(good);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-bench-kube-'));
  const kubeconfig = path.join(dir, 'config');
  writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: aggregator-token\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\ncurrent-context: c\n`);
  const saved = process.env['KUBECONFIG'];
  process.env['KUBECONFIG'] = kubeconfig;
  const { agg, port, stop } = await startBenchAggregator(HEAP, ['--agent-auth', 'kubernetes', '--log-level', 'fatal']);
  const url = `ws://127.0.0.1:${port}`;
  let running = true;
  let garbage = 0;
  try {
    if (!(await hello(url, good, 'honest-node'))) throw new Error('the honest agent was not welcomed before the flood');
    const before = api.reviews();
    const during = watch(agg.pid!, port);
    const agent = honestAgent(url, good);
    // 50 at a time from 4 addresses: a new garbage token each time, and one garbage token again and again.
    const flood = Promise.all(Array.from({ length: n(50) }, async (_, k) => {
      for (let i = 0; running; i++) {
        garbage++;
        const token = k === 0 ? `${b64({ alg: 'RS256' })}.${b64({ sub: 'same-garbage' })}.c2lnbmF0dXJl` : `${b64({ alg: 'RS256' })}.${b64({ sub: `garbage-${k}-${i}` })}.c2lnbmF0dXJl`;
        await hello(url, token, 'honest-node', { localAddress: `127.0.0.${2 + (k % 4)}` });
      }
    }));
    const t0 = performance.now();
    await sleep(20_000);
    running = false;
    const agentLine = await agent();
    await flood;
    const seconds = (performance.now() - t0) / 1000;
    const line = await during();
    const reviews = api.reviews() - before;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const outcomes = [...metrics.matchAll(/^nodewarden_aggregator_token_reviews_total\{outcome="([a-z_-]+)"\} (\d+)/gm)].map((m) => `${m[1]} ${m[2]}`).join(', ');
    return [
      `TokenReview flood: --agent-auth kubernetes, ${n(50)} clients from 4 addresses presenting JWT-shaped garbage for ${seconds.toFixed(0)} s (TokenReviews take 20 ms)`,
      `  ${garbage} garbage tokens presented, ${reviews} TokenReviews in all (${(reviews / seconds).toFixed(1)}/s, the honest agent's included); ${agentLine}`,
      `  outcomes: ${outcomes}`,
      `  during: ${line}; peak RSS ${(procStat(agg.pid!).hwmKiB / 1024).toFixed(0)} MiB`,
    ].join('\n');
  } finally {
    running = false;
    await stop();
    api.close();
    if (saved === undefined) delete process.env['KUBECONFIG'];
    else process.env['KUBECONFIG'] = saved;
    rmSync(dir, { recursive: true, force: true });
  }
}

async function stalledReaders(): Promise<string> {
  const { agg, port, stop } = await startBenchAggregator(HEAP, ['--log-level', 'fatal']);
  const url = `ws://127.0.0.1:${port}`;
  const keep: WebSocket[] = [];
  const readers: net.Socket[] = [];
  try {
    // 20 nodes of 1,000 findings with 1 KiB messages (at SCALE 1): some 25 MiB of active findings.
    const big = 'm'.repeat(1024);
    const iso = new Date().toISOString();
    for (let k = 0; k < n(20); k++) {
      const node = `stall-${k}`;
      if (!(await hello(url, AGENT, node, { keep }))) throw new Error(`${node} was not welcomed`);
      const findings: Finding[] = Array.from({ length: 1000 }, (_, i) => ({ id: findingId(node, 'bench.stall', `s${i}`), node, check: 'bench.stall', severity: 'warning', subject: `s${i}`, message: big, evidence: { i }, remedy: 'none', state: 'firing', firstSeen: iso, lastSeen: iso }));
      keep[keep.length - 1]!.send(JSON.stringify({ v: 1, type: 'snapshot', findings }));
    }
    await sleep(2000);
    const pid = agg.pid!;
    const idle = rssMiB(pid);
    const during = watch(pid, port);
    for (let i = 0; i < n(20); i++) {
      const s = net.connect(port, '127.0.0.1', () => s.write(`GET /api/findings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TAIL}\r\n\r\n`));
      s.on('error', () => undefined);
      s.pause();
      readers.push(s);
    }
    await sleep(5_000);
    const held = rssMiB(pid);
    // The stall deadline (readerStallMs) is 10 s from the last progress.
    let dropped = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 60_000) {
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      dropped = Number(/^nodewarden_aggregator_rejected_total\{reason="reader stalled"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
      if (dropped >= n(20)) break;
      await sleep(1000);
    }
    await sleep(2000);
    const line = await during();
    return [
      `stalled readers: ${n(20)} GET /api/findings readers that stop reading, over ${n(20)} nodes of 1,000 findings of 1 KiB (stall deadline 10 s)`,
      `  RSS before ${idle.toFixed(0)} MiB, with the readers held ${held.toFixed(0)} MiB, after they were dropped ${rssMiB(pid).toFixed(0)} MiB; dropped and counted: ${dropped} of ${n(20)}; during: ${line}; peak RSS ${(procStat(pid).hwmKiB / 1024).toFixed(0)} MiB`,
    ].join('\n');
  } finally {
    for (const s of readers) s.destroy();
    for (const ws of keep) ws.terminate();
    await stop();
  }
}

export async function benchHostileNet(opts: { scale?: number } = {}): Promise<string> {
  SCALE = opts.scale ?? 1;
  const out: string[] = [];
  for (const phase of [tlsIdleBurst, slowloris, reconnectingFlood, tokenReviewFlood, stalledReaders]) out.push(await phase());
  return out.join('\n\n');
}
