// pids: process ids are a node-wide resource and a per-container one. Every task (process or thread)
// holds a pid; at min(kernel.pid_max, kernel.threads-max) fork() and pthread_create() fail with EAGAIN
// on the whole node, and at a cgroup's pids.max they fail inside that container or pod. A zombie holds
// its pid until its parent reaps it, so a parent that never calls wait() leaks pids one by one.
import type { Observation, Severity, Workload } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { bandSpec, clearBelowSpec, severityWithHysteresis } from './common/bands.js';
import { controllerCgroupOf, describeProcess, parseCgroupContainer, podUidIn } from './common/process.js';
import { parseCount } from './common/text.js';
import type { Collector, HostAccess, RuntimeContainer } from './types.js';

export const pidsConfigSpec = s.object({
  node: bandSpec('tasks (processes and threads) on the node against min(kernel.pid_max, kernel.threads-max)', 80, 90),
  container: bandSpec("a container's or pod's pids.current against its cgroup's pids.max (fork fails at the limit)", 80, 95),
  clearBelow: clearBelowSpec('pids.node or pids.container'),
  zombies: s.object({
    warning: s.number({ default: 50, min: 1, integer: true, doc: 'zombie children one parent holds, unreaped across two runs, before pids.zombies warns' }),
  }),
});
export type PidsConfig = Infer<typeof pidsConfigSpec>;

/** The fields of /proc/PID/stat this collector reads. */
export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, Z, T, I... */
  state: string;
  ppid: number;
  threads: number;
  /** Clock ticks after boot: with the pid, who the process is (pids are reused). */
  startTime: number;
}

/**
 * Parses /proc/PID/stat. comm sits in parentheses and may itself hold spaces and parentheses, so the
 * fields are counted from the last `)`. Undefined when the text is not a stat line.
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state); num_threads is field 20, starttime field 22.
  const state = rest[0];
  const ppid = Number(rest[1]);
  const threads = Number(rest[17]);
  const startTime = Number(rest[19]);
  if (!Number.isInteger(pid) || !state || !Number.isInteger(ppid) || !Number.isInteger(threads) || !Number.isInteger(startTime)) return undefined;
  return { pid, comm: text.slice(open + 1, close), state, ppid, threads, startTime };
}

/** /proc/loadavg's fourth field, `running/total`: total is every task on the node (kernel threads too). */
export function parseLoadavgTasks(text: string | undefined): { running: number; total: number } | undefined {
  const m = /^\S+\s+\S+\s+\S+\s+(\d+)\/(\d+)\s/.exec(text ?? '');
  return m ? { running: Number(m[1]), total: Number(m[2]) } : undefined;
}

