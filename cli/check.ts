// `nodewarden check`: runs every collector once and prints the node's state and findings.
import type { Finding } from '../protocol/finding.js';
import { compareFindings, worstSeverity } from '../protocol/finding.js';
import { NodewardenError } from '../protocol/errors.js';
import { COLLECTORS, collectorNames } from '../collectors/index.js';
import type { DiskData } from '../collectors/disk.js';
import type { SocketsData } from '../collectors/sockets.js';
import type { SockstatData } from '../collectors/sockstat.js';
import type { ImmutableData } from '../collectors/immutable.js';
import { formatBytes } from '../collectors/common/text.js';
import { loadConfig } from '../agent/config.js';
import { collectHostFacts, type HostFacts } from '../agent/host/facts.js';
import { createEnvironment } from '../agent/environment.js';
import { checkHostRoot } from '../agent/host/access.js';
import { createLogger } from '../agent/log.js';
import { Runner, type CollectorStatus } from '../agent/runner.js';
import { renderFindings } from './findings.js';
import { escapeForTerminal as esc, jsonForTerminal } from '../protocol/terminal.js';
import { formatUptime, painter, table, truncate, useColor, type Painter } from './format.js';
import { StatusLine } from './status.js';
import { PERMISSION_DENIED, type CollectorProgress } from '../collectors/types.js';

export interface CheckOptions {
  json: boolean;
  only?: string[];
  hostRoot?: string;
  config?: string;
  sets: string[];
  node?: string;
  verbose: boolean;
}

/** Exit codes of the monitoring-plugin convention. */
export const EXIT = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;

export function exitCodeFor(findings: readonly Finding[], statuses: readonly CollectorStatus[]): number {
  const worst = worstSeverity(findings.filter((f) => !f.check.startsWith('collector.')));
  if (worst === 'critical') return EXIT.CRITICAL;
  // A collector that could not run or could not look means we do not know: unless something is
  // already critical. (Not root: runtime, drift, sockets and immutable are refused by the kernel.)
  if (statuses.some((s) => s.status === 'failed' || s.status === 'timeout' || s.status === 'unavailable')) return EXIT.UNKNOWN;
  if (worst === 'warning') return EXIT.WARNING;
  return EXIT.OK;
}

export interface CheckReport {
  node: string;
  findings: Finding[];
  collectors: CollectorStatus[];
  data: Record<string, unknown>;
  facts?: HostFacts;
}

/**
 * The progress line: `check 12s, 2 of 8 running: immutable scanning storage 120/400 units, 1,234,567
 * entries · runtime`. Names and steps come from our code; nothing from the host.
 */
export function formatCheckProgress(running: readonly string[], total: number, progress: ReadonlyMap<string, CollectorProgress>, elapsedMs: number): string {
  const what = running.map((name) => {
    const p = progress.get(name);
    if (!p) return name;
    const count = p.done !== undefined && p.total !== undefined ? ` ${p.done.toLocaleString('en-US')}/${p.total.toLocaleString('en-US')}${p.unit ? ` ${p.unit}` : ''}` : '';
    const entries = p.entries !== undefined ? `${count ? ',' : ''} ${p.entries.toLocaleString('en-US')} entries` : '';
    return `${name} ${p.step}${count}${entries}`;
  });
  return `check ${Math.floor(elapsedMs / 1000)}s, ${running.length} of ${total} running: ${what.join(' · ')}`;
}

/**
 * Draws the progress line on `err` while the runner works: which collectors are still running, and how
 * far their long work is. Redrawn on every report and each second (the elapsed time); stop() clears it.
 */
