// who-holds: which processes hold a mount, by path, device or container. Reads each mount namespace
// once and describes its processes (pid, comm, cmdline, namespace, container and pod).
import { statSync } from 'node:fs';
import path from 'node:path';
import { NodewardenError } from '../../protocol/errors.js';
import type { Workload } from '../../protocol/finding.js';
import { mountLine, readMountNamespaces, type MountNamespace } from '../../collectors/common/namespaces.js';
import type { MountInfo } from '../../collectors/common/mountinfo.js';
import { describeHolder, type Holder } from '../../collectors/common/process.js';
import type { HostAccess, RuntimeAccess, RuntimeContainer } from '../../collectors/types.js';

export interface HoldingNamespace {
  namespace: string;
  host: boolean;
  processes: number;
  mounts: string[];
  /** Every process of a non-host namespace; for the host's, only the first few (it is all of them). */
  holders: (Holder & { workload?: Workload })[];
}

export interface WhoHolds {
  target: string;
  kind: 'device' | 'container' | 'path' | 'text';
  matchedBy: string[];
  namespaces: HoldingNamespace[];
}

export type Matcher = (m: MountInfo) => boolean;

function resolveContainer(target: string, containers: readonly RuntimeContainer[]): RuntimeContainer | undefined {
  return containers.find((c) => c.name === target || (target.length >= 6 && c.id.startsWith(target)));
}

/** What to look for: a device (major:minor), a container's storage, a path, or any text (as grep does). */
async function matcherFor(target: string, host: HostAccess, snapshot: () => Promise<{ containers: RuntimeContainer[] }>): Promise<{ kind: WhoHolds['kind']; needles: string[]; match: Matcher }> {
  if (target.startsWith('/dev/')) {
    let st;
    try {
      st = statSync(host.hostPath(target));
    } catch {
      throw new NodewardenError('NW_ERR_USAGE', `${target}: no such device`);
    }
    if (!st.isBlockDevice()) throw new NodewardenError('NW_ERR_USAGE', `${target}: not a block device`);
    const mm = `${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)}`;
    return { kind: 'device', needles: [mm, target], match: (m) => m.device === mm || m.source === target };
  }
  if (!target.startsWith('/')) {
    const snap = await snapshot();
    const c = resolveContainer(target, snap.containers);
    if (c) {
      const needles = containerNeedles(c);
      return { kind: 'container', needles, match: (m) => needles.some((n) => mountLine(m).includes(n)) };
    }
    return { kind: 'text', needles: [target], match: (m) => mountLine(m).includes(target) };
  }
  const p = target.replace(/\/+$/, '') || '/';
  const under = (x: string) => x === p || x.startsWith(`${p}/`);
  return {
    kind: 'path',
    needles: [p],
    match: (m) => under(m.mountPoint) || m.source === p || m.superOptions.some((o) => o.includes(p)) || (m.root !== '/' && under(m.root)),
  };
}

export async function whoHolds(target: string, host: HostAccess, runtime: RuntimeAccess, opts: { hostProcesses?: number } = {}): Promise<WhoHolds> {
  if (target.trim() === '') throw new NodewardenError('NW_ERR_USAGE', 'who-holds needs a path, a /dev device or a container id or name');
  // The runtime's view is asked for at most once, and while the namespaces are read.
  let snap: Promise<{ containers: RuntimeContainer[] }> | undefined;
  const snapshot = () => (snap ??= runtime.snapshot());
  const [{ kind, needles, match }, namespaces] = await Promise.all([matcherFor(target, host, snapshot), readMountNamespaces(host)]);
  return { target, kind, matchedBy: needles, namespaces: await holdingNamespaces(namespaces, match, host, snapshot, opts) };
}

/** The namespaces with a mount that `match` accepts, each with its processes described (pid, command, container, pod). */
export async function holdingNamespaces(
  namespaces: readonly MountNamespace[],
  match: Matcher,
  host: HostAccess,
  snapshot: () => Promise<{ containers: RuntimeContainer[] }>,
  opts: { hostProcesses?: number; maxHolders?: number } = {},
): Promise<HoldingNamespace[]> {
  const out: HoldingNamespace[] = [];
  for (const ns of namespaces) {
    const hits = ns.mounts.filter(match);
    if (hits.length === 0) continue;
    const pids = ns.host ? ns.pids.slice(0, opts.hostProcesses ?? 1) : ns.pids.slice(0, opts.maxHolders ?? Infinity);
    const holders: HoldingNamespace['holders'] = await Promise.all(pids.map((pid) => describeHolder(host, pid)));
    if (holders.some((h) => h.containerId)) {
      const { containers } = await snapshot();
      for (const h of holders) {
        const c = containers.find((x) => x.id === h.containerId);
        if (c) h.workload = c.workload;
      }
    }
    out.push({ namespace: ns.id, host: ns.host, processes: ns.pids.length, mounts: hits.map(mountLine), holders });
  }
  return out;
}

/** What names a container's storage in mount lines: its id and its layer directories' names. */
export function containerNeedles(c: RuntimeContainer): string[] {
  const dirs = [c.storage.upperDir, c.storage.mergedDir, c.storage.containerDir].filter((d): d is string => Boolean(d));
  const layers = dirs.map((d) => path.basename(path.dirname(d))).filter((l) => l.length >= 12);
  return [...new Set([c.id, ...layers])];
}
