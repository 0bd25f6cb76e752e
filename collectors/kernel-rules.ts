// The kernel-log rules: one pure parser per kernel message, from the kernel's own formats (3.10 to 6.x),
// tested against captured lines (test/fixtures/kernel/kmsg-lines.txt). Each returns the facts of one
// line or undefined; the kernel collector joins them into events.

/** A fact one kernel line carries. */
export type KernelFact =
  /** "oom-kill:constraint=...,oom_memcg=...,task_memcg=...,task=...,pid=...,uid=..." (4.19+). */
  | { kind: 'oom-kill'; constraint: string; oomMemcg?: string; taskMemcg?: string; task?: string; pid?: number; uid?: number }
  /** "[Memory cgroup o|O]ut of memory: Kill(ed) process PID (comm) ... anon-rss:NkB, file-rss:NkB, shmem-rss:NkB" */
  | { kind: 'oom-killed'; memcg: boolean; pid: number; task: string; rssKb?: number; scoreOnly?: boolean }
  /** "Task in /A killed as a result of limit of /B" (before 4.19). */
  | { kind: 'oom-task-in'; taskMemcg: string; oomMemcg: string }
  /** "memory: usage NkB, limit NkB, failcnt N" (the cgroup's numbers in an OOM report). */
  | { kind: 'oom-memory'; usageKb: number; limitKb: number }
  /** "INFO: task comm:PID blocked for more than N seconds." */
  | { kind: 'hung-task'; task: string; pid: number; seconds: number }
  /** "BUG: soft lockup - CPU#N stuck for Ns! [comm:PID]" */
  | { kind: 'soft-lockup'; cpu: number; seconds: number; task?: string; pid?: number }
  /** "rcu: INFO: rcu_sched detected stalls on CPUs/tasks" / "self-detected stall on CPU" */
  | { kind: 'rcu-stall'; flavor: string }
  /** "EXT4-fs error (device X): ..." / "XFS (X): Corruption ..." / metadata I/O error / shutdown */
  | { kind: 'fs-error'; fs: 'ext4' | 'xfs'; device: string; detail: string; warning?: boolean }
  /** "EXT4-fs (X): Remounting filesystem read-only" / XFS shutdown */
  | { kind: 'fs-readonly'; fs: 'ext4' | 'xfs'; device: string }
  /** "[blk_update_request: ]I/O error, dev X, sector N" / "Buffer I/O error on dev X, logical block N" */
  | { kind: 'io-error'; device: string; sector?: number; block?: number }
  /** "nf_conntrack: [nf_conntrack: ]table full[ in netns N], dropping packet" (6.18 names the network namespace's inode) */
  | { kind: 'conntrack-full'; netns?: number }
  /** "NAME: N callbacks suppressed": the kernel itself dropped N lines (ratelimit). */
  | { kind: 'suppressed'; source: string; count: number }
  /** What an oops is about, the line before its header: "BUG: kernel NULL pointer dereference, address: X", "kernel BUG at F:N!", ... */
  | { kind: 'oops-cause'; cause: string }
  /** An oops (die()'s header): "Oops: 0000 [#1] SMP", "alignment check: 0000 [#1]", "Oops: divide error: 0000 [#1]", arm64's "Internal error: REASON: ESR [#1]" */
  | { kind: 'oops'; what: string; number: number }
  /** "------------[ cut here ]------------" or "---[ end trace ... ]---": a report starts or ends, so an oops line before it belongs to no header after it. */
  | { kind: 'trace-boundary' }
  /** The process a stack dump was taken in: "CPU: 3 [UID: 0 ]PID: 1234 Comm: kworker/3:1 Tainted: ..." (follows an oops header). */
  | { kind: 'cpu-comm'; cpu: number; pid: number; task: string }
  /** "unregister_netdevice: waiting for lo to become free. Usage count = 1" (a network namespace that cannot be torn down). */
  | { kind: 'netdev-busy'; device: string; usage: number }
  /** Memory or machine-check errors the hardware reported: EDAC CE/UE, "CE memory read error", MCE logged. */
  | { kind: 'hardware'; source: string; uncorrected: boolean; detail: string };

