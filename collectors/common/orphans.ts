// Orphans: `runc init` processes and containerd shims that no runtime knows (issue 17.6). A `docker run`
// whose start failed during a containerd restart left its `runc init` alive for half an hour, parent 1,
// in its cgroups, holding the container's mounts and pinning the data root's loop device, while neither
// docker nor containerd listed it. Read by the drift collector (the same snapshot, the same confirmation).
//
// Not an orphan: a `runc init` that is the normal short-lived setup of a container being created or
// exec'd (its parent is runc or a shim, or its container or task is known to a runtime), a shim of a
// container containerd knows, a shim in a namespace we do not read, anything younger than the minimum age.
import type { Observation } from '../../protocol/finding.js';
import type { HostAccess } from '../types.js';
import { mountFor, parseMountinfo, type MountInfo } from './mountinfo.js';
import { parseCgroupContainer } from './process.js';

/** One process as the orphan rules see it. */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  comm: string;
  /** Seconds since it started. */
  ageS: number;
  /** Clock ticks since boot at its start: with the pid, what identifies this process's life. */
  startTicks: number;
  /** Its arguments (only read for runc and shim processes). */
  args?: string[];
  /** The container id its cgroup names (a 64-hex id, or the last path component). */
  cgroupId?: string;
}

/** What the runtimes know: container ids (docker's and containerd's, any namespace read) and task pids. */
export interface Known {
  ids: ReadonlySet<string>;
  /** containerd's containers as `namespace/id`. */
  containerdKeys: ReadonlySet<string>;
  taskPids: ReadonlySet<number>;
  /** The containerd namespaces read: a shim in another namespace is not judged. */
  namespaces: ReadonlySet<string>;
}

export interface Orphan {
  /** The container id it belongs to (its shim's -id or its cgroup), or `pid-N` when nothing names one. */
  subject: string;
  runcInits: ProcessInfo[];
  shims: (ProcessInfo & { namespace: string; id: string })[];
}

const RUNTIME_PARENT = /^(runc|containerd|dockerd|containerd-shim)/;

/** Pure: a `runc init` (its comm is `runc:[2:INIT]` in nsexec's last stage, or its argv is `runc init`). */
export function isRuncInit(p: Pick<ProcessInfo, 'comm' | 'args'>): boolean {
  if (/^runc:\[\d:[A-Z]+\]$/.test(p.comm)) return true;
  const a = p.args ?? [];
  return p.comm === 'runc' && a.length >= 2 && /(^|\/)runc$/.test(a[0]!) && a[1] === 'init';
}

/** Pure: a containerd shim's namespace and id, from `containerd-shim-runc-v2 -namespace NS -id ID -address ...`. */
export function shimOf(p: Pick<ProcessInfo, 'comm' | 'args'>): { namespace: string; id: string } | undefined {
  if (!p.comm.startsWith('containerd-shim')) return undefined;
  const a = p.args ?? [];
  const value = (flag: string) => {
    const i = a.findIndex((x) => x === `-${flag}` || x === `--${flag}`);
    return i >= 0 ? a[i + 1] : undefined;
  };
  const namespace = value('namespace');
  const id = value('id');
  // `... start` and `... delete` are the short-lived invocations that launch or clean up a shim.
  if (!namespace || !id || a.includes('start') || a.includes('delete')) return undefined;
  return { namespace, id };
}

/** Pure: the container a cgroup file names: a 64-hex id (docker, CRI), else the last path component. */
export function cgroupIdOf(cgroup: string): string | undefined {
  const ref = parseCgroupContainer(cgroup);
  if (ref) return ref.containerId;
  // cgroup v2's line, else the first one: `0::/k8s.io/nw-1` or `4:memory:/nw-orphans/abc`.
  const lines = cgroup.split('\n').filter(Boolean);
  const line = lines.find((l) => l.startsWith('0::')) ?? lines[0];
  const path = line?.slice(line.indexOf(':', line.indexOf(':') + 1) + 1) ?? '';
  const last = path.split('/').filter(Boolean).pop();
  return last && last.length <= 256 ? last : undefined;
}

