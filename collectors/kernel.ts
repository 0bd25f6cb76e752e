// kernel: what the kernel log says happened on this node in the last `lookback`: OOM kills named by pod
// and container (and counted from the cgroup counters too), hung tasks, soft lockups and RCU stalls,
// filesystem errors and read-only remounts, block I/O errors, a full conntrack table. Records come from
// the agent's /dev/kmsg reader (agent/host/kmsg.ts); only the kernel's own records (facility 0) count,
// so nothing a process writes to /dev/kmsg can raise a finding. Events are coalesced per cause and
// subject (container, device) with a count and a rate, and resolve once `lookback` passes quietly.
import type { Evidence, Observation, Severity, Workload } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { containerIdInMemcg, isRootMemcg, parseKernelLine, type KernelFact } from './kernel-rules.js';
import { controllerCgroupOf, parseCgroupContainer, podUidIn } from './common/process.js';
import type { Collector, HostAccess, KmsgRecord, RuntimeContainer } from './types.js';

export const kernelConfigSpec = s.object({
  lookback: s.duration({ default: '10m', min: 1000, doc: 'kernel events this recent are reported (check reports the last lookback of the ring); an event finding resolves this long after its last event' }),
  cursorFile: s.string({ default: '/var/lib/nodewarden/kmsg-cursor.json', doc: "where the agent keeps its place in the kernel log (boot id + sequence number), in the agent's own filesystem; '' keeps no state (a restart re-reads the last lookback)" }),
  maxGroups: s.number({ default: 256, min: 8, integer: true, doc: 'distinct (cause, subject) events kept at once; the oldest go first, counted' }),
});
export type KernelConfig = Infer<typeof kernelConfigSpec>;

export type KernelCheck = 'kernel.oom' | 'kernel.systemOom' | 'kernel.hungTask' | 'kernel.lockup' | 'kernel.oops' | 'kernel.fsError' | 'kernel.fsReadonly' | 'kernel.ioError' | 'kernel.conntrackFull' | 'kernel.netdevice' | 'kernel.hardware' | 'kernel.logLoss';

/** One cause on one subject, coalesced: how many, when, and the facts of the last one. */
export interface KernelGroup {
  check: KernelCheck;
  subject: string;
  severity: Severity;
  count: number;
  firstMs: number;
  lastMs: number;
  /** The last event's facts, shown as evidence. */
  last: Evidence;
  /** The sentence for the last event, without counts. */
  text: string;
  remedy: string;
  workload?: Workload;
}

export interface KernelData {
  groups: KernelGroup[];
  /** Container id -> who it is, kept from earlier snapshots so a container gone by the time its OOM line is read is still named. */
  identities: [string, { name: string; workload: Workload; pid: number }][];
  /** Container id -> last oom_kill counter read from its memory cgroup. */
  counters: [string, number][];
  /** Records lost (ring overflow, sequence gaps) and lines the kernel suppressed, with when. */
  losses: { atMs: number; lost: number; suppressed: number }[];
  /** Groups dropped to keep maxGroups. */
  dropped: number;
  /** When the runtime model was last asked who the containers are (ms since epoch). */
  lookedAt?: number;
  /** The time of the newest runtime view this collector has used, its own or another collector's. */
  seenAt?: number;
  /** An oops the last read ended in the middle of, to be joined with the next read's lines. */
  oops?: OopsPending;
}

/**
 * An oops being put together when a read ended: its cause line still waiting for the header, or the header
 * still waiting for its "CPU: N PID: P Comm: C" line. One of each at most, by sequence number.
 */
export interface OopsPending {
  cause?: { cause: string; seq: number };
  header?: { seq: number; number: number; atMs: number };
}

/** The process line of an oops read before, to be added to its finding. */
export interface OopsLateComm {
  number: number;
  atMs: number;
  task: string;
  pid: number;
  cpu: number;
}

/**
 * How far (in records) a cause line may come before its oops header: arm64 prints about 12 records of
 * abort and page-table detail between them. Only another cause, header or report boundary in between
 * cuts it shorter.
 */
export const OOPS_CAUSE_RECORDS = 40;
/** How far the CPU line may come after the header ("Modules linked in:" and little else come between). */
export const OOPS_COMM_RECORDS = 10;

const MAX_IDENTITIES = 4096;
const SNAPSHOT_WAIT_MS = 500;
/**
 * Without an OOM line to attribute, who the containers are is asked at most this often (with one, at
 * once); in between, every newer view another collector read is used as it is (the runtime collector
 * reads one at least every 15 s, drift, pids, mounts and kubelet theirs). Every second was a full
 * runtime read on a busy node, where container events keep dropping the model's cached view; every
 * 5 s it was still 11 of the 18 runtime reads a minute under the soak's churn (about 90 docker inspects
 * and 130 gRPC calls a minute in all), the largest single cost of the agent there.
 */
export const IDENTITY_REFRESH_MS = 30_000;
const fmt = (n: number): string => n.toLocaleString('en-US');
const mib = (kb: number): string => `${(kb / 1024).toFixed(1)} MiB`;

