// mounts: mounts of runtime storage, kubelet volumes or block devices that live on in a mount
// namespace other than the host's after the host let them go: the runbooks' "device or resource busy"
// when docker removes a container whose overlay another process's namespace still holds.
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { describeHolder, type Holder } from './common/process.js';
import { mountLine, readMountNamespaces, type MountNamespace } from './common/namespaces.js';
import type { MountInfo } from './common/mountinfo.js';
import { shellQuote } from './common/text.js';
import { confirmSuspects, heldFindings, suspectKey } from './common/confirm.js';
import type { Collector, RuntimeContainer } from './types.js';

export const mountsConfigSpec = s.object({
  watchRoots: s.list(s.string({ doc: 'directory' }), {
    default: ['/var/lib/docker', '/var/lib/containerd', '/run/containerd', '/run/docker', '/var/lib/kubelet/pods'],
    doc: 'runtime storage and kubelet volume roots: their mounts must not outlive the host\'s',
  }),
});
export type MountsConfig = Infer<typeof mountsConfigSpec>;

export type { Holder };

export interface LeakedMount {
  namespace: string;
  pids: number[];
  mount: MountInfo;
  reason: 'runtime-storage' | 'block-device';
}

export interface MountsData {
  namespaces: { id: string; host: boolean; processes: number; mounts: number }[];
  leaked: LeakedMount[];
  /** Suspects seen on the first read, and how many the second read after the settle window dismissed. */
  suspected: number;
  dismissed: number;
  /** Set while a runtime cannot be asked: how many runtime-storage mounts were left unjudged. */
  notJudged?: string;
}

const under = (p: string, root: string) => p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);

/**
 * Pure: mounts present in a non-host namespace but gone from the host's. Runtime storage and kubelet
 * volumes by mount point; block-device filesystems (major != 0) by device, wherever they are mounted.
 */
export function findLeakedMounts(namespaces: readonly MountNamespace[], config: MountsConfig): LeakedMount[] {
  const hostNs = namespaces.find((n) => n.host);
  if (!hostNs) return [];
  const hostPoints = new Set(hostNs.mounts.map((m) => m.mountPoint));
  const hostDevices = new Set(hostNs.mounts.map((m) => m.device));
  const out: LeakedMount[] = [];
  for (const ns of namespaces) {
    if (ns.host) continue;
    for (const m of ns.mounts) {
      const storage = config.watchRoots.some((r) => under(m.mountPoint, r));
      if (storage && !hostPoints.has(m.mountPoint)) {
        out.push({ namespace: ns.id, pids: ns.pids, mount: m, reason: 'runtime-storage' });
        continue;
      }
      const major = Number(m.device.split(':')[0]);
      if (major > 0 && !hostDevices.has(m.device)) out.push({ namespace: ns.id, pids: ns.pids, mount: m, reason: 'block-device' });
    }
  }
  return out;
}

/** A container that exists and is not dead or being removed: its own mounts are its business. */
function live(c: RuntimeContainer): boolean {
  if (c.docker) return !c.docker.dead && !c.docker.removing;
  return c.containerd?.task !== undefined && c.containerd.task.status !== 'STOPPED';
}

/**
 * Pure: whether a mount is part of a live container's own rootfs setup (`.../merged/dev`,
 * `/dev/shm`, `/sys/fs/cgroup`, `.../rootfs/proc` ...): runc mounts them in the container's namespace
 * below the rootfs before pivot_root, and takes them down with it. The container's business, never a
 * leak; a leak is a mount that outlives the container that owned it.
 */
export function ownRootfsMount(mountPoint: string, containers: readonly RuntimeContainer[]): boolean {
  return containers.some((c) => c.storage.mergedDir !== undefined && mountPoint.startsWith(`${c.storage.mergedDir}/`) && live(c));
}

/** `runc init` (comm `runc:[2:INIT]`, or its cmdline): a container between runc's setup and its start. */
export function isRuncInit(h: Pick<Holder, 'comm' | 'cmdline'> | undefined): boolean {
  if (!h) return false;
  return /^runc:\[\d:INIT\]$/.test(h.comm) || /^(\S*\/)?runc init\b/.test(h.cmdline);
}