/**
 * Pure: the orphans among the processes. A shim is orphaned when containerd has no container by its
 * namespace and id (in a namespace we read); a `runc init` when its parent is pid 1, a subreaper that is
 * no runtime, or an orphaned shim, and neither its task pid nor its container is known. Both only past
 * `minAgeS`. Grouped by container, so a shim and its `runc init` are one finding.
 */
export function findOrphans(procs: readonly ProcessInfo[], known: Known, minAgeS: number): Orphan[] {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const groups = new Map<string, Orphan>();
  const group = (subject: string) => {
    let g = groups.get(subject);
    if (!g) groups.set(subject, (g = { subject, runcInits: [], shims: [] }));
    return g;
  };
  const orphanShims = new Map<number, string>();
  for (const p of procs) {
    const shim = shimOf(p);
    if (!shim || p.ageS < minAgeS || !known.namespaces.has(shim.namespace)) continue;
    if (known.containerdKeys.has(`${shim.namespace}/${shim.id}`)) continue;
    group(shim.id).shims.push({ ...p, ...shim });
    orphanShims.set(p.pid, shim.id);
  }
  for (const p of procs) {
    if (!isRuncInit(p) || p.ageS < minAgeS || known.taskPids.has(p.pid)) continue;
    if (p.cgroupId && known.ids.has(p.cgroupId)) continue;
    const parent = byPid.get(p.ppid);
    const underOrphanShim = orphanShims.get(p.ppid);
    const abandoned = p.ppid === 1 || underOrphanShim !== undefined || !parent || !RUNTIME_PARENT.test(parent.comm);
    if (!abandoned) continue;
    group(underOrphanShim ?? p.cgroupId ?? `pid-${p.pid}`).runcInits.push(p);
  }
  return [...groups.values()];
}

/** What an orphan holds: its container's mounts and the block devices they pin. */
export interface Holdings {
  /** The process whose mount namespace was read. */
  pid: number;
  mounts: number;
  mountPoints: string[];
  /** Block devices its mounts rest on, and where the host has each mounted. */
  devices: { device: string; hostMountPoint?: string }[];
  upperDir?: string;
}

/** Pure: the holdings from the orphan's mountinfo and the host's. */
export function holdingsOf(pid: number, own: readonly MountInfo[], host: readonly MountInfo[]): Holdings {
  const devices = new Map<string, string | undefined>();
  const add = (source: string, hostMountPoint?: string) => {
    if (source.startsWith('/dev/') && !devices.has(source)) devices.set(source, hostMountPoint);
  };
  let upperDir: string | undefined;
  for (const m of own) {
    const upper = m.fsType === 'overlay' ? m.superOptions.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length) : undefined;
    if (upper) {
      upperDir ??= upper;
      const under = mountFor(host, upper);
      if (under) add(under.source, under.mountPoint);
    }
    const onHost = host.find((h) => h.device === m.device && h.source === m.source);
    add(m.source, onHost?.mountPoint);
  }
  return {
    pid,
    mounts: own.length,
    mountPoints: own.slice(0, 12).map((m) => m.mountPoint),
    devices: [...devices].map(([device, hostMountPoint]) => (hostMountPoint ? { device, hostMountPoint } : { device })),
    ...(upperDir ? { upperDir } : {}),
  };
}

/** Pure: what confirmation compares: the same processes (pid and start) in both reads. */
export function orphanFacts(o: Orphan): string {
  return [...o.shims, ...o.runcInits].map((p) => `${p.pid}@${p.startTicks}`).sort().join(',');
}

const minutes = (s: number) => (s >= 120 ? `${Math.round(s / 60)} min` : `${s} s`);