/** One event parsed from the log, before it is coalesced. */
export interface KernelEvent {
  check: KernelCheck;
  subject: string;
  severity: Severity;
  atMs: number;
  text: string;
  remedy: string;
  evidence: Evidence;
  workload?: Workload;
  /** For OOM: the container the victim ran in, to be named from the runtime model. */
  containerId?: string;
  memcg?: string;
  pid?: number;
  /** For a hung task: the record's monotonic time (usec since boot), to tell its process from a reused pid. */
  bootUsec?: number;
}

/**
 * Turns kernel records into events. Pure: OOM reports span several lines (the cgroup's usage and limit,
 * "oom-kill:...", "Killed process ..."), joined here by position; so do an oops's cause, header and
 * process lines, also across reads: `pending` is what the previous read left unjoined, and the result's
 * `oops` what this one leaves; `late` is the process line of a header the previous read ended on.
 * Everything else is one line each. Records whose facility is not 0 (userspace writes to /dev/kmsg) are ignored.
 */
export function eventsFromRecords(records: readonly KmsgRecord[], pending?: OopsPending): { events: KernelEvent[]; suppressed: number; oops?: OopsPending; late?: OopsLateComm } {
  const events: KernelEvent[] = [];
  let suppressed = 0;
  let late: OopsLateComm | undefined;
  let memory: { usageKb: number; limitKb: number; seq: number } | undefined;
  let taskIn: { taskMemcg: string; oomMemcg: string; seq: number } | undefined;
  let lastOom: { ev: KernelEvent; seq: number } | undefined;
  let announced: { memcg: boolean; pid: number; seq: number } | undefined;
  let oopsCause: { cause: string; seq: number } | undefined = pending?.cause;
  let lastOops: { ev?: KernelEvent; seq: number; number: number; atMs: number } | undefined = pending?.header;
  for (const r of records) {
    if (r.facility !== 0) continue;
    const fact: KernelFact | undefined = parseKernelLine(r.message);
    if (!fact) continue;
    const at = r.wallMs;
    switch (fact.kind) {
      case 'suppressed':
        suppressed += fact.count;
        break;
      case 'oom-memory':
        memory = { usageKb: fact.usageKb, limitKb: fact.limitKb, seq: r.seq };
        break;
      case 'oom-task-in':
        taskIn = { taskMemcg: fact.taskMemcg, oomMemcg: fact.oomMemcg, seq: r.seq };
        break;
      case 'oom-kill': {
        const system = fact.constraint === 'CONSTRAINT_NONE' || isRootMemcg(fact.oomMemcg);
        const near = memory && r.seq - memory.seq < 500 ? memory : undefined;
        const ev = oomEvent(at, system, fact.taskMemcg, fact.oomMemcg, fact.task, fact.pid, undefined, near && !system ? near.limitKb : undefined, fact.constraint);
        events.push(ev);
        lastOom = { ev, seq: r.seq };
        memory = undefined;
        break;
      }
      case 'oom-killed': {
        if (fact.scoreOnly) {
          // Before 4.19: "Memory cgroup out of memory: Kill process N ... or sacrifice child", then a bare "Killed process N".
          announced = { memcg: fact.memcg, pid: fact.pid, seq: r.seq };
          break;
        }
        if (lastOom && lastOom.ev.pid === fact.pid && r.seq - lastOom.seq < 50) {
          // The same kill, second line: it brings the victim's RSS.
          if (fact.rssKb !== undefined) lastOom.ev.evidence['rss_kb'] = fact.rssKb;
          lastOom.ev.text = oomText(lastOom.ev);
          lastOom = undefined;
          break;
        }
        // Before 4.19 there is no oom-kill: line; "Task in X killed as a result of limit of Y" names the cgroups.
        const ti = taskIn && r.seq - taskIn.seq < 500 ? taskIn : undefined;
        const near = memory && r.seq - memory.seq < 500 ? memory : undefined;
        const ann = announced && announced.pid === fact.pid && r.seq - announced.seq < 50 ? announced : undefined;
        const memcgKill = fact.memcg || ann?.memcg === true || (ti !== undefined && !isRootMemcg(ti.oomMemcg));
        const system = !memcgKill || (ti !== undefined && isRootMemcg(ti.oomMemcg));
        announced = undefined;
        const ev = oomEvent(at, system, ti?.taskMemcg, ti?.oomMemcg, fact.task, fact.pid, fact.rssKb, near && !system ? near.limitKb : undefined, system ? 'CONSTRAINT_NONE' : 'CONSTRAINT_MEMCG');
        events.push(ev);
        lastOom = undefined;
        taskIn = undefined;
        memory = undefined;
        break;
      }
      case 'hung-task':
        events.push({
          check: 'kernel.hungTask', subject: `task:${fact.task}`, severity: 'warning', atMs: at, pid: fact.pid,
          text: `the kernel reports task ${fact.task} (pid ${fact.pid}) blocked in uninterruptible sleep (D state) for more than ${fact.seconds} seconds: it waits on I/O or a lock that does not come (a hung disk, NFS server or device-mapper device, a frozen filesystem).`,
          remedy: `cat /proc/${fact.pid}/stack; ps -eo pid,stat,wchan:32,comm | awk '$2 ~ /D/'  # what it waits on; check the storage behind it`,
          evidence: { task: fact.task, pid: fact.pid, blocked_seconds: fact.seconds },
          bootUsec: r.usec,
        });
        break;
      case 'oops-cause':
        oopsCause = { cause: fact.cause, seq: r.seq };
        lastOops = undefined;
        break;
      case 'trace-boundary':
        // A report starts or ends ("cut here", "end trace"): what came before belongs to no header after.
        oopsCause = undefined;
        lastOops = undefined;
        break;
      case 'oops': {
        // The cause comes before the header ("BUG: kernel NULL pointer dereference, ..." the line before on
        // x86, "Unable to handle kernel ..." about 12 records before on arm64); the process after it
        // ("CPU: 1 PID: 1234 Comm: x ..."), joined below by position.
        const cause = oopsCause && r.seq > oopsCause.seq && r.seq - oopsCause.seq <= OOPS_CAUSE_RECORDS ? oopsCause.cause : undefined;
        oopsCause = undefined;
        const ev: KernelEvent = {
          check: 'kernel.oops', subject: 'oops', severity: 'critical', atMs: at,
          text: '',
          remedy: "dmesg -T | grep -B5 -A40 -E 'Oops|BUG:|general protection'  # the stack names the code: a kernel or driver bug, or bad memory; the kernel is now tainted and may fail again: drain the node, reboot it, and check for a kernel update",
          evidence: { oops: fact.what, oops_number: fact.number, ...(cause ? { cause } : {}) },
        };
        ev.text = oopsText(ev.evidence);
        events.push(ev);
        lastOops = { ev, seq: r.seq, number: fact.number, atMs: at };
        break;
      }
      case 'cpu-comm':
        if (lastOops && r.seq > lastOops.seq && r.seq - lastOops.seq <= OOPS_COMM_RECORDS) {
          if (!lastOops.ev) {
            late = { number: lastOops.number, atMs: lastOops.atMs, task: fact.task, pid: fact.pid, cpu: fact.cpu };
          } else if (lastOops.ev.evidence['task'] === undefined) {
            Object.assign(lastOops.ev.evidence, { task: fact.task, pid: fact.pid, cpu: fact.cpu });
            lastOops.ev.text = oopsText(lastOops.ev.evidence);
          }
        }
        lastOops = undefined;
        break;
      case 'netdev-busy':
        events.push({
          check: 'kernel.netdevice', subject: `netdev:${fact.device}`, severity: 'warning', atMs: at,
          text: `the kernel cannot free network device ${fact.device} (usage count ${fact.usage}): a network namespace being torn down is still referenced, and the kernel waits for it; while it does, creating and deleting network namespaces on this node can hang (pods stuck in ContainerCreating or Terminating, a runtime that stops answering).`,
          remedy: "dmesg -T | grep unregister_netdevice | tail -5; ip -all netns list | wc -l  # a kernel bug that leaks a reference (often lo of a deleted pod's namespace): drain the node and reboot it; a newer kernel fixes most known causes",
          evidence: { device: fact.device, usage_count: fact.usage },
        });
        break;
      case 'hardware':
        events.push({
          check: 'kernel.hardware', subject: fact.uncorrected ? `${fact.source}:uncorrected` : fact.source, severity: fact.uncorrected ? 'critical' : 'warning', atMs: at,
          text: fact.uncorrected
            ? `the hardware reported an uncorrected memory error (${fact.detail}): data in memory was lost; processes using it may have been killed and the node may crash.`
            : fact.source === 'mce'
              ? 'the CPU reported machine check events: hardware errors (memory, cache or bus) that it corrected or logged.'
              : `the hardware corrected a memory error (${fact.detail}): corrected errors that keep coming announce a failing DIMM.`,
          remedy: fact.source === 'mce'
            ? 'journalctl -k | grep -i mce; ras-mc-ctl --errors  # which component; replace it if errors repeat'
            : 'grep . /sys/devices/system/edac/mc/mc*/{ce,ue}_count; ras-mc-ctl --errors  # which DIMM; plan its replacement (drain the node first)',
          evidence: { source: fact.source, uncorrected: fact.uncorrected, detail: fact.detail },
        });
        break;
      case 'soft-lockup':
        events.push({
          check: 'kernel.lockup', subject: 'soft-lockup', severity: 'critical', atMs: at,
          text: `the kernel reports a soft lockup: CPU#${fact.cpu} was stuck for ${fact.seconds}s${fact.task ? ` running ${fact.task} (pid ${fact.pid})` : ''}; nothing else could run on that CPU meanwhile.`,
          remedy: "dmesg -T | grep -A30 'soft lockup'  # the stack names the code; an overloaded hypervisor (steal time) or a kernel bug",
          evidence: { cpu: fact.cpu, stuck_seconds: fact.seconds, ...(fact.task ? { task: fact.task, pid: fact.pid ?? null } : {}) },
        });
        break;
      case 'rcu-stall':
        events.push({
          check: 'kernel.lockup', subject: 'rcu-stall', severity: 'critical', atMs: at,
          text: `the kernel reports an RCU stall (${fact.flavor}): a CPU did not pass a quiescent state in time; the node may freeze.`,
          remedy: "dmesg -T | grep -A40 'rcu.*stall'  # the stack names the code; check steal time and the hypervisor",
          evidence: { flavor: fact.flavor },
        });
        break;
      case 'fs-error':
        if (fact.warning) {
          // ext4's warnings (a directory index full, an I/O error writing an inode): a finding of their own
          // per device, so an error on the same device is never lowered to a warning by coalescing.
          events.push({
            check: 'kernel.fsError', subject: `${fact.device}:warning`, severity: 'warning', atMs: at,
            text: `the kernel warns about the ${fact.fs} filesystem on ${fact.device}: ${fact.detail}`,
            remedy: `findmnt -S /dev/${fact.device}; dmesg -T | grep 'EXT4-fs warning (device ${fact.device})' | tail  # a full directory index fails file creation in that directory; I/O errors point at the disk (smartctl -a)`,
            evidence: { fs: fact.fs, device: fact.device, detail: fact.detail, level: 'warning' },
          });
          break;
        }
        events.push({
          check: 'kernel.fsError', subject: fact.device, severity: 'critical', atMs: at,
          text: `the kernel reports an ${fact.fs} error on ${fact.device}: ${fact.detail}`,
          remedy: `findmnt -S /dev/${fact.device}; plan an fsck (e2fsck -f / xfs_repair) of /dev/${fact.device} with the filesystem unmounted; check the disk (smartctl -a)`,
          evidence: { fs: fact.fs, device: fact.device, detail: fact.detail },
        });
        break;
      case 'fs-readonly':
        events.push({
          check: 'kernel.fsReadonly', subject: fact.device, severity: 'critical', atMs: at,
          text: fact.fs === 'xfs' ? `the kernel shut down the xfs filesystem on ${fact.device} after an error: every write to it fails.` : `the kernel remounted the ext4 filesystem on ${fact.device} read-only after an error: every write to it fails.`,
          remedy: `findmnt -S /dev/${fact.device}; dmesg -T | grep ${fact.device}  # the error before it; repair (fsck) then remount, or replace the disk`,
          evidence: { fs: fact.fs, device: fact.device },
        });
        break;
      case 'io-error':
        // Empty virtual CD-ROM and floppy drives log I/O errors on healthy VMs all day: not a disk.
        if (/^(sr|fd)\d+$/.test(fact.device)) break;
        events.push({
          check: 'kernel.ioError', subject: fact.device, severity: 'warning', atMs: at,
          text: `the kernel reports I/O errors on ${fact.device}${fact.sector !== undefined ? ` (sector ${fact.sector})` : fact.block !== undefined ? ` (logical block ${fact.block})` : ''}: the device failed reads or writes.`,
          remedy: `smartctl -a /dev/${fact.device}; dmesg -T | grep ${fact.device}  # a failing disk, cable or volume attachment`,
          evidence: { device: fact.device, ...(fact.sector !== undefined ? { sector: fact.sector } : {}), ...(fact.block !== undefined ? { block: fact.block } : {}) },
        });
        break;
      case 'conntrack-full':
        // The count is per network namespace (against the one global max): a line that names the
        // namespace sends the reader there, since the node's own count may be low.
        events.push(fact.netns === undefined ? {
          check: 'kernel.conntrackFull', subject: 'nf_conntrack', severity: 'critical', atMs: at,
          text: 'the conntrack table is full: the kernel drops packets of new connections (Services and NAT stop working for them).',
          remedy: 'cat /proc/sys/net/netfilter/nf_conntrack_count /proc/sys/net/netfilter/nf_conntrack_max; conntrack -S; raise net.netfilter.nf_conntrack_max or find who opens so many connections',
          evidence: {},
        } : {
          check: 'kernel.conntrackFull', subject: `nf_conntrack:netns:${fact.netns}`, severity: 'critical', atMs: at,
          text: `the conntrack table of network namespace ${fact.netns} is full: the kernel drops packets of new connections there (its count is its own, against the node-wide net.netfilter.nf_conntrack_max).`,
          remedy: `lsns -t net | awk '$1 == ${fact.netns}'  # a process in that namespace (PID column); then nsenter -t PID -n cat /proc/sys/net/netfilter/nf_conntrack_count /proc/sys/net/netfilter/nf_conntrack_max; raise net.netfilter.nf_conntrack_max or find who opens so many connections`,
          evidence: { netns: fact.netns },
        });
        break;
    }
  }
  // What is left for the next read, while it can still be joined: the sequence numbers run on across reads.
  const lastSeq = records.length > 0 ? records[records.length - 1]!.seq : undefined;
  const oops: OopsPending = {};
  if (oopsCause && (lastSeq === undefined || (lastSeq >= oopsCause.seq && lastSeq - oopsCause.seq < OOPS_CAUSE_RECORDS))) oops.cause = oopsCause;
  if (lastOops && (lastSeq === undefined || (lastSeq >= lastOops.seq && lastSeq - lastOops.seq < OOPS_COMM_RECORDS))) oops.header = { seq: lastOops.seq, number: lastOops.number, atMs: lastOops.atMs };
  return { events, suppressed, ...(oops.cause || oops.header ? { oops } : {}), ...(late ? { late } : {}) };
}