function showProgress(runner: Runner, names: readonly string[], err: NodeJS.WriteStream): { stop(): void } {
  // A terminal of unknown size (a pty nobody sized) says 0 columns: then the default width.
  const line = new StatusLine({ tty: true, write: (t) => err.write(t), ...(err.columns > 0 ? { columns: err.columns } : {}) });
  const running = new Set(names);
  const progress = new Map<string, CollectorProgress>();
  const started = Date.now();
  const draw = () => {
    if (running.size > 0) line.show(formatCheckProgress([...running], names.length, progress, Date.now() - started));
  };
  const onProgress = (name: string, p: CollectorProgress) => {
    progress.set(name, p);
    draw();
  };
  const onStatus = (st: CollectorStatus) => {
    running.delete(st.name);
    if (running.size === 0) line.clear();
    else draw();
  };
  runner.on('progress', onProgress);
  runner.on('status', onStatus);
  const timer = setInterval(draw, 1000);
  timer.unref();
  draw();
  return {
    stop() {
      clearInterval(timer);
      runner.off('progress', onProgress);
      runner.off('status', onStatus);
      line.clear();
    },
  };
}

/**
 * `err`: where the progress line goes, only when it is a terminal and neither --json nor --verbose (its
 * JSON logs go there) is given: a pipe never sees a control byte or a progress line.
 */
export async function runCheck(opts: CheckOptions, out: NodeJS.WriteStream, err: NodeJS.WriteStream = process.stderr): Promise<{ code: number; text: string }> {
  const known = collectorNames();
  const unknown = (opts.only ?? []).filter((n) => !known.includes(n));
  if (unknown.length > 0) {
    throw new NodewardenError('NW_ERR_USAGE', `--only: unknown collector${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (known: ${known.join(', ')})`);
  }
  const hostRoot = opts.hostRoot === undefined ? undefined : checkHostRoot(opts.hostRoot);
  // A one-shot answer covers all container storage at once, on every core; the paced sweep is the
  // continuous agent's (a user's own --set still wins).
  const sets = ['collectors.immutable.complete=true', ...opts.sets];
  // --only runs what it names, even a collector the config disables.
  for (const n of opts.only ?? []) sets.push(`collectors.${n}.enabled=true`);
  const config = loadConfig({ file: opts.config, sets, hostRoot, node: opts.node });
  if (hostRoot === undefined) checkHostRoot(config.hostRoot);
  const log = createLogger({ node: config.node, level: opts.verbose ? config.logLevel : 'silent' });
  const env = createEnvironment(config);
  const runner = new Runner({ collectors: COLLECTORS, config, env, log });
  const names = opts.only ?? runner.names();
  const color = !opts.json && useColor(out);
  const progress = !opts.json && !opts.verbose && err.isTTY ? showProgress(runner, names, err) : undefined;
  let cycle, facts;
  try {
    [cycle, facts] = await Promise.all([runner.runOnce(names), !opts.json && out.isTTY ? collectHostFacts(env.host) : Promise.resolve(undefined)]);
  } finally {
    progress?.stop();
  }
  const findings = runner.active().sort(compareFindings);
  const report: CheckReport = { node: config.node, findings, collectors: cycle.statuses, data: cycle.data };
  if (facts) report.facts = facts;
  const code = exitCodeFor(findings, cycle.statuses);
  const text = opts.json ? `${jsonForTerminal(report, 2)}\n` : renderReport(report, painter(color), out.columns);
  return { code, text };
}

