// Hostile peers for the aggregator bench (bench/aggregator.ts runs this in a second process): while a
// fleet of honest agents keeps a large active set and history, peers send oversized messages,
// 5,000-deep evidence, tailers that never read and re-subscribe, idle sockets that never send a byte,
// agents that invent nodes, and parallel GET /api/findings. Prints one JSON line of what was refused.
// Usage: node dist/bench/hostile.js URL AGENT_TOKEN TAIL_TOKEN SECONDS
import net from 'node:net';
import WebSocket from 'ws';
import { findingId, type Finding } from '../protocol/finding.js';

const [url, agentToken, tailToken, secondsArg] = process.argv.slice(2) as [string, string, string, string];
const SECONDS = Number(secondsArg ?? 30);
const port = Number(new URL(url).port);
const stopAt = Date.now() + SECONDS * 1000;
const running = () => Date.now() < stopAt;
const counts: Record<string, number> = {};
const count = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);

function finding(node: string, i: number, message: string, evidence: Finding['evidence'] = { i }): Finding {
  const iso = new Date().toISOString();
  return { id: findingId(node, 'bench.hostile', `s${i}`), node, check: 'bench.hostile', severity: 'warning', subject: `s${i}`, message, evidence, remedy: 'none', state: 'firing', firstSeen: iso, lastSeen: iso };
}

function agent(node: string, onWelcome: (ws: WebSocket) => void): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: `Bearer ${agentToken}` }, perMessageDeflate: false });
    ws.on('open', () => ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'hostile', collectors: [] })));
    ws.once('message', () => onWelcome(ws));
    ws.on('error', () => undefined);
    ws.on('close', (code) => resolve(code));
  });
}

/** Runs `one` again and again until the end, `n` at a time. */
async function loop(n: number, one: (i: number) => Promise<unknown>): Promise<void> {
  await Promise.all(Array.from({ length: n }, async (_, k) => {
    for (let i = 0; running(); i++) await one(k * 1_000_000 + i).catch(() => undefined);
  }));
}

// An honest fleet first: 1,000 nodes with 20 findings of 1 KiB messages (20 MiB of active findings),
// churning so history fills.
const honest: WebSocket[] = [];
const big = 'm'.repeat(1024);
for (let i = 0; i < 1000; i += 100) {
  honest.push(...(await Promise.all(Array.from({ length: 100 }, (_, k) => new Promise<WebSocket>((resolve) => {
    const node = `honest-${i + k}`;
    void agent(node, (ws) => {
      ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: Array.from({ length: 20 }, (_, j) => finding(node, j, big)) }));
      resolve(ws);
    });
  })))));
}
const churn = setInterval(() => {
  for (let k = 0; k < 20; k++) {
    const i = Math.floor(Math.random() * honest.length);
    const ws = honest[i]!;
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'updated', finding: finding(`honest-${i}`, k, `${big}${Date.now()}`) }] }));
  }
}, 10);

const deep = `{"x":${'['.repeat(5000)}${']'.repeat(5000)}}`;
const idle: net.Socket[] = [];
await Promise.all([
  // Oversized: a 3.9 MiB message field (under the 4 MiB frame limit, over the field limit).
  loop(4, (i) => agent(`big-${i % 50}`, (ws) => ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding(`big-${i % 50}`, 0, 'x'.repeat(3.9 * 1024 * 1024))] }))).then((c) => count(`oversized closed ${c}`))),
  // 5,000-deep evidence.
  loop(4, (i) => agent(`deep-${i % 50}`, (ws) => ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding(`deep-${i % 50}`, 0, 'deep', { x: 0 })] }).replace('{"x":0}', deep))).then((c) => count(`deep closed ${c}`))),
  // Node inventors: one shared token, a new node each time.
  loop(8, (i) => agent(`invented-${i}`, (ws) => ws.close()).then((c) => count(`inventor closed ${c}`))),
  // Tailers that never read: subscribe to everything since the beginning, stop reading, subscribe again.
  loop(50, () => new Promise<void>((resolve) => {
    const ws = new WebSocket(`${url}/api/tail`, { headers: { authorization: `Bearer ${tailToken}` }, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
    ws.on('open', () => {
      ws.send(JSON.stringify({ v: 1, type: 'subscribe', filter: {}, sinceMs: 0 }));
      (ws as unknown as { _socket: net.Socket })._socket.pause();
      const again = setInterval(() => ws.readyState === ws.OPEN && ws.send(JSON.stringify({ v: 1, type: 'subscribe', filter: {}, sinceMs: 0 })), 100);
      ws.on('close', () => clearInterval(again));
    });
    ws.on('error', () => undefined);
    ws.on('close', (c) => {
      count(`tailer closed ${c}`);
      resolve();
    });
    setTimeout(() => ws.terminate(), 20_000).unref();
  })),
  // Idle sockets that never send a byte, 2,000 at a time.
  loop(2000, () => new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    idle.push(s);
    s.on('error', () => undefined);
    s.on('close', () => {
      count('idle closed');
      resolve();
    });
    setTimeout(() => s.destroy(), SECONDS * 1000).unref();
  })),
  // Parallel full reads of /api/findings.
  loop(6, async () => {
    const r = await fetch(`http://127.0.0.1:${port}/api/findings`, { headers: { authorization: `Bearer ${tailToken}` } });
    const body = (await r.json()) as unknown[];
    count(`findings ${r.status}`);
    counts['findings listed'] = body.length;
  }),
]);
clearInterval(churn);
process.stdout.write(`${JSON.stringify(counts)}\n`);
for (const ws of honest) ws.terminate();
for (const s of idle) s.destroy();
process.exit(0);