/**
 * Adds a process line read late to the oops finding it belongs to (the header was the end of the last
 * read): the group whose last oops is that one and names no process yet. Pure (mutates data).
 */
export function addLateOopsComm(data: KernelData, late: OopsLateComm): void {
  const g = data.groups.find((x) => x.check === 'kernel.oops' && x.lastMs === late.atMs && x.last['oops_number'] === late.number && x.last['task'] === undefined);
  if (!g) return;
  g.last = { ...g.last, task: late.task, pid: late.pid, cpu: late.cpu };
  g.text = oopsText(g.last);
}

function oopsText(e: Evidence): string {
  const what = String(e['oops']) === 'Oops' ? 'an oops' : `an oops (${String(e['oops'])})`;
  const cause = typeof e['cause'] === 'string' ? `: ${e['cause']}` : '';
  const who = typeof e['task'] === 'string' ? ` in ${e['task']} (pid ${String(e['pid'])}, CPU ${String(e['cpu'])})` : '';
  return `the kernel had ${what}${who}${cause}. The kernel is now tainted: what the faulting code held (locks, memory) may stay held, and the node may hang or fail again.`;
}

function oomText(ev: KernelEvent): string {
  const e = ev.evidence;
  const who = `process ${String(e['task'] ?? '?')} (pid ${String(e['pid'] ?? '?')})`;
  const rss = typeof e['rss_kb'] === 'number' ? ` using ${mib(e['rss_kb'])}` : '';
  if (ev.check === 'kernel.systemOom') {
    return `the node ran out of memory (system OOM, not a container limit): the kernel killed ${who}${rss}.`;
  }
  const limit = typeof e['limit_bytes'] === 'number' ? ` of ${mib(e['limit_bytes'] / 1024)}` : '';
  return `the kernel OOM-killed ${who}${rss} at its container's memory limit${limit}.`;
}

