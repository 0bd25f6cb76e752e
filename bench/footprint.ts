// Bench: the agent's own footprint. `nodewarden agent` with default intervals on this machine, side by
// side with Debian's prometheus-node-exporter, both scraped every 15 s as Prometheus would, for
// SECONDS (default 600). Average CPU in millicores and peak RSS, read from /proc for each pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './util.js';

const CLK_TCK = 100;

export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, and the children's (the agent's stat -f calls count against it).
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLK_TCK;
}

const peakKiB = (pid: number) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

async function waitFor(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

export async function benchFootprint(opts: { seconds?: number } = {}): Promise<string> {
  const seconds = opts.seconds ?? Number(process.env['NW_FOOTPRINT_SECONDS'] ?? 600);
  const agentPort = 19742;
  const exporterPort = 19100;
  const procs: ChildProcess[] = [];
  try {
    const agent = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'agent', '--listen', `127.0.0.1:${agentPort}`, '--set', 'logLevel=warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(agent);
    const contenders: { name: string; proc: ChildProcess; url: string }[] = [{ name: 'nodewarden agent (all collectors, default intervals)', proc: agent, url: `http://127.0.0.1:${agentPort}/metrics` }];
    if (existsSync('/usr/bin/prometheus-node-exporter')) {
      const exporter = spawn('/usr/bin/prometheus-node-exporter', [`--web.listen-address=127.0.0.1:${exporterPort}`], { stdio: ['ignore', 'ignore', 'ignore'] });
      procs.push(exporter);
      contenders.push({ name: 'prometheus-node-exporter (Debian, defaults)', proc: exporter, url: `http://127.0.0.1:${exporterPort}/metrics` });
    }
    for (const c of contenders) await waitFor(c.url);
    // Let start-up settle, then measure the steady state.
    await new Promise((r) => setTimeout(r, 5000));
    const start = contenders.map((c) => cpuSeconds(c.proc.pid!));
    const started = Date.now();
    const scrape = setInterval(() => {
      for (const c of contenders) void fetch(c.url).then((r) => r.text()).catch(() => undefined);
    }, 15_000);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    clearInterval(scrape);
    const elapsed = (Date.now() - started) / 1000;
    const lines = [`agent footprint over ${Math.round(elapsed)} s on this machine, scraped every 15 s (targets: 10 millicores average, 80 MiB RSS)`];
    contenders.forEach((c, i) => {
      const millicores = ((cpuSeconds(c.proc.pid!) - start[i]!) / elapsed) * 1000;
      lines.push(`  ${c.name.padEnd(52)} ${millicores.toFixed(1).padStart(6)} millicores  peak RSS ${(peakKiB(c.proc.pid!) / 1024).toFixed(0).padStart(4)} MiB`);
    });
    return lines.join('\n');
  } finally {
    for (const p of procs) p.kill('SIGTERM');
  }
}
