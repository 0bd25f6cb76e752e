// disk: every real filesystem with df -hT's columns; usage, inodes, kubelet eviction margins,
// filesystems that went read-only, and mounts whose statfs hangs.
import type { Finding, Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { mountFor, parseMountinfo, type MountInfo } from './common/mountinfo.js';
import { formatBytes, shellQuote } from './common/text.js';
import { podUidIn } from './common/process.js';
import type { Collector, FsStats, HostAccess, StatfsOutcome } from './types.js';
import { describeConsumer, evaluateImageGc, imageGcWants, recentKubeletGcFailures, withTopConsumers } from './common/image-gc.js';
import { formatMinutes, formatRate, growthOf, keepSamples, minutesUntil, type Growth, type Sample } from './common/growth.js';
import type { Fillers } from './common/fillers.js';
import type { MeasuredFillers } from './types.js';

/** Kernel and runtime filesystems that are never "disks". */
const PSEUDO_FS = new Set([
  'proc', 'sysfs', 'cgroup', 'cgroup2', 'nsfs', 'squashfs', 'devpts', 'mqueue', 'debugfs', 'tracefs',
  'securityfs', 'pstore', 'bpf', 'configfs', 'fusectl', 'hugetlbfs', 'autofs', 'binfmt_misc', 'rpc_pipefs',
  'efivarfs', 'selinuxfs', 'ramfs', 'nfsd', 'fuse.lxcfs', 'overlayfs-internal',
]);
const TMPFS_LIKE = new Set(['tmpfs', 'devtmpfs']);

export interface DiskRow {
  source: string;
  fsType: string;
  mountPoint: string;
  /** Other mount points of the same filesystem (bind mounts). */
  alsoAt: string[];
  device: string;
  readonly: boolean;
  /** Mounted rw, but the kernel made the filesystem read-only after an error (errors=remount-ro). */
  kernelReadOnly: boolean;
  status: 'ok' | 'unresponsive' | 'error';
  error?: string;
  size?: number;
  used?: number;
  avail?: number;
  usePercent?: number;
  inodes?: number;
  inodesUsed?: number;
  inodesUsePercent?: number;
}

export interface DiskData {
  rows: DiskRow[];
  /** Mount points seen writable, to notice a remount read-only between cycles. */
  writable: string[];
  /** statfs used bytes per mount point over the last growth.window: the filesystems' growth. */
  used?: Record<string, Sample[]>;
  /**
   * Bytes per consumer path from the du measurements, or from the incremental refreshes once there are
   * some: a series is one or the other (they count hard links differently), never both.
   */
  consumers?: Record<string, ConsumerSeries>;
}

export interface ConsumerSeries {
  source: 'walk' | 'refresh';
  samples: Sample[];
}

/** The growth known this run: per mount point, and per consumer path. */
export interface GrowthView {
  filesystems: Record<string, Growth>;
  consumers: Record<string, Growth>;
}

const band = (what: string, warning: number, critical: number) =>
  s.object({
    warning: s.percent({ default: warning, doc: `${what}: warning above this percentage used` }),
    critical: s.percent({ default: critical, doc: `${what}: critical at or above this percentage used` }),
  });

export const diskConfigSpec = s.object({
  usage: band('space', 85, 95),
  inodes: band('inodes', 85, 95),
  includeTmpfs: s.boolean({ default: false, doc: 'also check tmpfs and devtmpfs mounts' }),
  ignoreMountPoints: s.list(s.string({ doc: 'mount point' }), { default: [], doc: 'mount points (or prefixes ending in /) never checked' }),
  statfsTimeout: s.duration({ default: '3s', min: 100, doc: 'how long one statfs may take before the mount is reported unresponsive' }),
  eviction: s.object({
    kubeletRootDir: s.string({ default: '/var/lib/kubelet', doc: "kubelet's --root-dir: its filesystem is nodefs" }),
    runtimeRootDirs: s.list(s.string({ doc: 'directory' }), {
      default: ['/var/lib/docker', '/var/lib/containerd'],
      doc: "container runtime roots: the filesystem of the first that exists is imagefs",
    }),
    nodefsAvailable: s.percent({ default: 10, doc: 'kubelet --eviction-hard nodefs.available (percent)' }),
    imagefsAvailable: s.percent({ default: 15, doc: 'kubelet --eviction-hard imagefs.available (percent)' }),
    nodefsInodesFree: s.percent({ default: 5, doc: 'kubelet --eviction-hard nodefs.inodesFree (percent)' }),
    margin: s.percent({ default: 5, doc: 'warn this many percentage points before kubelet starts evicting' }),
  }),
  imageGcHighThreshold: s.percent({ default: 85, doc: "kubelet's imageGCHighThresholdPercent: image GC runs when imagefs is this full; nodefs or imagefs this full also starts the du measurement" }),
  imageGcLowThreshold: s.percent({ default: 80, doc: "kubelet's imageGCLowThresholdPercent: image GC frees down to this" }),
  fillersEvery: s.duration({ default: '5m', min: 10_000, doc: 'the du measurement (what fills nodefs and imagefs, for disk.imageGc and the largest consumers in disk.usage and disk.eviction) runs in the background at most this often (and, after a walk of C seconds of CPU, no sooner than 500 x C later: 2 millicores on average), only while one is over imageGcHighThreshold, kubelet reported an image GC failure within imageGcEventsLookback, or disk.usage or disk.eviction fires; between measurements the largest consumers are refreshed incrementally at every run while disk.usage or disk.eviction fires' }),
  imageGcEventsLookback: s.duration({ default: '15m', min: 60_000, doc: "kubelet's ImageGCFailed / FreeDiskSpaceFailed Events on this Node (read from the API server) fire disk.imageGc while the last was at most this long ago: kubelet's image GC runs every 5 min and reports each failure, so 15 min is three runs without one" }),
  fillersTimeout: s.duration({ default: '60s', min: 1000, doc: "the background du measurement's deadline: past it the measurement is partial and not used" }),
  growth: s.object({
    window: s.duration({ default: '5m', min: 10_000, doc: "a filesystem's growth rate is the least-squares slope of its used bytes over this long (its largest consumers': over this or 3 x fillersEvery, whichever is longer)" }),
    minSpan: s.duration({ default: '2m', min: 1000, doc: 'no growth rate until the samples span this long (one noisy pair is no rate)' }),
    minRate: s.number({ default: 1048576, min: 0, doc: 'bytes per minute: slower growth, or shrinking, is flat and no rate is said' }),
    horizon: s.duration({ default: '24h', min: 60_000, doc: 'no time-to-threshold estimate further away than this' }),
    pageWithin: s.duration({ default: '30m', min: 0, doc: "disk.eviction is critical before kubelet's threshold is crossed when steady growth (5 samples or more, both halves of the window growing) reaches it within this long" }),
  }),
});
export type DiskConfig = Infer<typeof diskConfigSpec>;

/** Container overlay rootfs mounts and runtime-private mounts, which belong to containers, not the node. */
function isContainerMount(m: MountInfo, runtimeRoots: readonly string[]): boolean {
  if (m.fsType !== 'overlay' && m.fsType !== 'aufs' && m.fsType !== 'shm') return false;
  const mp = m.mountPoint;
  return runtimeRoots.some((r) => mp.startsWith(`${r}/`)) || mp.startsWith('/run/containerd/') || mp.startsWith('/run/docker/') || mp.endsWith('/merged') || mp.endsWith('/rootfs');
}

/**
 * The mounts that are real filesystems, one per filesystem: mounts of the same device (bind mounts,
 * btrfs subvolumes) share a superblock and so the same statfs numbers; the shortest mount point is kept.
 */
export function selectFilesystems(mounts: readonly MountInfo[], config: DiskConfig): { mount: MountInfo; alsoAt: string[] }[] {
  const ignored = (mp: string): boolean =>
    config.ignoreMountPoints.some((i) => (i.endsWith('/') ? mp.startsWith(i) || `${mp}/` === i : mp === i));
  const byFs = new Map<string, { mount: MountInfo; alsoAt: string[] }>();
  for (const m of mounts) {
    if (PSEUDO_FS.has(m.fsType)) continue;
    if (!config.includeTmpfs && TMPFS_LIKE.has(m.fsType)) continue;
    if (isContainerMount(m, config.eviction.runtimeRootDirs)) continue;
    if (ignored(m.mountPoint)) continue;
    const key = m.device;
    const seen = byFs.get(key);
    if (!seen) byFs.set(key, { mount: m, alsoAt: [] });
    else if (m.mountPoint.length < seen.mount.mountPoint.length) {
      seen.alsoAt.push(seen.mount.mountPoint);
      seen.mount = m;
    } else seen.alsoAt.push(m.mountPoint);
  }
  return [...byFs.values()];
}

/** df's arithmetic: used = total - free; Use% = used / (used + available), rounded up. */
export function usageOf(stats: FsStats): Pick<DiskRow, 'size' | 'used' | 'avail' | 'usePercent' | 'inodes' | 'inodesUsed' | 'inodesUsePercent'> {
  const size = stats.blocks * stats.blockSize;
  const used = (stats.blocks - stats.blocksFree) * stats.blockSize;
  const avail = stats.blocksAvailable * stats.blockSize;
  const usePercent = used + avail > 0 ? Math.ceil((used / (used + avail)) * 100) : 0;
  const out: ReturnType<typeof usageOf> = { size, used, avail, usePercent };
  if (stats.inodes > 0) {
    const iused = stats.inodes - stats.inodesFree;
    out.inodes = stats.inodes;
    out.inodesUsed = iused;
    out.inodesUsePercent = Math.ceil((iused / stats.inodes) * 100);
  }
  return out;
}

/** Read-only per mount flags, or because the kernel flipped the superblock after an error. */
function readOnlyState(m: MountInfo): { readonly: boolean; emergency: boolean } {
  const mountRo = m.mountOptions.includes('ro');
  const superRo = m.superOptions.includes('ro') || m.superOptions.includes('emergency_ro');
  return { readonly: mountRo || superRo, emergency: !mountRo && superRo };
}

export function buildRows(selected: ReturnType<typeof selectFilesystems>, outcomes: readonly StatfsOutcome[]): DiskRow[] {
  return selected.map(({ mount, alsoAt }, i) => {
    const outcome = outcomes[i];
    const row: DiskRow = {
      source: mount.source,
      fsType: mount.fsType,
      mountPoint: mount.mountPoint,
      alsoAt,
      device: mount.device,
      readonly: readOnlyState(mount).readonly,
      kernelReadOnly: readOnlyState(mount).emergency,
      status: outcome?.ok ? 'ok' : outcome?.reason === 'timeout' ? 'unresponsive' : 'error',
    };
    if (outcome?.ok) Object.assign(row, usageOf(outcome.stats));
    else if (outcome) row.error = outcome.error;
    return row;
  });
}

export interface EvictionInput {
  /** The row holding kubelet's root dir (nodefs), if kubelet is on this node. */
  nodefs?: DiskRow;
  /** The row holding the runtime root (imagefs), and which root it is. */
  imagefs?: DiskRow;
  runtimeRoot?: string;
  /** BestEffort pods (uid and name where known): kubelet evicts them first. */
  bestEffortPods: { uid: string; name?: string }[];
}

function pruneCommand(runtimeRoot: string | undefined): string {
  return runtimeRoot?.includes('docker') ? 'docker image prune -a --filter until=72h' : 'crictl rmi --prune';
}

/**
 * When writes start failing, truly: df's Use% reaches 100% when nothing is available to non-root
 * processes; root may still write into the reserved blocks (ext4 keeps 5% by default) until they are gone.
 */
function whenWritesFail(r: DiskRow): string {
  const reserved = Math.max(0, (r.size ?? 0) - (r.used ?? 0) - (r.avail ?? 0));
  return reserved > 0
    ? `At 100% writes fail for every process but root, which can still use the ${formatBytes(reserved)} reserved for it; then they fail for root too.`
    : 'At 100% every write fails.';
}

/** Findings from the df rows. Pure. */
export function evaluateDisk(rows: readonly DiskRow[], config: DiskConfig, eviction: EvictionInput, previous?: DiskData): Observation[] {
  const out: Observation[] = [];
  const prevWritable = new Set(previous?.writable ?? []);
  for (const r of rows) {
    const q = shellQuote(r.mountPoint);
    if (r.status === 'unresponsive') {
      out.push({
        check: 'disk.unresponsive',
        severity: 'critical',
        subject: r.mountPoint,
        message: `Filesystem ${r.mountPoint} (${r.fsType} from ${r.source}) does not answer statfs: anything that touches it (df, kubelet's stats, pods using it) hangs. It is skipped until it answers.`,
        evidence: { mountPoint: r.mountPoint, fsType: r.fsType, source: r.source, error: r.error ?? 'timeout' },
        remedy: `grep ${q} /proc/mounts  # then check the server or device behind ${r.source}; if it is gone for good: umount -l ${q}`,
      });
      continue;
    }
    if (r.status !== 'ok' || r.usePercent === undefined || r.size === undefined) continue;
    const size = formatBytes(r.size);
    const avail = formatBytes(r.avail ?? 0);
    if (r.usePercent > config.usage.warning) {
      const severity = r.usePercent >= config.usage.critical ? 'critical' : 'warning';
      out.push({
        check: 'disk.usage',
        severity,
        subject: r.mountPoint,
        message: `Filesystem ${r.mountPoint} is ${r.usePercent}% full (${avail} of ${size} left). ${whenWritesFail(r)}`,
        evidence: { mountPoint: r.mountPoint, fsType: r.fsType, source: r.source, size: r.size, used: r.used ?? 0, avail: r.avail ?? 0, usePercent: r.usePercent },
        remedy: `du -xh --max-depth=2 ${q} | sort -rh | head -20`,
      });
    }
    if (r.inodesUsePercent !== undefined && r.inodesUsePercent > config.inodes.warning) {
      const severity = r.inodesUsePercent >= config.inodes.critical ? 'critical' : 'warning';
      out.push({
        check: 'disk.inodes',
        severity,
        subject: r.mountPoint,
        message: `Filesystem ${r.mountPoint} has used ${r.inodesUsePercent}% of its inodes (${(r.inodes! - r.inodesUsed!).toLocaleString('en-US')} left): new files cannot be created even with space free.`,
        evidence: { mountPoint: r.mountPoint, inodes: r.inodes ?? 0, inodesUsed: r.inodesUsed ?? 0, inodesUsePercent: r.inodesUsePercent },
        remedy: `du -x --inodes --max-depth=3 ${q} | sort -rn | head -20`,
      });
    }
  }

  // Read-only: the kernel flipped a rw mount (errors=remount-ro), or it was rw last cycle and is ro now.
  for (const r of rows) {
    const q = shellQuote(r.mountPoint);
    if (!r.readonly) continue;
    const emergency = r.kernelReadOnly;
    const flipped = prevWritable.has(r.mountPoint);
    if (!emergency && !flipped) continue;
    out.push({
      check: 'disk.readonly',
      severity: 'critical',
      subject: r.mountPoint,
      message: emergency
        ? `Filesystem ${r.mountPoint} (${r.source}) is mounted rw but the kernel made it read-only after an error: every write fails, pods that log or write here crash.`
        : `Filesystem ${r.mountPoint} (${r.source}) was writable and is now read-only: every write fails.`,
      evidence: { mountPoint: r.mountPoint, source: r.source, fsType: r.fsType, kernelRemounted: emergency },
      remedy: `dmesg | grep -i -E 'error|remount' | tail  # then drain the node, fsck ${shellQuote(r.source)} and remount ${q} rw`,
    });
  }

  out.push(...evaluateEviction(config, eviction));
  return out;
}

/**
 * Pure: a read-only filesystem joined with what the kernel said about its device (kernel.fsReadonly,
 * kernel.fsError from the kernel collector): the error that made it read-only, in the message and the
 * evidence, so one finding tells the whole story.
 */
export function joinKernelErrors(obs: Observation[], rows: readonly DiskRow[], active: readonly Pick<Finding, 'check' | 'subject' | 'message' | 'firstSeen'>[]): Observation[] {
  return obs.map((o) => {
    if (o.check !== 'disk.readonly') return o;
    const row = rows.find((r) => r.mountPoint === o.subject);
    const device = row?.source.replace(/^\/dev\//, '');
    if (!device) return o;
    const said = active.filter((f) => (f.check === 'kernel.fsReadonly' || f.check === 'kernel.fsError') && f.subject === device);
    if (said.length === 0) return o;
    const first = said.find((f) => f.check === 'kernel.fsError') ?? said[0]!;
    return { ...o, message: `${o.message} The kernel logged: ${first.message}`, evidence: { ...o.evidence, kernel: said.map((f) => ({ check: f.check, message: f.message, firstSeen: f.firstSeen })) } };
  });
}

function evaluateEviction(config: DiskConfig, input: EvictionInput): Observation[] {
  const ev = config.eviction;
  type Signal = { name: string; fs: DiskRow; freePercent: number; threshold: number };
  const signals: Signal[] = [];
  const pct = (num: number, den: number): number => (den > 0 ? (num / den) * 100 : 100);
  const { nodefs, imagefs } = input;
  if (nodefs?.status === 'ok' && nodefs.size) {
    signals.push({ name: 'nodefs.available', fs: nodefs, freePercent: pct(nodefs.avail ?? 0, nodefs.size), threshold: ev.nodefsAvailable });
    if (nodefs.inodes) signals.push({ name: 'nodefs.inodesFree', fs: nodefs, freePercent: pct(nodefs.inodes - (nodefs.inodesUsed ?? 0), nodefs.inodes), threshold: ev.nodefsInodesFree });
  }
  if (imagefs?.status === 'ok' && imagefs.size) {
    signals.push({ name: 'imagefs.available', fs: imagefs, freePercent: pct(imagefs.avail ?? 0, imagefs.size), threshold: ev.imagefsAvailable });
  }
  // One finding per filesystem: the signal closest to (or furthest past) its threshold.
  const byFs = new Map<string, Signal[]>();
  for (const sig of signals) {
    if (sig.freePercent >= sig.threshold + ev.margin) continue;
    byFs.set(sig.fs.mountPoint, [...(byFs.get(sig.fs.mountPoint) ?? []), sig]);
  }
  const out: Observation[] = [];
  for (const [mountPoint, sigs] of byFs) {
    sigs.sort((a, b) => a.freePercent - a.threshold - (b.freePercent - b.threshold));
    const worst = sigs[0]!;
    const evicting = sigs.some((x) => x.freePercent < x.threshold);
    const pods = input.bestEffortPods.map((p) => p.name ?? p.uid);
    const podText = pods.length > 0 ? ` BestEffort pods go first: ${pods.slice(0, 5).join(', ')}${pods.length > 5 ? ` and ${pods.length - 5} more` : ''}.` : '';
    const what = sigs.map((x) => `${x.name} ${x.freePercent.toFixed(1)}% (evicts below ${x.threshold}%)`).join(', ');
    out.push({
      check: 'disk.eviction',
      severity: evicting ? 'critical' : 'warning',
      subject: mountPoint,
      message: evicting
        ? `kubelet is evicting pods: ${mountPoint} is past its hard-eviction threshold: ${what}.${podText}`
        : `Pods will be evicted soon: ${mountPoint} is within ${ev.margin} points of kubelet's hard-eviction threshold: ${what}.${podText}`,
      evidence: {
        mountPoint,
        signals: sigs.map((x) => ({ signal: x.name, freePercent: Number(x.freePercent.toFixed(2)), threshold: x.threshold })),
        worstSignal: worst.name,
        bestEffortPods: input.bestEffortPods.map((p) => ({ uid: p.uid, name: p.name ?? null })),
      },
      remedy: `${pruneCommand(input.runtimeRoot)}  # unused images first; then du -xh --max-depth=2 ${shellQuote(mountPoint)} | sort -rh | head`,
    });
  }
  return out;
}

/**
 * Pure: the consumers' byte series, with this run's measurement added: a consumer a refresh measured gets
 * the refresh's bytes and time, the others the full walk's; a series whose source changes starts again.
 * Each sample only once (a measurement is returned by several runs). Images and the summed rest are not
 * followed.
 */
export function consumerSeries(previous: Readonly<Record<string, ConsumerSeries>> | undefined, measured: MeasuredFillers | undefined, now: number, windowMs: number): Record<string, ConsumerSeries> {
  const out: Record<string, ConsumerSeries> = {};
  for (const [p, series] of Object.entries(previous ?? {})) {
    const samples = keepSamples(series.samples, now + 1, undefined, windowMs);
    if (samples.length > 0) out[p] = { source: series.source, samples };
  }
  for (const c of measured?.fillers.consumers ?? []) {
    if (c.kind.startsWith('image-') || c.rest !== undefined) continue;
    const refreshed = measured!.refreshed?.bytes[c.path];
    const source = refreshed !== undefined ? 'refresh' : 'walk';
    const sample: Sample = refreshed !== undefined ? [measured!.refreshed!.takenAt, refreshed] : [measured!.takenAt, c.bytes];
    if (now - sample[0] > windowMs) continue;
    const series = out[c.path];
    if (!series || series.source !== source) out[c.path] = { source, samples: [sample] };
    else if (sample[0] > series.samples[series.samples.length - 1]![0]) series.samples.push(sample);
  }
  return out;
}

/** Pure: the growth of each filesystem and consumer whose samples show one. */
export function growthView(used: Readonly<Record<string, Sample[]>>, consumers: Readonly<Record<string, ConsumerSeries>>, g: DiskConfig['growth']): GrowthView {
  const settings = { minSpanMs: g.minSpan, minRatePerMinute: g.minRate };
  const view: GrowthView = { filesystems: {}, consumers: {} };
  for (const [mp, samples] of Object.entries(used)) {
    const x = growthOf(samples, settings);
    if (x) view.filesystems[mp] = x;
  }
  for (const [p, series] of Object.entries(consumers)) {
    const x = growthOf(series.samples, settings);
    if (x) view.consumers[p] = x;
  }
  return view;
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

function growthEvidence(x: Growth): Record<string, number | boolean> {
  return { ratePerMinute: Math.round(x.ratePerMinute), samples: x.samples, spanSeconds: Math.round(x.spanMs / 1000), sustained: x.sustained };
}

/** ", mostly emptyDir data of ns/pod (3.1G, +75 MiB/min)": the consumer growing fastest on the filesystem. */
function mostly(fillers: Fillers | undefined, mountPoint: string, fsRate: number, view: GrowthView): string {
  let best: { text: string; rate: number } | undefined;
  for (const c of fillers?.consumers ?? []) {
    const x = c.filesystem === mountPoint ? view.consumers[c.path] : undefined;
    if (x && (!best || x.ratePerMinute > best.rate)) best = { text: describeConsumer(c, x.ratePerMinute), rate: x.ratePerMinute };
  }
  if (!best) return '';
  return `, ${best.rate >= fsRate / 2 ? 'mostly' : 'fastest'} ${best.text}`;
}

/**
 * Pure: disk.usage and disk.eviction with their filesystem's growth rate and time-to-threshold. disk.usage:
 * the time to its critical band (when a warning) and to full; the forecast never changes its severity.
 * disk.eviction: the time to kubelet's nearest space threshold; a warning becomes critical when the growth
 * is sustained and reaches it within growth.pageWithin (one burst never pages: see growthOf). Nothing is
 * said of a filesystem that is flat or shrinking, and no estimate past growth.horizon.
 */
export function withGrowth(obs: readonly Observation[], rows: readonly DiskRow[], view: GrowthView, config: DiskConfig, fillers?: Fillers): Observation[] {
  const g = config.growth;
  return obs.map((o) => {
    if (o.check !== 'disk.usage' && o.check !== 'disk.eviction') return o;
    const x = view.filesystems[o.subject];
    const r = rows.find((row) => row.mountPoint === o.subject);
    if (!x || !r || r.status !== 'ok' || r.size === undefined) return o;
    const avail = r.avail ?? 0;
    const rate = formatRate(x.ratePerMinute);
    const who = mostly(fillers, o.subject, x.ratePerMinute, view);
    if (o.check === 'disk.usage') {
      // df's Use%: used / (used + avail); the reserved blocks are in neither.
      const total = (r.used ?? 0) + avail;
      const toCritical = o.severity === 'warning' ? minutesUntil(avail, total * (1 - config.usage.critical / 100), x.ratePerMinute, g.horizon) : undefined;
      const toFull = minutesUntil(avail, 0, x.ratePerMinute, g.horizon);
      const when = [toCritical !== undefined ? `${config.usage.critical}% (critical) in ${formatMinutes(toCritical)}` : undefined, toFull !== undefined ? `full in ${formatMinutes(toFull)}` : undefined].filter((w) => w !== undefined);
      return {
        ...o,
        message: `${o.message} It grows ${rate}${when.length > 0 ? `: ${when.join(', ')}` : ''}${who}.`,
        evidence: { ...o.evidence, growth: { ...growthEvidence(x), minutesToCritical: toCritical === undefined ? null : round2(toCritical), minutesToFull: toFull === undefined ? null : round2(toFull) } },
      };
    }
    // kubelet's space signals (not inodes), from the eviction finding's own evidence: the nearest ahead.
    const signals = (Array.isArray(o.evidence['signals']) ? o.evidence['signals'] : []) as { signal: string; threshold: number }[];
    let nearest: { signal: string; threshold: number; minutes: number } | undefined;
    for (const sig of signals) {
      if (!sig.signal.endsWith('.available')) continue;
      const m = minutesUntil(avail, (r.size * sig.threshold) / 100, x.ratePerMinute, g.horizon);
      if (m !== undefined && (!nearest || m < nearest.minutes)) nearest = { ...sig, minutes: m };
    }
    const page = o.severity === 'warning' && nearest !== undefined && x.sustained && nearest.minutes * 60_000 <= g.pageWithin;
    const fsName = nearest?.signal.split('.')[0];
    const sentence = nearest
      ? ` ${fsName} reaches kubelet's ${nearest.threshold}% eviction threshold in ${formatMinutes(nearest.minutes)} at the current ${rate}${who}${page ? `; the growth has been steady for ${formatMinutes(x.spanMs / 60_000).replace(/^about /, '')}` : ''}.`
      : ` It grows ${rate}${who}.`;
    return {
      ...o,
      ...(page ? { severity: 'critical' as const } : {}),
      message: `${o.message}${sentence}`,
      evidence: { ...o.evidence, growth: { ...growthEvidence(x), signal: nearest?.signal ?? null, minutesToThreshold: nearest ? round2(nearest.minutes) : null, forecastCritical: page } },
    };
  });
}

/**
 * BestEffort pods from the kubepods cgroup tree (v1 or v2, cgroupfs or systemd driver); names from
 * kubelet's etc-hosts. Undefined when there is no kubepods tree: kubelet does not run here.
 */
async function bestEffortPods(host: HostAccess, kubeletRootDir: string): Promise<{ uid: string; name?: string }[] | undefined> {
  const candidates = [
    host.sysPath('fs', 'cgroup', 'kubepods.slice', 'kubepods-besteffort.slice'),
    host.sysPath('fs', 'cgroup', 'kubepods', 'besteffort'),
    host.sysPath('fs', 'cgroup', 'memory', 'kubepods.slice', 'kubepods-besteffort.slice'),
    host.sysPath('fs', 'cgroup', 'memory', 'kubepods', 'besteffort'),
  ];
  for (const dir of candidates) {
    const entries = await host.list(dir);
    if (!entries) continue;
    const out: { uid: string; name?: string }[] = [];
    for (const e of entries) {
      const uid = podUidIn(e);
      if (!uid) continue;
      // kubelet writes the pod's hostname (its name, unless spec.hostname says otherwise) into etc-hosts.
      const hosts = await host.readText(host.hostPath(`${kubeletRootDir}/pods/${uid}/etc-hosts`));
      const name = hosts?.split('\n').find((l) => l && !l.startsWith('#') && !/localhost|ip6-/.test(l))?.trim().split(/\s+/)[1];
      out.push(name ? { uid, name } : { uid });
    }
    return out;
  }
  return undefined;
}

export const disk: Collector<DiskConfig, DiskData> = {
  name: 'disk',
  description: 'Filesystems as df -hT sees them: space, inodes, kubelet eviction margins, read-only flips, hung mounts',
  checks: ['disk.usage', 'disk.inodes', 'disk.eviction', 'disk.readonly', 'disk.unresponsive', 'disk.imageGc'],
  conditions: { 'disk.usage': 'NodewardenDiskFull', 'disk.inodes': 'NodewardenDiskFull', 'disk.eviction': 'NodewardenDiskEviction', 'disk.readonly': 'NodewardenFilesystemReadOnly', 'disk.unresponsive': 'NodewardenMountUnresponsive', 'disk.imageGc': null },
  defaultIntervalMs: 30_000,
  defaultTimeoutMs: 15_000,
  configSpec: diskConfigSpec,
  async collect(ctx) {
    const { host, config } = ctx;
    const raw = (await host.readBytes(host.procPath('1', 'mountinfo'))) ?? (await host.readBytes(host.procPath('self', 'mountinfo')));
    if (!raw) return { kind: 'no-data', reason: 'no mountinfo under the host root' };
    const mounts = parseMountinfo(raw);
    const selected = selectFilesystems(mounts, config);
    const outcomes = await host.statfs(selected.map((x) => x.mount.mountPoint), config.statfsTimeout);
    const rows = buildRows(selected, outcomes);

    const ev = config.eviction;
    const eviction: EvictionInput = { bestEffortPods: [] };
    // Every mount point of every row, so a bind-mounted kubelet dir maps to the filesystem it lives on.
    const points = rows.flatMap((row) => [row.mountPoint, ...row.alsoAt].map((mountPoint) => ({ mountPoint, row })));
    const rowFor = (p: string): DiskRow | undefined => mountFor(points, p)?.row;
    // Eviction is kubelet's: on a node without it there is nothing to evict. It is here when its root
    // dir is (nodefs is that dir's filesystem) or its kubepods cgroup is (kubelet with another
    // --root-dir); imagefs, the first runtime root's filesystem, is then evaluated on its own.
    const kubeletDir = await host.exists(host.hostPath(ev.kubeletRootDir));
    const pods = await bestEffortPods(host, ev.kubeletRootDir);
    if (kubeletDir) {
      const m = rowFor(ev.kubeletRootDir);
      if (m) eviction.nodefs = m;
    }
    if (pods) eviction.bestEffortPods = pods;
    if (kubeletDir || pods) {
      for (const root of ev.runtimeRootDirs) {
        if (!(await host.exists(host.hostPath(root)))) continue;
        const fs = rowFor(root);
        if (fs) {
          eviction.imagefs = fs;
          eviction.runtimeRoot = root;
        }
        break;
      }
    }
    // Growth: every run's statfs is a sample of each filesystem's used bytes (cheap and exact).
    const now = ctx.now();
    const g = config.growth;
    const used: Record<string, Sample[]> = {};
    for (const r of rows) {
      const samples = keepSamples(ctx.previous?.used?.[r.mountPoint], now, r.status === 'ok' ? r.used : undefined, g.window);
      if (samples.length > 0) used[r.mountPoint] = samples;
    }
    const evaluated = evaluateDisk(rows, config, eviction, ctx.previous);
    // The du measurement only when image GC runs (nodefs or imagefs over its high threshold) or a
    // filesystem is full or near eviction: it is made in the background, paced, and this run uses the
    // last one. While a filesystem is full or near eviction, its largest consumers are also refreshed
    // (incrementally, never a full walk) at every run, for their growth rates.
    const gc = { high: config.imageGcHighThreshold, low: config.imageGcLowThreshold };
    const gcRuns = [eviction.imagefs, eviction.nodefs].some((r) => r?.status === 'ok' && imageGcWants(r, gc) !== undefined);
    // kubelet's own word that its image GC failed (its Events on this Node): the measurement starts on
    // it too, whatever the local thresholds say (kubelet's may differ, or its imagefs is another).
    const said = ctx.kube?.kubeletGcFailures();
    const kubelet = said?.status === 'synced' ? recentKubeletGcFailures(said.events, ctx.now(), config.imageGcEventsLookback) : undefined;
    const filling = evaluated.some((o) => o.check === 'disk.usage' || o.check === 'disk.eviction');
    const measured = (gcRuns || kubelet || filling) && ctx.fillers ? await ctx.fillers.get(config.fillersEvery, { refresh: filling }) : undefined;
    const consumers = consumerSeries(ctx.previous?.consumers, measured, now, Math.max(g.window, 3 * config.fillersEvery));
    const view = growthView(used, consumers, g);
    const data: DiskData = { rows, writable: rows.filter((r) => !r.readonly).map((r) => r.mountPoint), used, consumers };
    const observations = withTopConsumers(withGrowth(evaluated, rows, view, config, measured?.fillers), measured?.fillers, view.consumers);
    const gcInput = { node: ctx.node, ...(eviction.imagefs ? { imagefs: eviction.imagefs } : {}), ...(eviction.runtimeRoot ? { runtimeRoot: eviction.runtimeRoot } : {}) };
    observations.push(...evaluateImageGc(gcInput, measured?.fillers, gc, kubelet, ctx.now()));
    return { kind: 'ok', observations: joinKernelErrors(observations, rows, ctx.active?.() ?? []), data };
  },
};