function oomEvent(at: number, system: boolean, taskMemcg: string | undefined, oomMemcg: string | undefined, task: string | undefined, pid: number | undefined, rssKb: number | undefined, limitKb: number | undefined, constraint: string): KernelEvent {
  const containerId = taskMemcg ? containerIdInMemcg(taskMemcg) : undefined;
  const evidence: Evidence = { constraint, task: task ?? null, pid: pid ?? null, task_memcg: taskMemcg ?? null, oom_memcg: oomMemcg ?? null, source: 'kmsg' };
  if (rssKb !== undefined) evidence['rss_kb'] = rssKb;
  if (limitKb !== undefined) evidence['limit_bytes'] = limitKb * 1024;
  const ev: KernelEvent = {
    check: system ? 'kernel.systemOom' : 'kernel.oom',
    subject: system ? 'node' : containerId ?? taskMemcg ?? 'unknown-cgroup',
    severity: system ? 'critical' : 'warning',
    atMs: at,
    text: '',
    remedy: system
      ? "free -m; ps aux --sort=-rss | head  # the node ran out: set memory requests/limits so the scheduler sees it, reserve memory for the system (kubelet --system-reserved), or add memory"
      : 'kubectl describe pod POD  # raise the container\'s memory limit, or find why it grows (a leak, a cache without a bound)',
    evidence,
  };
  if (containerId) ev.containerId = containerId;
  if (taskMemcg) ev.memcg = taskMemcg;
  if (pid !== undefined) ev.pid = pid;
  ev.text = oomText(ev);
  return ev;
}