/** pids.max: a number, `max` (no limit: undefined), or unreadable (undefined). */
export function parsePidsMax(text: string | undefined): number | undefined {
  const t = text?.trim();
  if (!t || t === 'max') return undefined;
  const n = Number(t);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** The pids cgroup of a process from /proc/PID/cgroup: the v1 `pids` controller's, else the v2 one. Pure. */
export function pidsCgroupOf(cgroupText: string): { path: string; v2: boolean } | undefined {
  return controllerCgroupOf(cgroupText, 'pids');
}

/** A container as findings name it. */
export interface Member {
  id: string;
  name: string;
  workload: Workload;
}

/** A cgroup with a pids limit, and the containers in or under it. */
export interface LimitedCgroup {
  path: string;
  current: number;
  max: number;
  /** True when this is the container's own cgroup; false for a pod's or a parent's. */
  own: boolean;
  members: Member[];
}

export interface ZombieParent {
  pid: number;
  startTime: number;
  comm: string;
  cmdline: string;
  /** The zombies' pids, sorted. */
  zombies: number[];
  container?: Member;
  podUid?: string;
}

export interface PidsData {
  node?: { tasks: number; pidMax?: number; threadsMax?: number };
  cgroups: LimitedCgroup[];
  /** Tasks per pod (or container outside a pod), from each container's own pids.current, most first. */
  consumers: { who: string; tasks: number }[];
  /** Parents holding at least zombies.warning zombies in this read. */
  zombieParents: ZombieParent[];
  /** check \0 subject -> severity, for hysteresis next run. */
  firing: [string, Severity][];
}

const fmt = (n: number): string => n.toLocaleString('en-US');
const pctText = (pct: number): string => (pct >= 99.5 && pct < 100 ? pct.toFixed(1) : pct.toFixed(0));
/** The highest pid_max a 64-bit kernel takes (PID_MAX_LIMIT). */
const PID_MAX_LIMIT = 4_194_304;

export function describeMember(m: Member): string {
  const w = m.workload;
  if (w.pod) return `container ${w.containerName ?? m.name} of pod ${w.namespace ?? '?'}/${w.pod}`;
  return `container ${m.name}`;
}

function podOf(m: Member): string | undefined {
  return m.workload.pod ? `${m.workload.namespace ?? '?'}/${m.workload.pod}` : undefined;
}

/** Subject of a limited cgroup: the container id for its own cgroup, `pod:UID` for a pod's, else the path. */
export function cgroupSubject(c: LimitedCgroup): string {
  if (c.own && c.members.length === 1) return c.members[0]!.id;
  const uid = podUidIn(c.path);
  return uid && !parseCgroupContainer(`0::${c.path}`) ? `pod:${uid}` : `cgroup:${c.path}`;
}

/** Turns what was read into findings; `previous` gives hysteresis and zombie confirmation. Pure. */
export function evaluatePids(data: PidsData, config: PidsConfig, previous: PidsData | undefined): Observation[] {
  const out: Observation[] = [];
  const before = new Map(previous?.firing ?? []);
  const was = (check: string, subject: string) => before.get(`${check}\0${subject}`);

  if (data.node) {
    const { tasks, pidMax, threadsMax } = data.node;
    const limits = [pidMax, threadsMax].filter((n): n is number => n !== undefined && n > 0);
    if (limits.length > 0) {
      const limit = Math.min(...limits);
      const pct = (tasks / limit) * 100;
      const severity = severityWithHysteresis(pct, config.node, config.clearBelow, was('pids.node', 'node'));
      if (severity) {
        const byPidMax = pidMax !== undefined && pidMax === limit;
        const sysctl = byPidMax ? 'kernel.pid_max' : 'kernel.threads-max';
        const raised = byPidMax ? Math.min(PID_MAX_LIMIT, Math.max(limit * 2, Math.ceil(tasks * 2))) : Math.max(limit * 2, Math.ceil(tasks * 2));
        const top = data.consumers.slice(0, 5);
        out.push({
          check: 'pids.node',
          severity,
          subject: 'node',
          message:
            `${fmt(tasks)} tasks (processes and threads) on the node, ${pctText(pct)}% of its limit of ${fmt(limit)} (${sysctl}` +
            `${pidMax !== undefined && threadsMax !== undefined ? `; kernel.pid_max ${fmt(pidMax)}, kernel.threads-max ${fmt(threadsMax)}` : ''}). ` +
            'At the limit fork() and pthread_create() fail with EAGAIN for every process on the node, the kubelet and the runtime included.' +
            (top.length > 0 ? ` Most tasks: ${top.map((c) => `${c.who} ${fmt(c.tasks)}`).join(', ')}.` : ''),
          evidence: { tasks, limit, percent: Math.round(pct), pid_max: pidMax ?? null, threads_max: threadsMax ?? null, top: top.map((c) => ({ who: c.who, tasks: c.tasks })) },
          remedy: `ps -eo nlwp,pid,comm --sort=-nlwp | head  # who holds the threads; then fix the leak, or raise the limit: sysctl -w ${sysctl}=${raised}`,
        });
      }
    }
  }

  for (const c of data.cgroups) {
    const pct = (c.current / c.max) * 100;
    const subject = cgroupSubject(c);
    const severity = severityWithHysteresis(pct, config.container, config.clearBelow, was('pids.container', subject));
    if (!severity) continue;
    const pods = [...new Set(c.members.map(podOf).filter((p): p is string => p !== undefined))];
    const who = c.own && c.members.length === 1
      ? capitalize(describeMember(c.members[0]!))
      : pods.length === 1 && podUidIn(c.path) ? `Pod ${pods[0]!}` : `Cgroup ${c.path}`;
    // A limit high in the tree (kubepods) holds every pod's containers: name ten.
    const names = c.members.map((m) => (m.workload.pod && pods.length === 1 ? m.workload.containerName ?? m.name : describeMember(m)));
    const inside = c.own ? '' : ` (containers: ${names.slice(0, 10).join(', ') || 'none known'}${names.length > 10 ? ` and ${fmt(names.length - 10)} more` : ''})`;
    const grep = c.path.split('/').filter(Boolean).pop() ?? c.path;
    const limitHow = c.members.some((m) => m.workload.pod) ? "the kubelet's podPidsLimit" : 'docker run --pids-limit';
    const obs: Observation = {
      check: 'pids.container',
      severity,
      subject,
      message:
        `${who}${inside} uses ${fmt(c.current)} of its ${fmt(c.max)} pids (${pctText(pct)}%, cgroup ${c.path}). ` +
        (c.current >= c.max ? 'It is at the limit: every fork() and new thread in it fails with EAGAIN ("can\'t fork", "Resource temporarily unavailable").' : 'At the limit every fork() and new thread in it fails with EAGAIN.'),
      evidence: { current: c.current, max: c.max, percent: Math.round(pct), cgroup: c.path, containers: c.members.slice(0, 50).map((m) => m.id) },
      remedy: `ps -e -o pid,ppid,stat,nlwp,comm,cgroup | grep ${grep} | sort -k2 -n | head -40  # what forks or spawns threads; fix that, or raise the limit (${limitHow})`,
    };
    const w = c.members.length === 1 ? c.members[0]!.workload : undefined;
    if (w) obs.workload = { ...w };
    out.push(obs);
  }

  const prevZombies = new Map((previous?.zombieParents ?? []).map((z) => [`${z.pid}/${z.startTime}`, new Set(z.zombies)]));
  for (const z of data.zombieParents) {
    // Only zombies that were already there last run count: a parent that reaps, however busy, never keeps the same ones.
    const earlier = prevZombies.get(`${z.pid}/${z.startTime}`);
    if (!earlier) continue;
    const kept = z.zombies.filter((pid) => earlier.has(pid));
    if (kept.length < config.zombies.warning) continue;
    const where = z.container ? ` in ${describeMember(z.container)}` : z.podUid ? ` in a container of pod UID ${z.podUid}` : '';
    const restart = z.container?.workload.pod
      ? `kubectl -n ${z.container.workload.namespace ?? 'NAMESPACE'} delete pod ${z.container.workload.pod}`
      : z.container ? `docker restart ${z.container.name}` : `restart ${z.comm} (pid ${z.pid})`;
    const obs: Observation = {
      check: 'pids.zombies',
      severity: 'warning',
      subject: `pid:${z.pid}`,
      message:
        `Process ${z.comm} (pid ${z.pid})${where} holds ${fmt(z.zombies.length)} zombie children, ${fmt(kept.length)} of them unreaped since the last run: ` +
        'it does not wait() for the children that exit, and each zombie keeps its pid until it does (toward pids.max and kernel.pid_max).',
      evidence: { parent_pid: z.pid, parent_comm: z.comm, parent_cmdline: z.cmdline, zombies: z.zombies.length, unreaped_since_last_run: kept.length, sample: z.zombies.slice(0, 10) },
      remedy: `ps -o pid,stat,cmd --ppid ${z.pid} | head; kill -s CHLD ${z.pid}  # nudge it to reap; if the zombies stay, ${restart} (its zombies then go to init, which reaps them)`,
    };
    if (z.container) obs.workload = { ...z.container.workload };
    else if (z.podUid) obs.workload = { podUid: z.podUid };
    out.push(obs);
  }
  return out;
}

function capitalize(t: string): string {
  return t.charAt(0).toUpperCase() + t.slice(1);
}

function cgroupFile(host: HostAccess, cg: { path: string; v2: boolean }, file: string): string {
  const parts = cg.path.split('/').filter(Boolean);
  return cg.v2 ? host.sysPath('fs', 'cgroup', ...parts, file) : host.sysPath('fs', 'cgroup', 'pids', ...parts, file);
}

/** Every process's stat, read in batches (a node has thousands). Processes that vanish are skipped. */
async function readStats(host: HostAccess, signal: AbortSignal): Promise<ProcStat[]> {
  const pids = await host.pids();
  const out: ProcStat[] = [];
  for (let i = 0; i < pids.length; i += 128) {
    if (signal.aborted) break;
    const texts = await Promise.all(pids.slice(i, i + 128).map((pid) => host.readText(host.procPath(pid, 'stat')).catch(() => undefined)));
    for (const t of texts) {
      const st = t === undefined ? undefined : parseProcStat(t);
      if (st) out.push(st);
    }
  }
  return out;
}

/** Zombies grouped by parent, parents with at least `min` of them. Pure. */
export function zombiesByParent(stats: readonly ProcStat[], min: number): { parent: ProcStat | undefined; ppid: number; zombies: number[] }[] {
  const byParent = new Map<number, number[]>();
  for (const st of stats) {
    if (st.state !== 'Z') continue;
    const list = byParent.get(st.ppid) ?? [];
    list.push(st.pid);
    byParent.set(st.ppid, list);
  }
  const byPid = new Map(stats.map((st) => [st.pid, st]));
  return [...byParent]
    .filter(([, z]) => z.length >= min)
    .map(([ppid, zombies]) => ({ parent: byPid.get(ppid), ppid, zombies: zombies.sort((a, b) => a - b) }));
}

function memberOf(c: RuntimeContainer): Member {
  return { id: c.id, name: c.name, workload: { ...c.workload, containerId: c.id } };
}

export const pids: Collector<PidsConfig, PidsData> = {
  name: 'pids',
  description: 'Process ids: tasks on the node against pid_max/threads-max, containers and pods against pids.max, parents that leave zombies unreaped',
  checks: ['pids.node', 'pids.container', 'pids.zombies'],
  conditions: { 'pids.node': 'NodewardenPIDPressure', 'pids.container': null, 'pids.zombies': null },
  defaultIntervalMs: 30_000,
  defaultTimeoutMs: 10_000,
  waitsFor: ['runtime.timeout'],
  configSpec: pidsConfigSpec,
  async collect(ctx) {
    const { host, config } = ctx;
    const [loadavg, pidMaxText, threadsMaxText] = await Promise.all([
      host.readText(host.procPath('loadavg')),
      host.readText(host.procPath('sys', 'kernel', 'pid_max')),
      host.readText(host.procPath('sys', 'kernel', 'threads-max')),
    ]);
    if (loadavg === undefined) return { kind: 'no-data', reason: 'no /proc/loadavg on this host' };
    const stats = await readStats(host, ctx.signal);
    const tasks = parseLoadavgTasks(loadavg)?.total ?? stats.reduce((a, st) => a + st.threads, 0);
    const node: NonNullable<PidsData['node']> = { tasks };
    const pidMax = parseCount(pidMaxText);
    const threadsMax = parseCount(threadsMaxText);
    if (pidMax !== undefined) node.pidMax = pidMax;
    if (threadsMax !== undefined) node.threadsMax = threadsMax;

    const snap = await ctx.runtime.snapshot();
    const byId = new Map(snap.containers.map((c) => [c.id, c]));

    // Each container's pids cgroup and its ancestors: the tightest limit may be the pod's (kubelet's
    // podPidsLimit) rather than the container's own.
    const levels = new Map<string, LimitedCgroup | null>();
    const consumers = new Map<string, number>();
    const readLevel = async (cg: { path: string; v2: boolean }, own: boolean): Promise<LimitedCgroup | null> => {
      const key = `${cg.v2 ? 2 : 1}:${cg.path}`;
      const known = levels.get(key);
      if (known !== undefined) return known;
      const [cur, max] = await Promise.all([host.readText(cgroupFile(host, cg, 'pids.current')), host.readText(cgroupFile(host, cg, 'pids.max'))]);
      const current = parseCount(cur);
      const limit = parsePidsMax(max);
      const level = current === undefined ? null : { path: cg.path, current, max: limit ?? 0, own, members: [] };
      levels.set(key, level);
      return level;
    };
    for (const c of snap.containers) {
      const pid = c.docker?.pid || c.containerd?.task?.pid || 0;
      if (pid <= 0) continue;
      const text = await host.readText(host.procPath(pid, 'cgroup')).catch(() => undefined);
      const cg = text ? pidsCgroupOf(text) : undefined;
      if (!cg || cg.path === '/' || !parseCgroupContainer(text!)) continue;
      const member = memberOf(c);
      const parts = cg.path.split('/').filter(Boolean);
      for (let depth = parts.length; depth > 0; depth--) {
        const level = await readLevel({ path: `/${parts.slice(0, depth).join('/')}`, v2: cg.v2 }, depth === parts.length);
        if (!level) break;
        if (depth === parts.length) {
          const who = podOf(member) ?? `container ${member.name}`;
          consumers.set(who, (consumers.get(who) ?? 0) + level.current);
        }
        if (!level.members.some((m) => m.id === member.id)) level.members.push(member);
      }
    }
    const cgroups = [...levels.values()].filter((l): l is LimitedCgroup => l !== null && l.max > 0);

    const zombieParents: ZombieParent[] = [];
    for (const { parent, ppid, zombies } of zombiesByParent(stats, config.zombies.warning)) {
      if (!parent) continue;
      const d = await describeProcess(host, ppid);
      const z: ZombieParent = { pid: ppid, startTime: parent.startTime, comm: d.comm === '?' ? parent.comm : d.comm, cmdline: d.cmdline, zombies };
      const c = d.containerId ? byId.get(d.containerId) : undefined;
      if (c) z.container = memberOf(c);
      else if (d.containerId) z.container = { id: d.containerId, name: d.containerId.slice(0, 12), workload: { containerId: d.containerId, ...(d.podUid ? { podUid: d.podUid } : {}) } };
      if (d.podUid) z.podUid = d.podUid;
      zombieParents.push(z);
    }

    const data: PidsData = {
      node,
      cgroups,
      consumers: [...consumers].map(([who, n]) => ({ who, tasks: n })).sort((a, b) => b.tasks - a.tasks),
      zombieParents,
      firing: [],
    };
    const observations = evaluatePids(data, config, ctx.previous);
    data.firing = observations.filter((o) => o.check !== 'pids.zombies').map((o) => [`${o.check}\0${o.subject}`, o.severity]);
    return { kind: 'ok', observations, data };
  },
};