export function renderReport(r: CheckReport, p: Painter, columns?: number): string {
  const parts: string[] = [];
  if (r.facts) {
    const f = r.facts;
    parts.push(
      `${p.bold(esc(f.hostname))}  ${esc(f.os)}  kernel ${esc(f.kernel)}  up ${formatUptime(f.uptimeSeconds)}  ` +
        `mem ${formatBytes(f.memTotal - f.memAvailable)}/${formatBytes(f.memTotal)}  load ${f.load.map((x) => x.toFixed(2)).join(' ')}  cpus ${f.cpus}`,
    );
  }
  const disk = r.data['disk'] as DiskData | undefined;
  if (disk) {
    const pct = (n: number | undefined) => (n === undefined ? '-' : `${n}%`);
    parts.push(
      table(
        ['Filesystem', 'Type', 'Size', 'Used', 'Avail', 'Use%', 'IUse%', 'Mounted on'],
        disk.rows.map((row) =>
          row.status === 'ok'
            ? [esc(row.source), esc(row.fsType), formatBytes(row.size ?? 0), formatBytes(row.used ?? 0), formatBytes(row.avail ?? 0), pct(row.usePercent), pct(row.inodesUsePercent), esc(row.mountPoint) + (row.readonly ? ' (ro)' : '')]
            : [esc(row.source), esc(row.fsType), '?', '?', '?', '?', '?', `${esc(row.mountPoint)} (${row.status === 'unresponsive' ? 'NOT RESPONDING' : 'statfs failed'})`],
        ),
        { rightAlign: [2, 3, 4, 5, 6] },
      ),
    );
  }
  const sockstat = r.data['sockstat'] as SockstatData | undefined;
  if (sockstat) {
    const lines = Object.entries(sockstat.counters).map(([proto, kv]) => {
      const items = Object.entries(kv).map(([k, v]) => {
        if (proto === 'TCP' && k === 'orphan' && sockstat.limits.maxOrphans) return `${k} ${v} (max ${sockstat.limits.maxOrphans})`;
        if (proto === 'TCP' && k === 'tw' && sockstat.limits.maxTwBuckets) return `${k} ${v} (max ${sockstat.limits.maxTwBuckets})`;
        if (proto === 'TCP' && k === 'mem' && sockstat.limits.mem) return `${k} ${v} pages (pressure ${sockstat.limits.mem[1]}, high ${sockstat.limits.mem[2]})`;
        return `${k} ${v}`;
      });
      return `${(proto + ':').padEnd(9)} ${items.join('  ')}`;
    });
    parts.push(`${p.bold('Sockstat')} (this network namespace)\n${lines.join('\n')}`);
  }
  const sockets = r.data['sockets'] as SocketsData | undefined;
  if (sockets) {
    const header = `${p.bold('Socket holders')}: ${sockets.holders} of ${sockets.processes} processes hold ${sockets.totalSockets.toLocaleString('en-US')} sockets`;
    const width = Math.max(40, (columns ?? 120) - 60);
    if (sockets.top.length === 0) parts.push(`${header}`);
    else parts.push(
      `${header}\n${table(
        ['PID', 'COMM', 'SOCKETS', 'FDS', 'NOFILE', 'CONTAINER', 'CMDLINE'],
        sockets.top.map((h) => [String(h.pid), esc(h.comm), String(h.sockets), String(h.fds), h.nofileSoft === undefined ? '-' : String(h.nofileSoft), esc(h.containerName ?? (h.containerId ? h.containerId.slice(0, 12) : '-')), truncate(esc(h.cmdline.replace(/\s+/g, ' ')), width)]),
        { rightAlign: [0, 2, 3, 4] },
      )}`,
    );
  }
  const imm = r.data['immutable'] as ImmutableData | undefined;
  if (imm) {
    parts.push(
      imm.complete
        ? `${p.bold('Container storage')}: examined all ${imm.complete.units} units (${imm.complete.entries.toLocaleString('en-US')} entries${imm.complete.errors ? `, ${imm.complete.errors} unreadable` : ''}) for immutable and append-only files`
        : `${p.bold('Container storage')}: examined ${imm.lastCycle.units} units (${imm.lastCycle.swept.toLocaleString('en-US')} entries); ${imm.pending.length} units not examined in this run`,
    );
  }
  parts.push(renderFindings(r.findings, p));
  const st = r.collectors.map((c) => `${c.name} ${c.status}${c.status === 'ok' ? '' : c.detail ? ` (${esc(c.detail)})` : ''} ${c.durationMs}ms`);
  parts.push(p.dim(`collectors: ${st.join(' · ')}`));
  const denied = r.collectors.filter((c) => c.detail?.startsWith(PERMISSION_DENIED)).map((c) => c.name);
  if (denied.length > 0) {
    parts.push(`${p.severity('warning', 'Could not look')}: ${denied.join(', ')}: permission denied. nodewarden needs root on a node (in the DaemonSet: privileged, hostPID, hostNetwork); the result is unknown (exit 3).`);
  }
  return `${parts.join('\n\n')}\n`;
}