/**
 * Pure: whether /proc/PID/stat (`stat`) is still the process a hung-task line named: the same comm, and
 * started before it was blocked (the line says it has been blocked `seconds` by the record's time
 * `bootUsec`), so a pid reused since by another process is not taken for it. starttime is field 22, in
 * clock ticks since boot (USER_HZ is 100 on Linux). The two clocks differ: the record's is the kernel's
 * local_clock, which stops while the machine is suspended, and starttime is CLOCK_BOOTTIME, which does
 * not. After a suspend starttime reads later than the record's clock would say, so the comparison can
 * only fail to name a process (it is then named by comm and pid, no container), never name another one.
 */
export function isHungProcess(stat: string | undefined, task: string, seconds: number, bootUsec: number): boolean {
  if (!stat) return false;
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  if (open < 0 || close < open) return false;
  if (stat.slice(open + 1, close) !== task) return false;
  const startTicks = Number(stat.slice(close + 2).split(' ')[19]);
  if (!Number.isFinite(startTicks)) return false;
  // One second of slack: the kernel's check and the tick count are both coarse.
  return startTicks * 10_000 <= bootUsec - seconds * 1_000_000 + 1_000_000;
}

/** Hung tasks whose container is looked up per run at most; a flood of them names the rest by process only. */
export const MAX_HUNG_LOOKUPS = 32;

/**
 * Names the container of each hung task still blocked (the kernel reports one only after `seconds` in D
 * state, so it is usually still there when its line is read): its /proc/PID/cgroup. The subject becomes
 * the task in that container, so one hung task per container and cause is one finding.
 */
