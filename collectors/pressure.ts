// pressure: the kernel's pressure stall information (/proc/pressure/{memory,io,cpu}) and kubelet's
// memory.available eviction signal, with a forecast: "kubelet will evict pods in about 12 min at the
// current 40 MiB/min" before it does. memory.available is computed as kubelet computes it: the node's
// memory minus the root cgroup's working set (usage minus inactive file pages) on cgroup v1; on cgroup
// v2, where the root has no memory.current, from /proc/meminfo (MemAvailable), which is close. And the
// runbooks' "load15 above 2 and pods restart": a node whose load makes probes fail, named with the pods
// whose probes kubelet reported failing (Events from the API server, read only while the load is high).
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import type { Collector, HostAccess, ProbeFailure, ProbeFailureState } from './types.js';
import { formatMinutes, ratePerMinute } from './common/growth.js';

/** Re-exported: the memory forecast's rate is the same least-squares slope as the disks'. */
export { ratePerMinute };

export const pressureConfigSpec = s.object({
  memoryAvailableMiB: s.number({ default: 100, min: 0, doc: "kubelet's --eviction-hard memory.available, in MiB (kubelet's default: 100Mi)" }),
  forecast: s.duration({ default: '15m', min: 1000, doc: 'warn when memory.available reaches the eviction threshold within this long at the current rate' }),
  window: s.duration({ default: '5m', min: 10_000, doc: 'how far back the rate of memory.available is measured' }),
  psiWarning: s.percent({ default: 20, doc: "PSI 'full' share of the last 60 s (every non-idle task stalled on memory or io) above which it is reported" }),
  psiCritical: s.percent({ default: 50, doc: "PSI 'full' share at or above which memory or io pressure is critical" }),
  cpuWarning: s.percent({ default: 90, doc: "PSI cpu 'some' share of the last 60 s above which cpu pressure is reported (a busy node runs its cpu full: only near-constant waiting counts)" }),
  cpuCritical: s.percent({ default: 100, doc: "PSI cpu 'some' share at or above which cpu pressure is critical" }),
  loadPerCore: s.number({ default: 2, min: 0.1, doc: "load15 per core above which probe failures on this node are blamed on its load (the runbooks' 'load15 above 2 and pods restart'); only then are kubelet's probe-failure Events read" }),
  probePods: s.number({ default: 2, min: 1, integer: true, doc: "pods with failing probes it takes, with the load above loadPerCore, to raise pressure.load (one pod failing its probes is that app's problem: pod.crashLoop)" }),
  probeWindow: s.duration({ default: '10m', min: 60_000, doc: 'probe failures last seen within this window count' }),
});
export type PressureConfig = Infer<typeof pressureConfigSpec>;

export interface PsiLine {
  avg10: number;
  avg60: number;
  avg300: number;
  /** Microseconds stalled since boot. */
  total: number;
}
export interface Psi {
  some?: PsiLine;
  full?: PsiLine;
}

export interface PressureData {
  /** Bytes; undefined when it could not be computed. */
  memoryAvailable?: number;
  memoryTotal?: number;
  /** How memoryAvailable was computed. */
  source?: 'cgroup-v1' | 'meminfo';
  /** Recent samples [ms since epoch, bytes available], oldest first, within `window`. */
  samples: [number, number][];
  /** Bytes per minute (negative: falling); undefined with fewer than two samples. */
  ratePerMinute?: number;
  psi: Record<string, Psi>;
  /** Resources seen over the PSI warning in the last run (a stall must last two runs to fire). */
  stalled: string[];
  /** /proc/loadavg's 15-minute load and the node's cores (/proc/stat's cpuN lines). */
  load?: { load15: number; cores: number };
}

/** Pure: /proc/loadavg's three averages (`0.52 0.61 0.70 2/1234 5678`); undefined when the line is not one. */
export function parseLoadavg(text: string): { load1: number; load5: number; load15: number } | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)\s/.exec(text);
  return m ? { load1: Number(m[1]), load5: Number(m[2]), load15: Number(m[3]) } : undefined;
}

/** Pure: the cores the kernel schedules on, from /proc/stat's `cpuN` lines (what nproc counts on the host); 0 when none. */
export function countCpus(stat: string): number {
  return stat.split('\n').filter((l) => /^cpu\d+\s/.test(l)).length;
}