const OOM_KILL = /^oom-kill:(.*)$/;
const KILLED = /^(Memory cgroup out of memory|Out of memory(?: \(oom_kill_allocating_task\))?)?:? ?Kill(?:ed)? process (\d+) \(([^)]*)\)(.*)$/;
const KILLED_BARE = /^Killed process (\d+) \(([^)]*)\)(.*)$/;
const TASK_IN = /^Task in (\S+) killed as a result of limit of (\S+)/;
const MEMORY = /^memory: usage (\d+)kB, limit (\d+)kB/;
const HUNG = /^INFO: task (.+):(\d+) blocked for more than (\d+) seconds/;
const LOCKUP = /(?:^|: )BUG: soft lockup - CPU#(\d+) stuck for (\d+)s! \[(.+):(\d+)\]/;
const RCU = /^(?:rcu: )?INFO: (rcu_\w+|rcu_preempt|rcu_sched|rcu_bh|rcu_tasks\w*) (?:detected stalls?|self-detected stall)/;
const EXT4_ERR = /^EXT4-fs(?: warning)? error \(device ([^)]+)\): (.*)$/;
const EXT4_ERR2 = /^EXT4-fs error \(device ([^)]+)\) ?(?:in )?(.*)$/;
// "EXT4-fs warning (device sda1): ext4_dx_add_entry:2461: Directory (ino: 1234) index full, reach max htree level :2"
const EXT4_WARN = /^EXT4-fs warning \(device ([^)]+)\): (.*)$/;
const EXT4_RO = /^EXT4-fs \(([^)]+)\): Remounting filesystem read-only/;
const XFS = /^XFS \(([^)]+)\): (.*)$/;
const XFS_ERR = /Corruption|metadata I\/O error|Metadata corruption|I\/O Error Detected|xfs_do_force_shutdown|Filesystem has been shut down|Shutting down filesystem|log I\/O error/i;
const XFS_SHUT = /Filesystem has been shut down|Shutting down filesystem|shut down the filesystem|Please unmount the filesystem/i;
const IO = /(?:^|: )I\/O error, dev ([\w!./-]+), sector (\d+)/;
const BUF_IO = /^Buffer I\/O error on (?:dev(?:ice)? )?([\w!./-]+), logical block (\d+)/;
// Newer kernels (6.18 on this machine) say which network namespace's table is full: the count is per
// namespace against one global nf_conntrack_max, so a pod's namespace can be full while the node's is not.
const CONNTRACK = /(?:^|: )nf_conntrack: (?:nf_conntrack: )?table full(?: in netns (\d+))?, dropping packet/;
const SUPPRESSED = /^(\S+?):? (\d+) callbacks suppressed/;
// die()'s header: a reason, an error code in hex and the oops count. arm64 prints any reason after
// "Internal error: " ("Oops", "Oops - BUG", "synchronous external abort", "undefined instruction") with the
// ESR; x86 prints the trap's name ("alignment check", "int3", "kernel stack overflow (double-fault)",
// "general protection fault, probably for non-canonical address 0x..."), prefixed "Oops: " since 6.x, or
// "Oops: CODE" for a page fault. The x86 form holds the whole record (a short name from its start, only
// the kernel's upper-case flags after the count), so a driver message with ": 0000 [#1]" in it is not one.
const OOPS_ARM = /^Internal error: (.{1,120}?): ([0-9a-f]{1,16}) \[#(\d+)\]/;
// After "Oops: " the reason may start upper-case: ppc64's "Oops: Kernel access of bad area, sig: 11 [#1]".
const OOPS_NAME = '[a-z][\\w ,()./-]{0,119}?';
const OOPS_NAME_AFTER = '[A-Za-z][\\w ,()./-]{0,119}?';
const OOPS_X86 = new RegExp(`^(?:(?:Oops: )+(?:(${OOPS_NAME_AFTER}): )?|(${OOPS_NAME}): )([0-9a-f]{1,16}) \\[#(\\d+)\\](?:\\s+[A-Z][A-Z0-9_]*)*\\s*$`);
const TRACE_BOUNDARY = /^-+\[ (?:cut here \]-+$|end trace\b)/;
const OOPS_CAUSE = /^(?:BUG: (unable to handle .+|kernel NULL pointer dereference.*)|Unable to handle kernel (.+)|(kernel BUG at \S+!))$/;
const CPU_COMM = /^CPU: (\d+) (?:UID: \d+ )?PID: (\d+) Comm: (.+?) (?:Kdump: loaded )?(?:Not tainted|Tainted:)/;
const NETDEV = /^unregister_netdevice: waiting for (\S+) to become free\. Usage count = (-?\d+)/;
const EDAC = /^EDAC (\S+): (\d+) (CE|UE) (.+)$/;
const CE_READ = /CE memory read error/;
const MCE = /^(?:mce: )?\[Hardware Error\]: Machine check events logged/;

function kv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  // Values (cpuset, memcg paths) hold no commas; nodemask=(null) and mems_allowed=0-1 are single values.
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

function int(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** The process's resident set from "anon-rss:NkB, file-rss:NkB, shmem-rss:NkB" (kB), when given. */
export function parseRssKb(rest: string): number | undefined {
  let total = 0;
  let seen = false;
  for (const m of rest.matchAll(/\b(anon|file|shmem)-rss:(\d+)kB/g)) {
    total += Number(m[2]);
    seen = true;
  }
  return seen ? total : undefined;
}

/** The fact one kernel message line carries; undefined for lines no rule knows. Pure. */
export function parseKernelLine(message: string): KernelFact | undefined {
  const line = message.trimEnd();
  let m = OOM_KILL.exec(line);
  if (m) {
    const f = kv(m[1]!);
    const fact: KernelFact = { kind: 'oom-kill', constraint: f['constraint'] ?? 'CONSTRAINT_NONE' };
    if (f['oom_memcg']) fact.oomMemcg = f['oom_memcg'];
    if (f['task_memcg']) fact.taskMemcg = f['task_memcg'];
    if (f['task']) fact.task = f['task'];
    const pid = int(f['pid']);
    if (pid !== undefined) fact.pid = pid;
    const uid = int(f['uid']);
    if (uid !== undefined) fact.uid = uid;
    return fact;
  }
  m = KILLED.exec(line);
  if (m && (m[1] !== undefined || line.startsWith('Kill'))) {
    const rest = m[4] ?? '';
    const fact: KernelFact = { kind: 'oom-killed', memcg: (m[1] ?? '').startsWith('Memory cgroup'), pid: Number(m[2]), task: m[3]! };
    const rss = parseRssKb(rest);
    if (rss !== undefined) fact.rssKb = rss;
    // "Kill process N (x) score S or sacrifice child" (before 4.19) announces; "Killed process" is the kill.
    if (/score \d+ or sacrifice child/.test(rest)) fact.scoreOnly = true;
    return fact;
  }
  m = KILLED_BARE.exec(line);
  if (m) {
    const fact: KernelFact = { kind: 'oom-killed', memcg: false, pid: Number(m[1]), task: m[2]! };
    const rss = parseRssKb(m[3] ?? '');
    if (rss !== undefined) fact.rssKb = rss;
    return fact;
  }
  m = TASK_IN.exec(line);
  if (m) return { kind: 'oom-task-in', taskMemcg: m[1]!, oomMemcg: m[2]! };
  m = MEMORY.exec(line);
  if (m) return { kind: 'oom-memory', usageKb: Number(m[1]), limitKb: Number(m[2]) };
  m = HUNG.exec(line);
  if (m) return { kind: 'hung-task', task: m[1]!, pid: Number(m[2]), seconds: Number(m[3]) };
  m = LOCKUP.exec(line);
  if (m) return { kind: 'soft-lockup', cpu: Number(m[1]), seconds: Number(m[2]), task: m[3]!, pid: Number(m[4]) };
  m = RCU.exec(line);
  if (m) return { kind: 'rcu-stall', flavor: m[1]! };
  m = EXT4_RO.exec(line);
  if (m) return { kind: 'fs-readonly', fs: 'ext4', device: m[1]! };
  m = EXT4_WARN.exec(line);
  if (m) return { kind: 'fs-error', fs: 'ext4', device: m[1]!, detail: m[2]!.slice(0, 300), warning: true };
  m = EXT4_ERR.exec(line) ?? EXT4_ERR2.exec(line);
  if (m) return { kind: 'fs-error', fs: 'ext4', device: m[1]!, detail: m[2]!.slice(0, 300) };
  m = XFS.exec(line);
  if (m) {
    if (XFS_SHUT.test(m[2]!)) return { kind: 'fs-readonly', fs: 'xfs', device: m[1]! };
    if (XFS_ERR.test(m[2]!)) return { kind: 'fs-error', fs: 'xfs', device: m[1]!, detail: m[2]!.slice(0, 300) };
    return undefined;
  }
  m = IO.exec(line);
  if (m) return { kind: 'io-error', device: m[1]!, sector: Number(m[2]) };
  m = BUF_IO.exec(line);
  if (m) return { kind: 'io-error', device: m[1]!, block: Number(m[2]) };
  m = CONNTRACK.exec(line);
  if (m) return m[1] === undefined ? { kind: 'conntrack-full' } : { kind: 'conntrack-full', netns: Number(m[1]) };
  m = SUPPRESSED.exec(line);
  if (m) return { kind: 'suppressed', source: m[1]!, count: Number(m[2]) };
  m = OOPS_ARM.exec(line);
  // "Oops - BUG" says BUG; "Oops" alone is the default.
  if (m) return { kind: 'oops', what: m[1]!.replace(/^Oops - /, '').slice(0, 200), number: Number(m[3]) };
  m = OOPS_X86.exec(line);
  if (m) return { kind: 'oops', what: (m[1] ?? m[2] ?? 'Oops').slice(0, 200), number: Number(m[4]) };
  if (TRACE_BOUNDARY.test(line)) return { kind: 'trace-boundary' };
  m = OOPS_CAUSE.exec(line);
  if (m) return { kind: 'oops-cause', cause: (m[1] ?? (m[2] ? `unable to handle kernel ${m[2]}` : m[3]!)).slice(0, 200) };
  m = CPU_COMM.exec(line);
  if (m) return { kind: 'cpu-comm', cpu: Number(m[1]), pid: Number(m[2]), task: m[3]!.slice(0, 64) };
  m = NETDEV.exec(line);
  if (m) return { kind: 'netdev-busy', device: m[1]!.slice(0, 64), usage: Number(m[2]) };
  m = EDAC.exec(line);
  if (m) return { kind: 'hardware', source: `edac:${m[1]!.slice(0, 32)}`, uncorrected: m[3] === 'UE', detail: `${m[2]} ${m[3]} ${m[4]!}`.slice(0, 300) };
  if (CE_READ.test(line)) return { kind: 'hardware', source: 'memory', uncorrected: false, detail: line.slice(0, 300) };
  if (MCE.test(line)) return { kind: 'hardware', source: 'mce', uncorrected: false, detail: 'machine check events logged (mcelog or rasdaemon has them)' };
  return undefined;
}

/** The container id in a memcg path (docker's /docker/<id>, system.slice/docker-<id>.scope, kubepods v1/v2, cgroupfs/systemd). */
export function containerIdInMemcg(memcg: string): string | undefined {
  const m = /(?:^|\/)(?:(?:docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?(?:\/|$)/.exec(memcg);
  return m?.[1];
}

/** True for the root memcg or a path with no container or pod in it: the node, not a container's limit. */
export function isRootMemcg(memcg: string | undefined): boolean {
  return memcg === undefined || memcg === '/' || memcg === '';
}
