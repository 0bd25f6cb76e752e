// A simulated cluster for the aggregator bench: AGENTS WebSocket agents on loopback, each sending hello
// and a snapshot of 20 findings, TAILERS tailers, then deltas at RATE transitions per second for SECONDS.
// Every delta carries its send time; tailers record the latency to them. Prints one JSON result line.
// Usage: node dist/bench/load.js URL AGENT_TOKEN TAIL_TOKEN AGENTS TAILERS RATE SECONDS
import WebSocket from 'ws';
import { findingId, type Finding } from '../protocol/finding.js';

const [url, agentToken, tailToken, agentsArg, tailersArg, rateArg, secondsArg] = process.argv.slice(2);
const AGENTS = Number(agentsArg ?? 5000);
const TAILERS = Number(tailersArg ?? 10);
const RATE = Number(rateArg ?? 2000);
const SECONDS = Number(secondsArg ?? 10);
const now = () => performance.timeOrigin + performance.now();

function finding(node: string, i: number, severity: Finding['severity'], sentAt: number): Finding {
  const iso = new Date().toISOString();
  return {
    id: findingId(node, 'bench.check', `subject-${i}`),
    node,
    check: 'bench.check',
    severity,
    subject: `subject-${i}`,
    message: `simulated finding ${i} on ${node}`,
    evidence: { sentAt, i },
    remedy: 'nothing',
    state: 'firing',
    firstSeen: iso,
    lastSeen: iso,
  };
}

function connectAgent(i: number): Promise<WebSocket> {
  const node = `sim-${String(i).padStart(5, '0')}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: `Bearer ${agentToken}` }, perMessageDeflate: false });
    ws.once('open', () => ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'bench', collectors: ['bench'] })));
    ws.once('message', () => {
      const findings = Array.from({ length: 20 }, (_, k) => finding(node, k, 'warning', now()));
      ws.send(JSON.stringify({ v: 1, type: 'snapshot', findings }));
      resolve(ws);
    });
    ws.once('error', reject);
  });
}

const t0 = now();
const agents: WebSocket[] = [];
for (let i = 0; i < AGENTS; i += 250) {
  agents.push(...(await Promise.all(Array.from({ length: Math.min(250, AGENTS - i) }, (_, k) => connectAgent(i + k)))));
}
const connectSeconds = (now() - t0) / 1000;

const latencies: number[] = [];
let received = 0;
const tailers = await Promise.all(
  Array.from({ length: TAILERS }, () =>
    new Promise<WebSocket>((resolve) => {
      const ws = new WebSocket(`${url}/api/tail`, { headers: { authorization: `Bearer ${tailToken}` }, perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
      ws.once('open', () => ws.send(JSON.stringify({ v: 1, type: 'subscribe', filter: {} })));
      ws.on('message', (raw: Buffer) => {
        const text = raw.toString();
        if (text.startsWith('{"v":1,"type":"active"')) {
          if (!text.includes('"more":true')) resolve(ws);
          return;
        }
        const m = /"sentAt":([\d.]+)/.exec(text);
        if (m) {
          latencies.push(now() - Number(m[1]));
          received++;
        }
      });
    }),
  ),
);

// Deltas: every 10 ms, RATE/100 transitions, each from the next agent in turn.
const perTick = Math.max(1, Math.round(RATE / 100));
let sent = 0;
let next = 0;
const started = now();
await new Promise<void>((resolve) => {
  const tick = setInterval(() => {
    const elapsed = now() - started;
    if (elapsed >= SECONDS * 1000) {
      clearInterval(tick);
      return resolve();
    }
    const due = Math.floor((elapsed / 1000) * RATE) - sent;
    for (let k = 0; k < Math.min(due, perTick * 5); k++) {
      const a = agents[next % agents.length]!;
      const node = `sim-${String(next % agents.length).padStart(5, '0')}`;
      const f = finding(node, sent % 20, sent % 2 ? 'critical' : 'warning', now());
      a.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'updated', finding: f }] }));
      next++;
      sent++;
    }
  }, 10);
});
await new Promise((r) => setTimeout(r, 2000)); // let the last ones arrive
const sorted = latencies.sort((a, b) => a - b);
const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
process.stdout.write(
  `${JSON.stringify({ agents: agents.length, tailers: tailers.length, connectSeconds, sent, sentPerSecond: sent / SECONDS, expectedReceipts: sent * TAILERS, received, p50ms: pct(50), p99ms: pct(99), maxms: sorted.at(-1) ?? NaN })}\n`,
);
for (const ws of [...agents, ...tailers]) ws.terminate();
process.exit(0);
