// sockets: socket fds held by each process (the runbook's `ls -l /proc/*/fd | grep socket:` loop),
// against a threshold and against the process's own open-file limit.
import type { Observation, Workload } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { runSocketCensus } from './common/fd-census.js';
import { describeProcess } from './common/process.js';
import { PERMISSION_DENIED, type Collector } from './types.js';
import { readdir } from 'node:fs/promises';

export interface SocketHolder {
  pid: number;
  comm: string;
  cmdline: string;
  sockets: number;
  /** All open fds, sockets included. */
  fds: number;
  nofileSoft?: number;
  containerId?: string;
  podUid?: string;
  /** From the runtime model, when the container is known. */
  containerName?: string;
  pod?: string;
  namespace?: string;
}

export interface SocketsData {
  processes: number;
  holders: number;
  totalSockets: number;
  /** The biggest holders, most sockets first. */
  top: SocketHolder[];
}

export const socketsConfigSpec = s.object({
  maxPerProcess: s.number({ default: 10_000, min: 1, integer: true, doc: 'warn when one process holds more socket fds than this' }),
  limitPercent: s.object({
    warning: s.percent({ default: 80, doc: 'warn when a process holds this share of its soft nofile limit in sockets' }),
    critical: s.percent({ default: 95, doc: 'critical at this share of the soft nofile limit' }),
  }),
  limitCheckFrom: s.number({
    default: 32,
    min: 1,
    integer: true,
    doc: 'read /proc/PID/limits only for processes holding at least this many sockets (keeps the census cheap)',
  }),
  top: s.number({ default: 10, min: 1, max: 1000, integer: true, doc: 'how many top holders to report' }),
});
export type SocketsConfig = Infer<typeof socketsConfigSpec>;

function describe(p: SocketHolder): string {
  const where = p.pod ? `, pod ${p.namespace ?? ''}/${p.pod}` : p.containerName ? `, container ${p.containerName}` : '';
  return `${p.pid} (${p.comm}${where})`;
}

function workloadOf(p: SocketHolder): Workload | undefined {
  if (!p.containerId) return undefined;
  const w: Workload = { containerId: p.containerId };
  if (p.containerName) w.containerName = p.containerName;
  if (p.pod) w.pod = p.pod;
  if (p.namespace) w.namespace = p.namespace;
  if (p.podUid) w.podUid = p.podUid;
  return w;
}

/** Findings for processes over the thresholds. Pure. `holders` must be sorted, most sockets first. */
export function evaluateSockets(holders: readonly SocketHolder[], config: SocketsConfig): Observation[] {
  const out: Observation[] = [];
  const topEvidence = holders.slice(0, 5).map((p) => ({ pid: p.pid, comm: p.comm, sockets: p.sockets }));
  for (const p of holders) {
    const pct = p.nofileSoft ? (p.sockets / p.nofileSoft) * 100 : undefined;
    const overLimit = pct !== undefined && pct >= config.limitPercent.warning;
    const overCount = p.sockets > config.maxPerProcess;
    if (!overLimit && !overCount) continue;
    const severity = pct !== undefined && pct >= config.limitPercent.critical ? 'critical' : 'warning';
    const parts: string[] = [`Process ${describe(p)} holds ${p.sockets.toLocaleString('en-US')} sockets`];
    if (pct !== undefined && p.nofileSoft !== undefined) {
      parts.push(`, ${pct.toFixed(0)}% of its open-file limit (${p.nofileSoft.toLocaleString('en-US')}, ${p.fds.toLocaleString('en-US')} fds open in all)`);
    }
    if (overCount) parts.push(`, more than the ${config.maxPerProcess.toLocaleString('en-US')} allowed per process`);
    parts.push(
      overLimit
        ? '; when it reaches the limit it can no longer accept connections or open files (EMFILE, "too many open files").'
        : '; a process that keeps opening sockets without closing them is usually leaking connections.',
    );
    const evidence: Observation['evidence'] = {
      pid: p.pid,
      comm: p.comm,
      cmdline: p.cmdline,
      sockets: p.sockets,
      openFds: p.fds,
      nofileSoft: p.nofileSoft ?? null,
      percentOfLimit: pct === undefined ? null : Math.round(pct),
      topHolders: topEvidence,
    };
    if (p.containerId) evidence['containerId'] = p.containerId;
    const obs: Observation = {
      check: 'sockets.process',
      severity,
      subject: `pid:${p.pid}`,
      message: parts.join(''),
      evidence,
      remedy: `ps -f ${p.pid}; ls -l /proc/${p.pid}/fd | grep -c socket:; ss -anp | grep 'pid=${p.pid},' | head  # then fix the leak, or raise its LimitNOFILE`,
    };
    const workload = workloadOf(p);
    if (workload) obs.workload = workload;
    out.push(obs);
  }
  return out;
}

export const sockets: Collector<SocketsConfig, SocketsData> = {
  name: 'sockets',
  description: 'Socket fds per process (/proc/PID/fd), with container and nofile limit',
  checks: ['sockets.process'],
  conditions: { 'sockets.process': 'NodewardenSocketPressure' },
  defaultIntervalMs: 60_000,
  defaultTimeoutMs: 20_000,
  waitsFor: ['runtime.timeout'],
  configSpec: socketsConfigSpec,
  async collect(ctx) {
    const { host, config } = ctx;
    const pids = await host.pids();
    // Not root: every other user's /proc/PID/fd is closed to us, and "0 processes hold 0 sockets"
    // would be a lie. pid 1 (the host's init, or the pod's pause process) tells.
    try {
      await readdir(`${host.procPath()}/1/fd`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') return { kind: 'unavailable', reason: `${PERMISSION_DENIED}: cannot read other processes' fds (${host.procPath()}/1/fd)` };
    }
    const rows = await runSocketCensus({ procDir: host.procPath(), pids, limitFrom: config.limitCheckFrom });
    rows.sort((a, b) => b.sockets - a.sockets || a.pid - b.pid);

    // Only the processes we will show or report get their names and cgroups read.
    const interesting = rows.filter((r, i) => {
      if (i < config.top) return true;
      const pct = r.nofileSoft ? (r.sockets / r.nofileSoft) * 100 : 0;
      return r.sockets > config.maxPerProcess || pct >= config.limitPercent.warning;
    });
    const holders: SocketHolder[] = [];
    for (const row of interesting) {
      // The census skips limits for small holders; the ones we show get theirs.
      const { pid: _, ...info } = await describeProcess(host, row.pid, { limits: row.nofileSoft === undefined });
      holders.push({ ...row, ...info });
    }
    // Container ids to names and pods, when the runtimes answer (they may not: then ids it is).
    if (holders.some((h) => h.containerId)) {
      const snap = await ctx.runtime.snapshot();
      const byId = new Map(snap.containers.map((c) => [c.id, c]));
      for (const h of holders) {
        const c = h.containerId ? byId.get(h.containerId) : undefined;
        if (!c) continue;
        if (c.workload.containerName) h.containerName = c.workload.containerName;
        if (c.workload.pod) h.pod = c.workload.pod;
        if (c.workload.namespace) h.namespace = c.workload.namespace;
        if (c.workload.podUid) h.podUid = c.workload.podUid;
      }
    }
    const data: SocketsData = {
      processes: pids.length,
      holders: rows.length,
      totalSockets: rows.reduce((n, r) => n + r.sockets, 0),
      top: holders.slice(0, config.top),
    };
    return { kind: 'ok', observations: evaluateSockets(holders, config), data };
  },
};