/**
 * Pure: the leaked mounts that are a container being created, not a leak: a namespace whose holders
 * include `runc init` (runc mounted the container's /proc, /dev and cgroups below its rootfs and has
 * not started it yet; a creation stalled behind a frozen daemon stays so for minutes).
 */
export function creatingContainers(leaked: readonly LeakedMount[], holders: ReadonlyMap<number, Holder>): Set<string> {
  return new Set(leaked.filter((l) => l.pids.some((p) => isRuncInit(holders.get(p)))).map((l) => l.namespace));
}

/** Runtime storage among the watched roots: all but kubelet's. Leaks there need the runtime to judge them. */
export const runtimeRoots = (config: MountsConfig): string[] => config.watchRoots.filter((r) => !under(r, '/var/lib/kubelet'));

/** Pure: findings for leaked mounts, with their holders described. */
export function evaluateMounts(leaked: readonly LeakedMount[], holders: ReadonlyMap<number, Holder>, containers: readonly RuntimeContainer[]): Observation[] {
  return leaked.map((l) => {
    const hs = l.pids.map((p) => holders.get(p)).filter((h): h is Holder => h !== undefined);
    const first = hs[0];
    const holderText = hs
      .slice(0, 3)
      .map((h) => `${h.pid} (${h.comm})`)
      .join(', ');
    const owner = containers.find((c) => [c.storage.mergedDir, c.storage.upperDir].some((d) => d && (l.mount.mountPoint.startsWith(d.replace(/\/(diff|merged|fs)$/, '')) || l.mount.superOptions.some((o) => o.includes(d)))));
    const holderContainer = first?.containerId ? containers.find((c) => c.id === first.containerId) : undefined;
    const blocking = Boolean(owner?.docker && (owner.docker.dead || owner.docker.removing));
    const q = shellQuote(l.mount.mountPoint);
    const what = l.reason === 'block-device' ? `the ${l.mount.fsType} filesystem on ${l.mount.source} (${l.mount.device})` : `${l.mount.fsType} mount ${q}`;
    const obs: Observation = {
      check: 'mount.holder',
      severity: blocking ? 'critical' : 'warning',
      subject: `${l.namespace} ${l.mount.mountPoint}`,
      message:
        `${what} is gone from the host but still mounted at ${q} in mount namespace ${l.namespace}, held by ${hs.length} process${hs.length === 1 ? '' : 'es'} (${holderText}${hs.length > 3 ? ', ...' : ''})` +
        (holderContainer ? ` of container ${holderContainer.name}` : '') +
        (blocking ? `: removing container ${owner!.name} fails with "device or resource busy" until they let go.` : `: its device and storage cannot be freed ("device or resource busy").`),
      evidence: {
        namespace: l.namespace,
        mount: mountLine(l.mount),
        reason: l.reason,
        holders: hs.slice(0, 20).map((h) => ({ pid: h.pid, comm: h.comm, cmdline: h.cmdline, containerId: h.containerId ?? null })),
        owner: owner ? { container: owner.id, name: owner.name, state: owner.docker?.status ?? null } : null,
      },
      remedy: first
        ? `ps -f ${first.pid}; nsenter -t ${first.pid} -m umount ${q}  # or restart the holder${owner ? `; then docker rm -f ${owner.id.slice(0, 12)}` : ''}`
        : `grep -l ${q} /proc/*/mountinfo`,
    };
    const w = holderContainer?.workload ?? owner?.workload;
    if (w) obs.workload = w;
    return obs;
  });
}

