// Mount namespaces: processes grouped by /proc/PID/ns/mnt, each namespace's mountinfo read once (the
// runbook greps every /proc/*/mountinfo: one read per process instead of one per namespace).
import { readlinkSync } from 'node:fs';
import { parseMountinfo, type MountInfo } from './mountinfo.js';
import type { HostAccess } from '../types.js';

export interface MountNamespace {
  /** "mnt:[4026531840]" */
  id: string;
  pids: number[];
  /** True for the host's namespace (pid 1's, or kthreadd's). */
  host: boolean;
  mounts: MountInfo[];
}

/** Reads every process's mount namespace and each namespace's mount table once. */
export async function readMountNamespaces(host: HostAccess): Promise<MountNamespace[]> {
  const pids = await host.pids();
  const byNs = new Map<string, number[]>();
  // One readlink per process, synchronously: on /proc it never blocks, and a thread-pool round trip
  // per process costs more than the syscall.
  for (const pid of pids) {
    let ns: string;
    try {
      ns = readlinkSync(host.procPath(pid, 'ns', 'mnt'));
    } catch {
      continue; // exited, or a kernel thread we may not read
    }
    const list = byNs.get(ns);
    if (list) list.push(pid);
    else byNs.set(ns, [pid]);
  }
  // The host's namespace is pid 1's; where pid 1 refuses (some VM inits do, even to root), kthreadd's
  // (pid 2): kernel threads always live in the initial mount namespace.
  let hostNs: string | undefined;
  for (const pid of [1, 2]) {
    try {
      hostNs = readlinkSync(host.procPath(pid, 'ns', 'mnt'));
      break;
    } catch {
      // try the next
    }
  }
  const out: MountNamespace[] = [];
  for (const [id, members] of byNs) {
    members.sort((a, b) => a - b);
    let mounts: MountInfo[] | undefined;
    // Any member's mountinfo describes the namespace; a member may exit while we read.
    for (const pid of members) {
      const raw = await host.readBytes(host.procPath(pid, 'mountinfo'));
      if (raw) {
        mounts = parseMountinfo(raw);
        break;
      }
    }
    if (mounts) out.push({ id, pids: members, host: id === hostNs, mounts });
  }
  return out.sort((a, b) => Number(b.host) - Number(a.host) || (a.pids[0] ?? 0) - (b.pids[0] ?? 0));
}

/** A mount as one line, like mountinfo's own, for evidence and output. */
export function mountLine(m: MountInfo): string {
  return `${m.mountId} ${m.parentId} ${m.device} ${m.root} ${m.mountPoint} ${m.mountOptions.join(',')} - ${m.fsType} ${m.source} ${m.superOptions.join(',')}`;
}