async function attributeHungTasks(host: HostAccess, events: KernelEvent[], identities: ReadonlyMap<string, { workload: Workload }>): Promise<void> {
  let asked = 0;
  for (const ev of events) {
    if (ev.check !== 'kernel.hungTask' || ev.pid === undefined || ev.bootUsec === undefined) continue;
    if (++asked > MAX_HUNG_LOOKUPS) break;
    const task = String(ev.evidence['task']);
    const stat = await host.readText(host.procPath(ev.pid, 'stat')).catch(() => undefined);
    if (!isHungProcess(stat, task, Number(ev.evidence['blocked_seconds']), ev.bootUsec)) continue;
    const ref = parseCgroupContainer((await host.readText(host.procPath(ev.pid, 'cgroup')).catch(() => undefined)) ?? '');
    if (!ref) continue;
    ev.containerId = ref.containerId;
    ev.subject = `task:${task}@${ref.containerId}`;
    ev.evidence['container_id'] = ref.containerId;
    ev.workload = identities.get(ref.containerId)?.workload ?? { containerId: ref.containerId, ...(ref.podUid ? { podUid: ref.podUid } : {}) };
    const short = ref.containerId.slice(0, 12);
    ev.remedy = `cat /proc/${ev.pid}/stack; docker inspect --format '{{json .Mounts}}' ${short} 2>/dev/null || crictl inspect ${short} | grep -A30 '"mounts"'  # what it waits on, and the container's volumes: the storage behind one of them`;
  }
}

/** The memory cgroup path of a process from its /proc/PID/cgroup (v1 memory controller, else v2). Pure. */
export function memcgOf(cgroupText: string): { path: string; v2: boolean } | undefined {
  return controllerCgroupOf(cgroupText, 'memory');
}