/** Pure: the finding for one orphan. */
export function evaluateOrphan(o: Orphan, holdings: Holdings | undefined): Observation {
  const short = o.subject.startsWith('pid-') ? o.subject : o.subject.slice(0, 12);
  const parts = [
    ...o.runcInits.map((p) => `runc init (pid ${p.pid}, parent ${p.ppid}, ${minutes(p.ageS)} old)`),
    ...o.shims.map((p) => `a containerd shim (pid ${p.pid}, namespace ${p.namespace}, ${minutes(p.ageS)} old)`),
  ];
  const pins = holdings?.devices.length
    ? ` and pin ${holdings.devices.map((d) => (d.hostMountPoint ? `${d.device} (mounted at ${d.hostMountPoint})` : d.device)).join(', ')}: it cannot be unmounted or detached while they live`
    : '';
  const holds = holdings ? ` They hold the container's ${holdings.mounts} mounts${pins}.` : '';
  // runc init first, then the shim: the shim, a subreaper, would otherwise hand runc init to pid 1.
  const pids = [...o.runcInits.map((p) => p.pid), ...o.shims.map((p) => p.pid)];
  return {
    check: 'runtime.orphan',
    severity: 'warning',
    subject: o.subject,
    message: `${parts.join(' and ')} of container ${short} ${parts.length > 1 ? 'belong' : 'belongs'} to no runtime: neither docker nor containerd knows ${short}, so nothing will ever end them.${holds}`,
    evidence: {
      container: o.subject,
      processes: [...o.runcInits.map((p) => ({ pid: p.pid, ppid: p.ppid, comm: p.comm, ageSeconds: p.ageS, role: 'runc init' })), ...o.shims.map((p) => ({ pid: p.pid, ppid: p.ppid, comm: p.comm, ageSeconds: p.ageS, role: 'shim', namespace: p.namespace }))],
      ...(holdings ? { mounts: holdings.mounts, mountPoints: holdings.mountPoints, devices: holdings.devices, upperDir: holdings.upperDir ?? null } : {}),
    },
    remedy: `kill -9 ${pids.join(' ')}  # nothing else will: no runtime knows them; see them first with ps -f -p ${pids.join(',')}`,
  };
}

/** Reads every process's stat (and, for runc and shims, their arguments and cgroup). */
export async function readProcesses(host: HostAccess): Promise<ProcessInfo[]> {
  const uptime = Number((await host.readText(host.procPath('uptime')))?.split(' ')[0]);
  const out: ProcessInfo[] = [];
  for (const pid of await host.pids()) {
    const stat = await host.readText(host.procPath(pid, 'stat'));
    if (!stat) continue;
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    // Field 4 is the parent; field 22, starttime, in clock ticks since boot (USER_HZ is 100 on Linux).
    const ppid = Number(fields[1]);
    const startTicks = Number(fields[19]);
    if (!Number.isFinite(ppid) || !Number.isFinite(startTicks)) continue;
    const p: ProcessInfo = { pid, ppid, comm, startTicks, ageS: Number.isFinite(uptime) ? Math.max(0, Math.round(uptime - startTicks / 100)) : 0 };
    if (comm.startsWith('runc') || comm.startsWith('containerd-shim')) {
      const cmdline = (await host.readBytes(host.procPath(pid, 'cmdline'))) ?? Buffer.alloc(0);
      p.args = Buffer.from(cmdline.subarray(0, 64 * 1024)).toString('utf8').split('\0').filter(Boolean).slice(0, 64);
      const cgroup = await host.readText(host.procPath(pid, 'cgroup'));
      const id = cgroup === undefined ? undefined : cgroupIdOf(cgroup.slice(0, 64 * 1024));
      if (id) p.cgroupId = id;
    }
    out.push(p);
  }
  return out;
}

/** Reads what an orphan holds: the mounts of its `runc init` (or of its shim's first child). */
export async function readHoldings(host: HostAccess, o: Orphan, procs: readonly ProcessInfo[], hostMounts: () => Promise<MountInfo[]>): Promise<Holdings | undefined> {
  const shimPids = new Set(o.shims.map((s) => s.pid));
  const pid = o.runcInits[0]?.pid ?? procs.find((p) => shimPids.has(p.ppid))?.pid;
  if (pid === undefined) return undefined;
  const own = await host.readBytes(host.procPath(pid, 'mountinfo'));
  if (!own) return undefined;
  return holdingsOf(pid, parseMountinfo(own), await hostMounts());
}

/** The host's mounts, read once however many orphans ask. */
export function hostMountsOnce(host: HostAccess): () => Promise<MountInfo[]> {
  let mounts: Promise<MountInfo[]> | undefined;
  return () =>
    (mounts ??= (async () => {
      const raw = (await host.readBytes(host.procPath('1', 'mountinfo'))) ?? (await host.readBytes(host.procPath('self', 'mountinfo')));
      return raw ? parseMountinfo(raw) : [];
    })());
}
