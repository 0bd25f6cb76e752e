// Who a process is, from its files under the host's /proc: comm, cmdline, container and pod (cgroup),
// soft nofile limit (limits). Pure parsers for each file, one pure function that puts them together,
// and one reader that the mounts and sockets collectors and who-holds share.
import { decodeBytes } from './text.js';
import type { HostAccess } from '../types.js';

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

/**
 * The pod UID in a kubelet cgroup name or path (`pod<uid>` in cgroupfs, `pod<uid with _>` in the
 * systemd driver's `kubepods-...-pod<uid>.slice`), with dashes; undefined when there is none.
 */
export function podUidIn(cgroupName: string): string | undefined {
  const m = POD_RE.exec(cgroupName);
  return m ? m[1]!.replace(/_/g, '-') : undefined;
}

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
    const podUid = podUidIn(cgPath);
    const runtime: ContainerRef['runtime'] =
      prefix === 'docker' ? 'docker' : prefix === 'cri-containerd' ? 'containerd' : prefix === 'crio' ? 'cri-o' : cgPath.includes('/docker/') ? 'docker' : 'unknown';
    const ref: ContainerRef = { containerId: m[2]!, runtime };
    if (podUid) ref.podUid = podUid;
    return ref;
  }
  return undefined;
}

/**
 * A process's cgroup for one v1 controller (`memory`, `pids`) from its /proc/PID/cgroup, else its v2
 * (`0::`) cgroup; undefined when it has neither.
 */
export function controllerCgroupOf(cgroupText: string, controller: string): { path: string; v2: boolean } | undefined {
  let v2: string | undefined;
  for (const line of cgroupText.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const p = line.slice(second + 1);
    if (line.slice(first + 1, second).split(',').includes(controller)) return { path: p, v2: false };
    if (line.startsWith('0::')) v2 = p;
  }
  return v2 !== undefined ? { path: v2, v2: true } : undefined;
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

/** A process as findings and who-holds show it. */
export interface ProcessDescription {
  pid: number;
  /** `?` when the process has gone. */
  comm: string;
  /** Empty for kernel threads and processes that have gone. */
  cmdline: string;
  containerId?: string;
  podUid?: string;
  /** Only when the limits file was read and the limit is not unlimited. */
  nofileSoft?: number;
}

/** The files a description is made from, as read; undefined for a file that could not be read. */
export interface ProcessFiles {
  comm?: Uint8Array | undefined;
  cmdline?: Uint8Array | undefined;
  cgroup?: string | undefined;
  limits?: string | undefined;
}

/** Pure: a process's description from its files. */
export function parseProcess(pid: number, files: ProcessFiles): ProcessDescription {
  const out: ProcessDescription = { pid, comm: files.comm ? parseComm(files.comm) : '?', cmdline: files.cmdline ? parseCmdline(files.cmdline) : '' };
  const soft = files.limits === undefined ? undefined : parseNofileSoftLimit(files.limits);
  if (soft !== undefined) out.nofileSoft = soft;
  const ref = files.cgroup ? parseCgroupContainer(files.cgroup) : undefined;
  if (ref) {
    out.containerId = ref.containerId;
    if (ref.podUid) out.podUid = ref.podUid;
  }
  return out;
}

/**
 * Reads and describes one process from the host's /proc (comm, cmdline, cgroup; limits only when
 * asked: it is the one file most callers do not need). A process that has gone is `?` with no cmdline.
 */
export async function describeProcess(host: HostAccess, pid: number, opts: { limits?: boolean } = {}): Promise<ProcessDescription> {
  const [comm, cmdline, cgroup, limits] = await Promise.all([
    host.readBytes(host.procPath(pid, 'comm')),
    host.readBytes(host.procPath(pid, 'cmdline')),
    host.readText(host.procPath(pid, 'cgroup')),
    opts.limits ? host.readText(host.procPath(pid, 'limits')) : Promise.resolve(undefined),
  ]);
  return parseProcess(pid, { comm, cmdline, cgroup, limits });
}

/** A process holding a mount: what the mounts findings and who-holds show of it. */
export interface Holder {
  pid: number;
  comm: string;
  cmdline: string;
  containerId?: string;
}

/** Describes a mount's holder (its description without pod or limit, which holders never showed). */
export async function describeHolder(host: HostAccess, pid: number): Promise<Holder> {
  const d = await describeProcess(host, pid);
  const h: Holder = { pid: d.pid, comm: d.comm, cmdline: d.cmdline };
  if (d.containerId) h.containerId = d.containerId;
  return h;
}