const PROBE_NAMES: Record<ProbeFailure['probe'], string> = { Liveness: 'liveness', Readiness: 'readiness', Startup: 'startup' };

/**
 * Pure: pressure.load: the node's load15 per core above `loadPerCore` while `probePods` or more of its
 * pods had probes fail within the window. Both, because either alone is common and harmless: a busy
 * node whose probes pass is doing its job, and one pod failing its probes on an idle node is its app's
 * problem (pod.crashLoop and pod.restarts say so). Critical when liveness probes failed (kubelet
 * restarts those containers: the load is now killing pods), warning when only readiness or startup did.
 */
export function evaluateLoad(load: { load15: number; cores: number } | undefined, probes: ProbeFailureState | undefined, config: PressureConfig): Observation[] {
  if (!load || load.cores <= 0 || load.load15 / load.cores <= config.loadPerCore) return [];
  if (probes?.status !== 'synced') return [];
  const pods = new Set(probes.failures.map((f) => `${f.namespace}/${f.pod}`));
  if (pods.size < config.probePods) return [];
  const window = `${Math.round(config.probeWindow / 60_000)} min`;
  const parts = (['Liveness', 'Readiness', 'Startup'] as const).flatMap((probe) => {
    const these = probes.failures.filter((f) => f.probe === probe);
    if (these.length === 0) return [];
    const named = these.slice(0, 5).map((f) => `${f.namespace}/${f.pod} (${f.count} ${f.count === 1 ? 'time' : 'times'})`).join(', ');
    return [`${PROBE_NAMES[probe]} probes failed for ${these.length} ${these.length === 1 ? 'pod' : 'pods'} on this node in the last ${window}: ${named}${these.length > 5 ? `, and ${these.length - 5} more` : ''}`];
  });
  const liveness = probes.failures.some((f) => f.probe === 'Liveness');
  const perCore = load.load15 / load.cores;
  return [{
    check: 'pressure.load',
    severity: liveness ? 'critical' : 'warning',
    subject: 'load',
    message: `load15 is ${load.load15.toFixed(1)} on ${load.cores} ${load.cores === 1 ? 'core' : 'cores'} (${perCore.toFixed(1)} per core, above ${config.loadPerCore}); ${parts.join('; ')}${liveness ? ': kubelet restarts containers whose liveness probes time out on a node this busy' : ''}.`,
    evidence: {
      load15: load.load15,
      cores: load.cores,
      loadPerCore: Math.round(perCore * 100) / 100,
      threshold: config.loadPerCore,
      pods: pods.size,
      failures: probes.failures.slice(0, 20).map((f) => ({ pod: `${f.namespace}/${f.pod}`, probe: f.probe, count: f.count, lastSeen: new Date(f.lastSeen).toISOString(), message: f.message })),
      eventsRead: probes.scanned,
      truncated: probes.truncated,
      staleBecause: probes.stale ?? null,
    },
    remedy: "ps -eo pid,pcpu,stat,comm --sort=-pcpu | head; kubectl top pods -A --sort-by=cpu  # who loads the node; then move load off it (kubectl cordon, then drain or scale), or give the probes' pods CPU requests and longer timeoutSeconds",
  }];
}

/** Pure: `some avg10=0.00 avg60=0.00 avg300=0.00 total=181341` lines. Unknown or broken lines are skipped. */
export function parsePsi(text: string): Psi {
  const out: Psi = {};
  for (const line of text.split('\n')) {
    const m = /^(some|full)\s+avg10=([\d.]+)\s+avg60=([\d.]+)\s+avg300=([\d.]+)\s+total=(\d+)\s*$/.exec(line.trim());
    if (!m) continue;
    const v = { avg10: Number(m[2]), avg60: Number(m[3]), avg300: Number(m[4]), total: Number(m[5]) };
    if (Object.values(v).every(Number.isFinite)) out[m[1] as 'some' | 'full'] = v;
  }
  return out;
}

/** Pure: /proc/meminfo -> bytes by key (values in kB). */
export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+kB)?$/.exec(line.trim());
    if (m) out[m[1]!] = Number(m[2]) * (line.includes('kB') ? 1024 : 1);
  }
  return out;
}

/** Pure: `key value` lines of a cgroup v1 memory.stat. */
export function parseMemoryStat(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out[k] = Number(v);
  }
  return out;
}