export const mounts: Collector<MountsConfig, MountsData> = {
  name: 'mounts',
  description: 'Mounts of runtime storage, kubelet volumes or block devices that outlive the host\'s in other mount namespaces',
  checks: ['mount.holder'],
  conditions: { 'mount.holder': 'NodewardenMountHeld' },
  defaultIntervalMs: 60_000,
  defaultTimeoutMs: 20_000,
  waitsFor: ['runtime.timeout'],
  configSpec: mountsConfigSpec,
  async collect(ctx) {
    let data: MountsData | undefined;
    let noHostNs = false;
    /** Runtime-storage mounts left unjudged because a runtime could not be asked (subjects). */
    let unjudged: Set<string> | undefined;
    let notJudged: string | undefined;
    const { observations, suspected, dismissed } = await confirmSuspects(ctx, async (since) => {
      const namespaces = await readMountNamespaces(ctx.host);
      if (!namespaces.some((n) => n.host)) {
        noHostNs = true;
        return [];
      }
      let leaked = findLeakedMounts(namespaces, ctx.config);
      // The runtime is asked only when there is something to attribute (a frozen one answers at once, stale).
      const snap = leaked.length > 0 ? await ctx.runtime.snapshot(since === undefined ? {} : { since }) : undefined;
      const containers = snap?.containers ?? [];
      leaked = leaked.filter((l) => !ownRootfsMount(l.mount.mountPoint, containers));
      const holders = new Map<number, Holder>();
      for (const l of leaked) for (const pid of l.pids.slice(0, 20)) if (!holders.has(pid)) holders.set(pid, await describeHolder(ctx.host, pid));
      // A container being created (runc init holds the namespace) is not leaking.
      const creating = creatingContainers(leaked, holders);
      leaked = leaked.filter((l) => !creating.has(l.namespace));
      // While a runtime cannot be asked, it cannot say which of its containers exist: mounts of runtime
      // storage are not judged (those already firing stay), block devices and kubelet volumes still are.
      const blind = (snap?.runtimes ?? []).filter((r) => r.status !== 'ok' && r.status !== 'absent');
      unjudged = undefined;
      notJudged = undefined;
      if (blind.length > 0) {
        const roots = runtimeRoots(ctx.config);
        const held = leaked.filter((l) => l.reason === 'runtime-storage' && roots.some((r) => under(l.mount.mountPoint, r)));
        if (held.length > 0) {
          unjudged = new Set(held.map((l) => `${l.namespace} ${l.mount.mountPoint}`));
          notJudged = `${held.length} mount${held.length === 1 ? '' : 's'} of runtime storage not judged while ${blind.map((r) => `${r.name} is ${r.status}`).join(' and ')}`;
          leaked = leaked.filter((l) => !held.includes(l));
        }
      }
      data = { namespaces: namespaces.map((n) => ({ id: n.id, host: n.host, processes: n.pids.length, mounts: n.mounts.length })), leaked, suspected: 0, dismissed: 0 };
      const obs = evaluateMounts(leaked, holders, containers);
      // Same namespace, same holders, the same mount (its id): a namespace that ended or a mount that
      // was taken down and made again between the reads is not one lasting leak.
      return obs.map((observation, i) => ({ observation, facts: `${leaked[i]!.namespace}|${leaked[i]!.pids.join(',')}|${leaked[i]!.mount.mountId}` }));
    }, {
      // A suspect about an unjudged mount is carried as it was (neither confirmed nor dropped).
      unjudged: () => new Set([...(unjudged ?? [])].map((s) => suspectKey('mount.holder', s))),
    });
    if (noHostNs) return { kind: 'no-data', reason: "cannot read the host's mount namespace through pid 1 or 2 (the agent needs hostPID)" };
    const confirmedSubjects = new Set(observations.map((o) => o.subject));
    const d = data ?? { namespaces: [], leaked: [], suspected: 0, dismissed: 0 };
    // Held while unjudged: what was firing about them before keeps firing, unchanged.
    const kept = unjudged ? heldFindings(ctx.active?.() ?? [], 'mount.holder', unjudged, observations) : [];
    return {
      kind: 'ok',
      observations: [...observations, ...kept],
      data: { ...d, leaked: d.leaked.filter((l) => confirmedSubjects.has(`${l.namespace} ${l.mount.mountPoint}`)), suspected, dismissed, ...(notJudged ? { notJudged } : {}) },
    };
  },
};
