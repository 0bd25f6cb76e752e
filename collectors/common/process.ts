// Parsers for per-process files: cgroup (container id), limits (nofile), cmdline, comm.
import { decodeBytes } from './text.js';

export interface ContainerRef {
  /** Full 64-hex container id. */
  containerId: string;
  /** Which runtime's cgroup naming it came from. */
  runtime: 'docker' | 'containerd' | 'cri-o' | 'unknown';
  /** The pod's UID when the cgroup path is a kubelet one. */
  podUid?: string;
}

// Matches the last component naming a container: `<id>`, `docker-<id>.scope`, `cri-containerd-<id>.scope`,
// `crio-<id>.scope`, `libpod-<id>.scope` (cgroup v1 and v2, cgroupfs and systemd drivers).
const CONTAINER_RE = /(?:^|\/)(?:(docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?(?:\/|$)/;
const POD_RE = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/;

/** The container a process runs in, from its /proc/PID/cgroup text; undefined for host processes. */
export function parseCgroupContainer(text: string): ContainerRef | undefined {
  for (const line of text.split('\n')) {
    // hierarchy-ID:controller-list:cgroup-path; the path may itself hold colons.
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const cgPath = line.slice(second + 1);
    const m = CONTAINER_RE.exec(cgPath);
    if (!m) continue;
    const prefix = m[1];
    const pod = POD_RE.exec(cgPath);
    const runtime: ContainerRef['runtime'] =
      prefix === 'docker' ? 'docker' : prefix === 'cri-containerd' ? 'containerd' : prefix === 'crio' ? 'cri-o' : cgPath.includes('/docker/') ? 'docker' : 'unknown';
    const ref: ContainerRef = { containerId: m[2]!, runtime };
    if (pod) ref.podUid = pod[1]!.replace(/_/g, '-');
    return ref;
  }
  return undefined;
}

/** The soft "Max open files" limit from /proc/PID/limits; undefined when unlimited or absent. */
export function parseNofileSoftLimit(text: string): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith('Max open files')) continue;
    const soft = line.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (soft === undefined || soft === 'unlimited') return undefined;
    const n = Number(soft);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

/** /proc/PID/cmdline: NUL-separated arguments, shown space-joined. */
export function parseCmdline(bytes: Uint8Array): string {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return decodeBytes(bytes.subarray(0, end)).replace(/\0/g, ' ');
}

/** /proc/PID/comm: the name, newline-terminated, possibly not UTF-8. */
export function parseComm(bytes: Uint8Array): string {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  return decodeBytes(bytes.subarray(0, end));
}