/**
 * Pure: kubelet's memory.available. cgroup v1: capacity - (usage_in_bytes - total_inactive_file), as
 * kubelet's eviction manager does; otherwise MemAvailable.
 */
export function memoryAvailable(meminfo: Record<string, number>, v1?: { usage: number; stat: Record<string, number> }): { bytes: number; source: 'cgroup-v1' | 'meminfo' } | undefined {
  const total = meminfo['MemTotal'];
  if (total === undefined) return undefined;
  if (v1) {
    const inactive = v1.stat['total_inactive_file'] ?? v1.stat['inactive_file'] ?? 0;
    const workingSet = Math.max(0, v1.usage - inactive);
    return { bytes: Math.max(0, total - workingSet), source: 'cgroup-v1' };
  }
  const avail = meminfo['MemAvailable'];
  return avail === undefined ? undefined : { bytes: avail, source: 'meminfo' };
}

const mib = (b: number) => `${Math.round(b / 1048576).toLocaleString('en-US')} MiB`;

/** Pure: the memory.eviction finding, if any. */
export function evaluateMemory(d: Pick<PressureData, 'memoryAvailable' | 'memoryTotal' | 'ratePerMinute' | 'samples'>, config: PressureConfig): Observation[] {
  if (d.memoryAvailable === undefined) return [];
  const threshold = config.memoryAvailableMiB * 1048576;
  const avail = d.memoryAvailable;
  const evidence = { memoryAvailable: avail, thresholdBytes: threshold, memoryTotal: d.memoryTotal ?? null, ratePerMinute: d.ratePerMinute ?? null, samples: d.samples.length };
  const remedy = "kubectl top pods -A --sort-by=memory; ps -eo pid,rss,comm --sort=-rss | head  # the largest consumers on this node";
  if (avail < threshold) {
    return [{ check: 'memory.eviction', severity: 'critical', subject: 'memory.available', message: `memory.available is ${mib(avail)}, below kubelet's eviction threshold of ${mib(threshold)}: kubelet evicts pods now (MemoryPressure), lowest priority and most over their requests first.`, evidence, remedy }];
  }
  const rate = d.ratePerMinute;
  // A trend far from the threshold is a busy node's normal life (a job ramping up takes gigabytes a
  // minute, then stops): the forecast speaks only once a quarter of the node's memory or less is left.
  const near = d.memoryTotal === undefined || avail < d.memoryTotal / 4;
  if (near && rate !== undefined && rate < 0 && d.samples.length >= 3) {
    const eta = (avail - threshold) / -rate;
    if (eta * 60_000 <= config.forecast) {
      return [{ check: 'memory.eviction', severity: 'warning', subject: 'memory.available', message: `memory.available is ${mib(avail)} and falling ${mib(-rate)}/min: kubelet will evict pods in ${formatMinutes(eta)} at this rate (threshold ${mib(threshold)}).`, evidence: { ...evidence, minutesToThreshold: Math.round(eta * 10) / 10 }, remedy }];
    }
  }
  return [];
}

const PSI_LINE: Record<string, 'some' | 'full'> = { memory: 'full', io: 'full', cpu: 'some' };
const PSI_REMEDY: Record<string, string> = {
  memory: 'ps -eo pid,rss,comm --sort=-rss | head; grep -E "pgmajfault|pswp" /proc/vmstat  # who holds memory, and whether it pages',
  io: 'iostat -x 5 2 2>/dev/null || cat /proc/diskstats; ps -eo pid,stat,wchan:32,comm | awk \'$2 ~ /D/\'  # busy devices and who waits on them',
  cpu: 'ps -eo pid,pcpu,comm --sort=-pcpu | head; cat /proc/loadavg  # who uses the CPU (probes time out when the node is this busy)',
};

/**
 * Pure: pressure.memory, pressure.io, pressure.cpu from the 60-second averages. `stalledBefore`: the
 * resources over the warning in the previous run; a stall fires only when it lasts two runs.
 */