/** oom_kill from memory.events (v2) or memory.oom_control (v1). Pure. */
export function parseOomKillCounter(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** A cgroup's memory limit in bytes (memory.max / memory.limit_in_bytes); undefined when unlimited or unknown. */
export function parseMemoryLimit(text: string | undefined): number | undefined {
  const t = text?.trim();
  if (!t || t === 'max') return undefined;
  const n = Number(t);
  // v1 says "unlimited" with a huge page-aligned number.
  return Number.isFinite(n) && n > 0 && n < 2 ** 62 ? n : undefined;
}

function memcgFile(host: HostAccess, memcg: string, v2: boolean, file: string): string {
  return v2 ? host.sysPath('fs', 'cgroup', ...memcg.split('/').filter(Boolean), file) : host.sysPath('fs', 'cgroup', 'memory', ...memcg.split('/').filter(Boolean), file);
}

/** Coalesces events into groups and turns the groups within lookback into observations. Pure. */
export function evaluateKernel(data: KernelData, now: number, config: KernelConfig): Observation[] {
  const out: Observation[] = [];
  const since = now - config.lookback;
  const recentLoss = data.losses.filter((l) => l.atMs >= since);
  const lost = recentLoss.reduce((a, l) => a + l.lost, 0);
  const suppressed = recentLoss.reduce((a, l) => a + l.suppressed, 0);
  const window = `${Math.round(config.lookback / 60_000)} min`;
  for (const g of data.groups) {
    if (g.lastMs < since) continue;
    const minutes = Math.max(1, (g.lastMs - g.firstMs) / 60_000);
    const rate = g.count > 1 ? ` (${fmt(g.count)} times since ${new Date(g.firstMs).toISOString()}, ${(g.count / minutes).toFixed(1)}/min)` : '';
    const evidence: Evidence = { ...g.last, count: g.count, first_at: new Date(g.firstMs).toISOString(), last_at: new Date(g.lastMs).toISOString() };
    if (lost > 0 || suppressed > 0) evidence['kmsg_lost_records'] = lost, evidence['kmsg_suppressed_lines'] = suppressed;
    const subjectName = g.workload ? describeWorkload(g.workload) : undefined;
    const obs: Observation = {
      check: g.check,
      severity: g.severity,
      subject: g.subject,
      message: `${subjectName ? `${subjectName}: ` : ''}${capitalize(g.text)}${rate}`,
      evidence,
      remedy: g.remedy,
    };
    if (g.workload) obs.workload = g.workload;
    out.push(obs);
  }
  if (lost > 0 || suppressed > 0 || data.dropped > 0) {
    out.push({
      check: 'kernel.logLoss',
      severity: 'info',
      subject: 'kmsg',
      message: `Kernel log records were lost in the last ${window}: ${fmt(lost)} overwritten in the ring before they were read, ${fmt(suppressed)} suppressed by the kernel's rate limit${data.dropped > 0 ? `, ${fmt(data.dropped)} event groups dropped past collectors.kernel.maxGroups` : ''}; kernel events may be missing from the other findings.`,
      evidence: { lost_records: lost, suppressed_lines: suppressed, dropped_groups: data.dropped },
      remedy: 'dmesg -T | tail -100  # what floods the log; the cgroup OOM counters still count kills the log lost',
    });
  }
  return out;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function describeWorkload(w: Workload): string {
  if (w.pod) return `Container ${w.containerName ?? '?'} of pod ${w.namespace ?? '?'}/${w.pod}`;
  if (w.containerName) return `Container ${w.containerName}`;
  if (w.podUid) return `A container of pod UID ${w.podUid}`;
  return `Container ${(w.containerId ?? '?').slice(0, 12)}`;
}

/** Adds events to the groups (per check and subject), bounded by maxGroups. Pure (mutates data). */
export function coalesce(data: KernelData, events: readonly KernelEvent[], maxGroups: number): void {
  const byKey = new Map(data.groups.map((g) => [`${g.check}\0${g.subject}`, g]));
  for (const ev of events) {
    const key = `${ev.check}\0${ev.subject}`;
    const g = byKey.get(key);
    if (g) {
      g.count++;
      g.lastMs = Math.max(g.lastMs, ev.atMs);
      g.firstMs = Math.min(g.firstMs, ev.atMs);
      g.last = ev.evidence;
      g.text = ev.text;
      g.severity = ev.severity;
      if (ev.workload) g.workload = ev.workload;
      continue;
    }
    const ng: KernelGroup = { check: ev.check, subject: ev.subject, severity: ev.severity, count: 1, firstMs: ev.atMs, lastMs: ev.atMs, last: ev.evidence, text: ev.text, remedy: ev.remedy };
    if (ev.workload) ng.workload = ev.workload;
    byKey.set(key, ng);
  }
  let groups = [...byKey.values()].sort((a, b) => a.lastMs - b.lastMs);
  if (groups.length > maxGroups) {
    data.dropped += groups.length - maxGroups;
    groups = groups.slice(groups.length - maxGroups);
  }
  data.groups = groups;
}

export const kernel: Collector<KernelConfig, KernelData> = {
  name: 'kernel',
  description: 'The kernel log (/dev/kmsg, kernel records only): OOM kills by pod and container, hung tasks, lockups, oopses, filesystem and I/O errors, conntrack table full, network devices that cannot be freed, memory errors',
  checks: ['kernel.oom', 'kernel.systemOom', 'kernel.hungTask', 'kernel.lockup', 'kernel.oops', 'kernel.fsError', 'kernel.fsReadonly', 'kernel.ioError', 'kernel.conntrackFull', 'kernel.netdevice', 'kernel.hardware', 'kernel.logLoss'],
  conditions: {
    'kernel.oom': null, // an event: the Pod gets it, the node is fine
    'kernel.systemOom': null,
    'kernel.hungTask': 'KernelDeadlock',
    'kernel.lockup': null,
    'kernel.oops': null,
    'kernel.netdevice': null,
    'kernel.hardware': null,
    'kernel.fsError': null,
    'kernel.fsReadonly': 'ReadonlyFilesystem',
    'kernel.ioError': null,
    'kernel.conntrackFull': null,
    'kernel.logLoss': null,
  },
  defaultIntervalMs: 1_000,
  defaultTimeoutMs: 5_000,
  configSpec: kernelConfigSpec,
  async collect(ctx) {
    const { host, config } = ctx;
    if (!ctx.kmsg) return { kind: 'no-data', reason: 'no kernel log reader in this process' };
    const now = ctx.now();
    const prev = ctx.previous;
    const data: KernelData = {
      groups: prev ? prev.groups.map((g) => ({ ...g })) : [],
      identities: prev?.identities ?? [],
      counters: prev?.counters ?? [],
      losses: (prev?.losses ?? []).filter((l) => l.atMs >= now - config.lookback),
      dropped: prev?.dropped ?? 0,
    };
    if (prev?.oops) data.oops = prev.oops;
    const batch = await ctx.kmsg.read();
    if (batch.status === 'absent') return { kind: 'no-data', reason: batch.error ?? 'no /dev/kmsg' };
    if (batch.status === 'error' && batch.records.length === 0) return { kind: 'unavailable', reason: `the kernel log reader: ${batch.error ?? 'error'} (it reopens /dev/kmsg next run)` };

    // Only what is recent counts (a one-shot check reads the whole ring).
    const recent = batch.records.filter((r) => r.wallMs >= now - config.lookback);
    const { events, suppressed, oops, late } = eventsFromRecords(recent, data.oops);
    // An oops whose lines this read ended among joins with the next read's (one cause and one header at most).
    if (oops) data.oops = oops;
    else delete data.oops;
    if (late) addLateOopsComm(data, late);
    if (batch.lost > 0 || suppressed > 0) data.losses.push({ atMs: now, lost: batch.lost, suppressed });
    if (data.losses.length > 1000) data.losses.splice(0, data.losses.length - 1000);

    // Who each container is, remembered across snapshots: an OOM-killed pid 1 ends its container, which
    // may be gone (docker run --rm) by the time the line is read.
    // Never wait on a slow runtime here (the log must keep being read every second): past 500 ms this
    // run names containers from what earlier snapshots showed, and the next run gets the cached view.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const oomNow = events.some((e) => e.check === 'kernel.oom' || e.check === 'kernel.systemOom' || e.check === 'kernel.hungTask');
    const look = oomNow || prev?.lookedAt === undefined || now - prev.lookedAt >= IDENTITY_REFRESH_MS;
    data.lookedAt = look ? now : prev?.lookedAt;
    const borrowed = look ? undefined : ctx.runtime.latest?.();
    const snapshot = look ? ctx.runtime.snapshot() : Promise.resolve(borrowed && borrowed.takenAt > (prev?.seenAt ?? 0) ? borrowed : undefined);
    const snap = await Promise.race([snapshot, new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), SNAPSHOT_WAIT_MS);
    })]).finally(() => clearTimeout(timer));
    if (!snap) snapshot.catch(() => undefined);
    data.seenAt = snap ? Math.max(snap.takenAt, prev?.seenAt ?? 0) : prev?.seenAt;
    const containers = snap?.containers ?? [];
    const identities = new Map(data.identities);
    const byId = new Map<string, RuntimeContainer>();
    for (const c of containers) {
      byId.set(c.id, c);
      const pid = c.docker?.pid || c.containerd?.task?.pid || 0;
      identities.delete(c.id);
      identities.set(c.id, { name: c.name, workload: { ...c.workload, containerId: c.id }, pid });
    }
    while (identities.size > MAX_IDENTITIES) identities.delete(identities.keys().next().value as string);
    data.identities = [...identities];
    await attributeHungTasks(host, events, identities);

    const killsByContainer = new Map<string, number>();
    const limits = new Map<string, number | undefined>();
    for (const ev of events) {
      if (ev.check !== 'kernel.oom' && ev.check !== 'kernel.systemOom') continue;
      const id = ev.containerId;
      if (id) {
        killsByContainer.set(id, (killsByContainer.get(id) ?? 0) + 1);
        const who = identities.get(id);
        const live = byId.get(id);
        ev.workload = who ? { ...who.workload } : { containerId: id, ...(ev.memcg && podUidIn(ev.memcg) ? { podUid: podUidIn(ev.memcg)! } : {}) };
        if (who && ev.pid !== undefined && who.pid > 0 && ev.pid !== who.pid) {
          const running = live?.docker?.running ?? (live?.containerd?.task?.status === 'RUNNING');
          ev.evidence['main_pid'] = who.pid;
          ev.evidence['child_process'] = true;
          if (running) ev.text += ` It was a child process: the container's main process (pid ${who.pid}) lives on, so Kubernetes reports no restart.`;
        }
      }
      if (ev.check === 'kernel.oom' && ev.evidence['limit_bytes'] === undefined && ev.memcg) {
        // Once per cgroup per run: a flood of kills in one container read its limit 2 files per line
        // (the kmsg bench: 11,000 records/s, nearly all of it these reads).
        let limit = limits.get(ev.memcg);
        if (!limits.has(ev.memcg)) {
          for (const v2 of [false, true]) {
            limit = parseMemoryLimit(await host.readText(memcgFile(host, ev.memcg, v2, v2 ? 'memory.max' : 'memory.limit_in_bytes')).catch(() => undefined));
            if (limit !== undefined) break;
          }
          limits.set(ev.memcg, limit);
        }
        if (limit !== undefined) {
          ev.evidence['limit_bytes'] = limit;
          ev.text = oomText(ev);
        }
      }
    }

    // The cgroup counters: a kill the log lost (ring overflow, suppressed lines) still counts.
    const counters = new Map(data.counters);
    const seen = new Set<string>();
    for (const c of containers) {
      const pid = c.docker?.pid || c.containerd?.task?.pid || 0;
      if (pid <= 0) continue;
      const cg = await host.readText(host.procPath(pid, 'cgroup')).catch(() => undefined);
      const memcg = cg ? memcgOf(cg) : undefined;
      if (!memcg) continue;
      const count = parseOomKillCounter(await host.readText(memcgFile(host, memcg.path, memcg.v2, memcg.v2 ? 'memory.events' : 'memory.oom_control')).catch(() => undefined));
      if (count === undefined) continue;
      seen.add(c.id);
      const before = counters.get(c.id);
      counters.set(c.id, count);
      // First sight is a baseline: kills before this agent looked are not news.
      if (before === undefined || count <= before) continue;
      const unseen = count - before - (killsByContainer.get(c.id) ?? 0);
      for (let i = 0; i < unseen; i++) {
        const ev = oomEvent(now, false, memcg.path, memcg.path, undefined, undefined, undefined, undefined, 'CONSTRAINT_MEMCG');
        ev.evidence['source'] = memcg.v2 ? 'memory.events oom_kill' : 'memory.oom_control oom_kill';
        ev.evidence['oom_kill_counter'] = count;
        const limit = parseMemoryLimit(await host.readText(memcgFile(host, memcg.path, memcg.v2, memcg.v2 ? 'memory.max' : 'memory.limit_in_bytes')).catch(() => undefined));
        if (limit !== undefined) ev.evidence['limit_bytes'] = limit;
        ev.text = `the kernel OOM-killed a process at its container's memory limit${limit !== undefined ? ` of ${mib(limit / 1024)}` : ''} (counted by the cgroup's oom_kill counter, ${before} -> ${count}; its log line was lost).`;
        ev.subject = c.id;
        ev.workload = { ...c.workload, containerId: c.id };
        events.push(ev);
      }
    }
    // Without a snapshot this run, keep the counters as they were (no baseline lost).
    data.counters = snap ? [...counters].filter(([id]) => seen.has(id)) : [...counters];

    coalesce(data, events, config.maxGroups);
    data.groups = data.groups.filter((g) => g.lastMs >= now - config.lookback);
    return { kind: 'ok', observations: evaluateKernel(data, now, config), data };
  },
};
