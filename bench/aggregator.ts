// Bench: one aggregator process, 5,000 simulated agents on loopback and 10 tailers (bench/load.ts in a
// second process), 2,000 transitions per second. Reports connection time, latency from an agent's send
// to every tailer's receipt (p50, p99), and the aggregator's peak RSS and CPU. Then the hostile peers
// (bench/hostile.ts): the aggregator's peak RSS under them and whether /healthz kept answering.
// Stops by itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './util.js';

export function procStat(pid: number): { hwmKiB: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { hwmKiB: hwm, cpuSeconds: ticks / 100 };
}

/** GET /healthz on a fresh connection (https without checking the certificate): its status, 0 when it failed or took over 2 s. */
export function healthzStatus(port: number, tls = false): Promise<number> {
  return new Promise((resolve) => {
    const req = (tls ? https : http).get({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, agent: false, timeout: 2000 }, (r) => {
      r.resume();
      r.on('end', () => resolve(r.statusCode ?? 0));
      r.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

/** An aggregator process on a random loopback port with bench tokens, answering /healthz; `stop()` ends it. */
export async function startBenchAggregator(nodeFlags: string[], args: string[], opts: { tls?: boolean } = {}): Promise<{ agg: ChildProcess; port: number; dir: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-bench-agg-'));
  mkdirSync(path.join(dir, 'tokens'));
  writeFileSync(path.join(dir, 'tokens', 'agent'), 'bench-agent-token-0123456789\n');
  writeFileSync(path.join(dir, 'tokens', 'tail'), 'bench-tail-token-0123456789\n');
  const port = 20_000 + Math.floor(Math.random() * 10_000);
  const cli = path.join(ROOT, 'dist', 'cli', 'main.js');
  const agg = spawn(process.execPath, [...nodeFlags, cli, 'aggregator', '--listen', `127.0.0.1:${port}`, '--tokens-dir', path.join(dir, 'tokens'), '--silent-after', '10m', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  const stop = async () => {
    // Gracefully first (it closes its clients and exits), then for sure.
    agg.kill('SIGTERM');
    await Promise.race([new Promise((r) => agg.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
    if (agg.exitCode === null) agg.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    try {
      if ((await healthzStatus(port, opts.tls)) === 200) break;
      throw new Error('not yet');
    } catch {
      if (i > 100) {
        await stop();
        throw new Error('aggregator did not start');
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { agg, port, dir, stop };
}

export async function benchAggregator(opts: { agents?: number; tailers?: number; rate?: number; seconds?: number; nodeFlags?: string[] } = {}): Promise<string> {
  const agents = opts.agents ?? 5000;
  const tailers = opts.tailers ?? 10;
  const rate = opts.rate ?? 2000;
  const seconds = opts.seconds ?? 20;
  const { agg, port, stop } = await startBenchAggregator(opts.nodeFlags ?? [], ['--heartbeat', '30s', '--log-level', 'error']);
  try {
    const before = procStat(agg.pid!);
    const load = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'load.js'), `ws://127.0.0.1:${port}`, 'bench-agent-token-0123456789', 'bench-tail-token-0123456789', String(agents), String(tailers), String(rate), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    load.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // Sample the aggregator while the load runs: resident memory and what waits for tailers.
    const samples: { rssMiB: number; bufferedMiB: number }[] = [];
    const sampler = setInterval(() => {
      void fetch(`http://127.0.0.1:${port}/metrics`).then(async (r) => {
        const text = await r.text();
        const buffered = Number(/nodewarden_aggregator_tailer_buffered_bytes (\d+)/.exec(text)?.[1] ?? 0) / 1048576;
        const rss = Number(/nodewarden_aggregator_resident_memory_bytes (\d+)/.exec(text)?.[1] ?? 0) / 1048576;
        samples.push({ rssMiB: rss, bufferedMiB: buffered });
      }).catch(() => undefined);
    }, 1000);
    const killer = setTimeout(() => load.kill('SIGKILL'), (seconds + 240) * 1000);
    await new Promise((r) => load.once('exit', r));
    clearTimeout(killer);
    clearInterval(sampler);
    const after = procStat(agg.pid!);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const heapMiB = Number(/nodewarden_aggregator_heap_used_bytes (\d+)/.exec(metrics)?.[1] ?? 0) / 1048576;
    const rssNowMiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agg.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, number>;
    const cpu = (after.cpuSeconds - before.cpuSeconds) / (r['connectSeconds']! + seconds + 2);
    return [
      `aggregator scale: ${r['agents']} agents (hello + snapshot of 20 findings each), ${r['tailers']} tailers, ${rate} transitions/s for ${seconds} s, all on loopback`,
      `  connection of all agents: ${r['connectSeconds']!.toFixed(2)} s`,
      `  transitions sent: ${r['sent']} (${r['sentPerSecond']!.toFixed(0)}/s); tailer receipts ${r['received']} of ${r['expectedReceipts']}`,
      `  latency agent send -> tailer receipt: p50 ${r['p50ms']!.toFixed(1)} ms, p99 ${r['p99ms']!.toFixed(1)} ms, max ${r['maxms']!.toFixed(1)} ms (target p99 < 100 ms)`,
      `  during the run, each second: RSS ${samples.map((s) => s.rssMiB.toFixed(0)).join(' ')} MiB; waiting for tailers ${samples.map((s) => s.bufferedMiB.toFixed(1)).join(' ')} MiB`,
      `  aggregator peak RSS ${(after.hwmKiB / 1024).toFixed(0)} MiB (target < 300 MiB); after the run: RSS ${rssNowMiB.toFixed(0)} MiB, V8 heap in use ${heapMiB.toFixed(0)} MiB; CPU ${(cpu * 100).toFixed(0)}% of one core on average`,
    ].join('\n');
  } finally {
    await stop();
  }
}

/**
 * A fresh aggregator (heap capped as the manifests run it) under the hostile peers of bench/hostile.ts
 * for `seconds`: its peak RSS against the Deployment's 320 MiB limit, and /healthz probed twice a
 * second (a probe that takes over 2 s or fails counts as missed).
 */
export async function benchHostile(opts: { seconds?: number; nodeFlags?: string[] } = {}): Promise<string> {
  const seconds = opts.seconds ?? 30;
  const flags = opts.nodeFlags ?? ['--max-old-space-size=192'];
  const journal = path.join(os.tmpdir(), `nw-bench-journal-${process.pid}.ndjson`);
  const { agg, port, stop } = await startBenchAggregator(flags, ['--journal', journal, '--log-level', 'fatal']);
  try {
    const load = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench', 'hostile.js'), `ws://127.0.0.1:${port}`, 'bench-agent-token-0123456789', 'bench-tail-token-0123456789', String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    load.stdout.on('data', (d: Buffer) => (out += d.toString()));
    let probes = 0;
    let missed = 0;
    let slowest = 0;
    const rss: number[] = [];
    const prober = setInterval(() => {
      probes++;
      const t0 = performance.now();
      void fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) })
        .then((r) => {
          slowest = Math.max(slowest, performance.now() - t0);
          if (!r.ok) missed++;
        })
        .catch(() => missed++);
      try {
        rss.push(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agg.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);
      } catch {
        // it exited: reported below
      }
    }, 500);
    const killer = setTimeout(() => load.kill('SIGKILL'), (seconds + 180) * 1000);
    await new Promise((r) => load.once('exit', r));
    clearTimeout(killer);
    clearInterval(prober);
    const alive = agg.exitCode === null && agg.signalCode === null;
    const peak = alive ? procStat(agg.pid!).hwmKiB / 1024 : NaN;
    const metrics = alive ? await (await fetch(`http://127.0.0.1:${port}/metrics`)).text() : '';
    const metric = (name: string) => Number(new RegExp(`${name} (\\d+)`).exec(metrics)?.[1] ?? NaN) / 1048576;
    const counts = JSON.parse(out.trim().split('\n').pop() || '{}') as Record<string, number>;
    return [
      `aggregator under hostile peers for ${seconds} s (heap ${flags.join(' ') || 'uncapped'}; beside 1,000 honest agents with 20 findings of 1 KiB each, churning): oversized messages, 5,000-deep evidence, never-reading tailers re-subscribing, 2,000 idle sockets, node-inventing agents, 6 parallel GET /api/findings`,
      `  aggregator ${alive ? 'alive' : `EXITED (${agg.exitCode ?? agg.signalCode})`}; /healthz answered ${probes - missed} of ${probes} probes, slowest ${slowest.toFixed(0)} ms`,
      `  peak RSS ${peak.toFixed(0)} MiB (Deployment limit 320 MiB); RSS each half second: min ${Math.min(...rss).toFixed(0)}, max ${Math.max(...rss).toFixed(0)} MiB; after: heap in use ${metric('nodewarden_aggregator_heap_used_bytes').toFixed(0)} MiB, active ${metric('nodewarden_aggregator_active_bytes').toFixed(1)} MiB, history ${metric('nodewarden_aggregator_history_bytes').toFixed(1)} MiB, journal ${metric('nodewarden_aggregator_journal_bytes').toFixed(1)} MiB`,
      `  what the peers saw: ${Object.entries(counts).map(([k, v]) => `${k}: ${v}`).join(', ')}`,
      `  nodes known at the end: ${/nodewarden_aggregator_nodes\{connected="false"\} (\d+)/.exec(metrics)?.[1] ?? '?'} without an agent, ${/nodewarden_aggregator_nodes\{connected="true"\} (\d+)/.exec(metrics)?.[1] ?? '?'} connected`,
    ].join('\n');
  } finally {
    await stop();
    rmSync(journal, { force: true });
  }
}