export function evaluatePsi(psi: Record<string, Psi>, config: PressureConfig, stalledBefore: readonly string[]): { observations: Observation[]; stalled: string[] } {
  const observations: Observation[] = [];
  const stalled: string[] = [];
  for (const [resource, which] of Object.entries(PSI_LINE)) {
    const line = psi[resource]?.[which];
    const warning = resource === 'cpu' ? config.cpuWarning : config.psiWarning;
    const criticalAt = resource === 'cpu' ? config.cpuCritical : config.psiCritical;
    if (!line || line.avg60 <= warning) continue;
    stalled.push(resource);
    if (!stalledBefore.includes(resource)) continue;
    const critical = line.avg60 >= criticalAt;
    const who = which === 'full' ? 'every non-idle task' : 'at least one task';
    observations.push({
      check: `pressure.${resource}`,
      severity: critical ? 'critical' : 'warning',
      subject: resource,
      message: `${resource} pressure: ${who} waited for ${resource} ${line.avg60.toFixed(1)}% of the last minute (${line.avg10.toFixed(1)}% of the last 10 s, ${line.avg300.toFixed(1)}% of 5 min)${resource === 'cpu' ? ': probes and kubelet slow down, pods restart on failed liveness probes' : resource === 'memory' ? ': the node is thrashing before it runs out' : ': disk waits stall containers and kubelet'}.`,
      evidence: { resource, line: which, ...line },
      remedy: PSI_REMEDY[resource]!,
    });
  }
  return { observations, stalled };
}

async function readPsi(host: HostAccess): Promise<Record<string, Psi>> {
  const out: Record<string, Psi> = {};
  for (const r of Object.keys(PSI_LINE)) {
    const text = await host.readText(host.procPath('pressure', r));
    if (text !== undefined) out[r] = parsePsi(text);
  }
  return out;
}

export const pressure: Collector<PressureConfig, PressureData> = {
  name: 'pressure',
  description: "Pressure stall information for memory, io and cpu; kubelet's memory.available against its eviction threshold with a forecast; a load that makes pods' probes fail",
  checks: ['memory.eviction', 'pressure.memory', 'pressure.io', 'pressure.cpu', 'pressure.load'],
  conditions: { 'memory.eviction': 'NodewardenMemoryPressure', 'pressure.memory': null, 'pressure.io': null, 'pressure.cpu': null, 'pressure.load': null },
  defaultIntervalMs: 15_000,
  defaultTimeoutMs: 5_000,
  configSpec: pressureConfigSpec,
  async collect(ctx) {
    const { host, config } = ctx;
    const meminfoText = await host.readText(host.procPath('meminfo'));
    const psi = await readPsi(host);
    const loadavg = parseLoadavg((await host.readText(host.procPath('loadavg'))) ?? '');
    if (meminfoText === undefined && Object.keys(psi).length === 0 && !loadavg) return { kind: 'no-data', reason: 'no /proc/meminfo, /proc/pressure or /proc/loadavg' };
    const meminfo = meminfoText ? parseMeminfo(meminfoText) : {};
    const usage = Number((await host.readText(host.sysPath('fs/cgroup/memory/memory.usage_in_bytes')))?.trim());
    const statText = Number.isFinite(usage) ? await host.readText(host.sysPath('fs/cgroup/memory/memory.stat')) : undefined;
    const avail = memoryAvailable(meminfo, statText !== undefined ? { usage, stat: parseMemoryStat(statText) } : undefined);
    const now = ctx.now();
    const samples: [number, number][] = (ctx.previous?.samples ?? []).filter(([t]) => now - t <= config.window && t < now);
    if (avail) samples.push([now, avail.bytes]);
    const data: PressureData = { samples, psi, stalled: [] };
    if (avail) {
      data.memoryAvailable = avail.bytes;
      data.source = avail.source;
    }
    if (meminfo['MemTotal'] !== undefined) data.memoryTotal = meminfo['MemTotal'];
    const rate = ratePerMinute(samples);
    if (rate !== undefined) data.ratePerMinute = Math.round(rate);
    const p = evaluatePsi(psi, config, ctx.previous?.stalled ?? []);
    data.stalled = p.stalled;
    if (loadavg) data.load = { load15: loadavg.load15, cores: countCpus((await host.readText(host.procPath('stat'))) ?? '') };
    // kubelet's probe-failure Events are asked for only while the load is high: listing them is the costly part.
    const loaded = data.load !== undefined && data.load.cores > 0 && data.load.load15 / data.load.cores > config.loadPerCore;
    const probes = loaded ? ctx.kube?.probeFailures(config.probeWindow) : undefined;
    return { kind: 'ok', observations: [...evaluateMemory(data, config), ...p.observations, ...evaluateLoad(data.load, probes, config)], data };
  },
};
