// Why kubelet's image GC cannot free what it wants: the imagefs over its high threshold, what image GC
// wants freed (down to the low threshold, kubelet's own arithmetic), what removing the unused images
// frees (du's reclaimable rows), and where the rest is (writable layers, logs, emptyDirs); or kubelet
// said so itself (its ImageGCFailed / FreeDiskSpaceFailed Events on the Node, in its own words). Pure:
// the disk collector hands in its statfs row, the last du measurement (collectors/common/fillers.ts) and
// kubelet's Events as the agent last read them (agent/kube/node.ts).
import type { Observation } from '../../protocol/finding.js';
import type { DiskRow } from '../disk.js';
import type { KubeletGcEvent } from '../types.js';
import type { Consumer, Fillers } from './fillers.js';
import { formatBytes, shellQuote } from './text.js';
import { formatRate } from './growth.js';

export interface ImageGcThresholds {
  /** kubelet's imageGCHighThresholdPercent (85): image GC runs at or above this percentage used. */
  high: number;
  /** kubelet's imageGCLowThresholdPercent (80): image GC frees down to this percentage. */
  low: number;
}

/**
 * kubelet's image GC arithmetic (pkg/kubelet/images/image_gc_manager.go): usage is
 * 100 - available*100/capacity (integer), GC runs at or above the high threshold and wants freed
 * capacity*(100-low)/100 - available. Undefined when GC would not run.
 */
export function imageGcWants(fs: Pick<DiskRow, 'size' | 'avail'>, t: ImageGcThresholds): { usagePercent: number; bytesToFree: number } | undefined {
  const capacity = fs.size ?? 0;
  const available = fs.avail ?? 0;
  if (capacity <= 0) return undefined;
  const usagePercent = 100 - Math.floor((available * 100) / capacity);
  if (usagePercent < t.high) return undefined;
  const bytesToFree = Math.floor((capacity * (100 - t.low)) / 100) - available;
  return bytesToFree > 0 ? { usagePercent, bytesToFree } : undefined;
}

const KIND_TEXT: Record<Consumer['kind'], string> = {
  'writable-layer': 'writable layer',
  logs: 'logs',
  emptydir: 'emptyDir',
  'image-in-use': 'image in use',
  'image-held': 'image held by a stopped container',
  'image-pinned': 'pinned image',
  'image-reclaimable': 'unused image',
  other: 'other files',
};

/**
 * "writable layer of ns/pod/container (3.1G)", "emptyDir cache of ns/pod (1G, +75 MiB/min)" with a
 * growth rate in bytes per minute, "other files in /var/tmp (2G)".
 */
export function describeConsumer(c: Consumer, ratePerMinute?: number): string {
  const size = ratePerMinute === undefined ? formatBytes(c.bytes) : `${formatBytes(c.bytes)}, +${formatRate(ratePerMinute)}`;
  if (c.kind === 'other') return c.rest ? `${c.rest} other paths on ${c.filesystem} (${size})` : `other files in ${c.path} (${size})`;
  if (c.kind.startsWith('image-')) return `${KIND_TEXT[c.kind]} ${c.image ?? c.path} (${size})`;
  const who = c.pod ? `${c.pod}${c.container && c.kind !== 'emptydir' ? `/${c.container}` : ''}` : (c.container ?? c.path);
  const what = c.kind === 'emptydir' && c.volume ? `emptyDir ${c.volume}` : KIND_TEXT[c.kind];
  return `${what} of ${who} (${size})`;
}

/** What a person looks at next for one consumer. */
function lookAt(c: Consumer): string | undefined {
  if (c.pod) {
    const [ns, name] = c.pod.split('/');
    if (ns && name) return `kubectl -n ${shellQuote(ns)} describe pod ${shellQuote(name)}`;
  }
  if (c.kind === 'other') return `du -xh --max-depth=2 ${shellQuote(c.path)} | sort -rh | head`;
  return undefined;
}

/** The largest consumers on a filesystem that image GC cannot remove (everything but unused images). */
export function topConsumers(fillers: Fillers, mountPoint: string, n: number): Consumer[] {
  return fillers.consumers.filter((c) => c.filesystem === mountPoint && c.kind !== 'image-reclaimable').sort((a, b) => b.bytes - a.bytes).slice(0, n);
}

export interface ImageGcInput {
  /** The imagefs row from this run's statfs (the live state), and the runtime root it holds. */
  imagefs?: DiskRow;
  runtimeRoot?: string;
  /** The node's name, for the remedy's `kubectl describe node`. */
  node?: string;
}

/** What kubelet's message says about one image GC that did not free enough. Bytes are kubelet's (decimal counts of bytes). */
export interface KubeletGcMessage {
  /** Bytes image GC wanted freed (absent in the message of Kubernetes 1.34 and later, which gives the usage instead). */
  wanted?: number;
  /** Bytes it freed, or found eligible to free (absent in 1.34's shortest form). */
  freed?: number;
  /** 1.34 and later: "(88% of 26.4 GiB used)". */
  usagePercent?: number;
  capacity?: string;
  /** The runtime refused to delete some images: kubelet's aggregated errors, bounded. */
  deletionErrors?: string;
}

const bytesOf = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
};

/**
 * Pure: kubelet's words about an image GC that freed too little, in each form kubelet has used
 * (pkg/kubelet/images/image_gc_manager.go), behind the event correlator's "(combined from similar
 * events): " prefix:
 * - up to 1.28: "failed to garbage collect required amount of images. Wanted to free N bytes, but freed M bytes"
 * - 1.29 to 1.33: "Failed to garbage collect required amount of images. Attempted to free N bytes, but only found M bytes eligible to free."
 * - any version, when the runtime refused a removal: "wanted to free N bytes, but freed M bytes space with errors in image deletion: ..."
 * - 1.34 and later: "Insufficient free disk space on the node's image filesystem (P% of S used). Failed to free sufficient space by deleting unused images (freed M bytes). ..."
 * Undefined for any other ImageGCFailed message ("failed to get imageFs info: ..." at kubelet's start
 * says nothing about space) and for numbers that are not byte counts.
 */
export function parseKubeletGcMessage(message: string): KubeletGcMessage | undefined {
  const text = message.replace(/^\(combined from similar events\):\s*/i, '');
  let m = /wanted to free (\d{1,20})(?: bytes)?, but freed (\d{1,20})(?: bytes)?(?: space)?(?: with errors in image deletion: ([\s\S]*))?/i.exec(text);
  if (m) {
    const wanted = bytesOf(m[1]);
    const freed = bytesOf(m[2]);
    if (wanted === undefined || freed === undefined) return undefined;
    return { wanted, freed, ...(m[3] ? { deletionErrors: m[3].trim().slice(0, 300) } : {}) };
  }
  m = /attempted to free (\d{1,20}) bytes, but only found (\d{1,20}) bytes eligible to free/i.exec(text);
  if (m) {
    const wanted = bytesOf(m[1]);
    const freed = bytesOf(m[2]);
    return wanted === undefined || freed === undefined ? undefined : { wanted, freed };
  }
  m = /insufficient free disk space on the node's image filesystem \((\d{1,3}(?:\.\d+)?)% of ([^)]{1,32}) used\)\.\s*failed to free sufficient space by deleting unused images(?: \(freed (\d{1,20}) bytes\))?/i.exec(text);
  if (m) {
    const usagePercent = Number(m[1]);
    const freed = bytesOf(m[3]);
    if (!(usagePercent <= 100) || (m[3] !== undefined && freed === undefined)) return undefined;
    return { usagePercent, capacity: m[2]!.trim(), ...(freed !== undefined ? { freed } : {}) };
  }
  return undefined;
}

/** kubelet's recent reports, summed up: the latest one's words, and how often since when. */
export interface KubeletGcReport {
  latest: KubeletGcEvent;
  said: KubeletGcMessage;
  /** Failed GC runs: the Events' counts added up per reason, the larger of the two (kubelet records both for one run). */
  times: number;
  since: number;
}

/**
 * Pure: kubelet's image-GC failures last reported within `lookbackMs` of `now` (before or after), with words that say
 * what GC could not free; undefined when there are none. kubelet's GC runs every 5 minutes and reports
 * each failure again, so a report older than the lookback means GC has not failed since.
 */
export function recentKubeletGcFailures(events: readonly KubeletGcEvent[], now: number, lookbackMs: number): KubeletGcReport | undefined {
  const recent = events.flatMap((e) => {
    // Within the lookback either way: a clock skewed by minutes is tolerated, a time far ahead is not believed.
    const said = Math.abs(now - e.lastSeen) <= lookbackMs ? parseKubeletGcMessage(e.message) : undefined;
    return said ? [{ e, said }] : [];
  });
  if (recent.length === 0) return undefined;
  // The latest; of two at the same time (the pair kubelet records), the one that says more.
  const best = recent.reduce((a, b) => (b.e.lastSeen > a.e.lastSeen || (b.e.lastSeen === a.e.lastSeen && b.said.wanted !== undefined && a.said.wanted === undefined) ? b : a));
  const per = (reason: KubeletGcEvent['reason']) => recent.filter((r) => r.e.reason === reason).reduce((n, r) => n + r.e.count, 0);
  return { latest: best.e, said: best.said, times: Math.max(per('ImageGCFailed'), per('FreeDiskSpaceFailed')), since: Math.min(...recent.map((r) => r.e.firstSeen)) };
}

/** "12:03" in UTC, or "Dec 3 12:03" when not today (`now`'s day). */
function clock(at: number, now: number): string {
  const d = new Date(at);
  const hm = d.toISOString().slice(11, 16);
  return d.toISOString().slice(0, 10) === new Date(now).toISOString().slice(0, 10) ? hm : `${d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' })} ${d.getUTCDate()} ${hm}`;
}

/** "0" for nothing freed, as kubelet's readers say it; otherwise as df -h. */
const bytes = (n: number): string => (n === 0 ? '0' : formatBytes(n));

/** "kubelet: wanted to free 5.6G, freed 0 at 12:03 UTC (14 times since 11:20)". */
export function describeKubeletReport(r: KubeletGcReport, now: number): string {
  const s = r.said;
  const words =
    s.wanted !== undefined
      ? `wanted to free ${formatBytes(s.wanted)}, freed ${s.freed === undefined ? '?' : bytes(s.freed)}`
      : `image filesystem ${s.usagePercent}% of ${s.capacity} used, unused images freed ${s.freed === undefined ? 'too little' : bytes(s.freed)}`;
  const errors = s.deletionErrors ? `; the runtime refused to delete images: ${s.deletionErrors.slice(0, 200)}` : '';
  const times = r.times > 1 ? ` (${r.times} times since ${clock(r.since, now)} UTC)` : '';
  return `kubelet (${r.latest.reason}): ${words} at ${clock(r.latest.lastSeen, now)} UTC${times}${errors}`;
}

/**
 * disk.imageGc: imagefs at or over the high threshold and the unused images free less than image GC
 * wants; or kubelet reported within the lookback that its image GC did not free enough (`kubelet`,
 * from recentKubeletGcFailures). Warning; critical when the unused images free less than a quarter of
 * what GC wants (GC fails cycle after cycle and only eviction is left). The local condition needs a
 * complete measurement of that filesystem; kubelet's report fires on its own, with where the space is
 * once a measurement is there.
 */
export function evaluateImageGc(input: ImageGcInput, fillers: Fillers | undefined, t: ImageGcThresholds, kubelet?: KubeletGcReport, now = Date.now()): Observation[] {
  const fs = input.imagefs;
  const live = fs?.status === 'ok' ? fs : undefined;
  const measured = live && fillers && !fillers.partial && fillers.filesystems.some((f) => f.mountPoint === live.mountPoint) ? fillers : undefined;
  const wants = live ? imageGcWants(live, t) : undefined;
  const unused = measured ? measured.consumers.filter((c) => c.filesystem === live!.mountPoint && c.kind === 'image-reclaimable') : [];
  const canFree = unused.reduce((n, c) => n + c.bytes, 0);
  const local = measured && wants && canFree < wants.bytesToFree ? wants : undefined;
  if (!local && !kubelet) return [];
  const subject = fs?.mountPoint ?? input.runtimeRoot ?? 'imagefs';
  const top = measured ? topConsumers(measured, live!.mountPoint, 5) : [];
  const where = top.length > 0 ? ` The space is in: ${top.map((c) => describeConsumer(c)).join(', ')}.` : '';
  const at = input.runtimeRoot && input.runtimeRoot !== subject ? ` (${input.runtimeRoot})` : '';
  const looks = [...new Set(top.map(lookAt).filter((x): x is string => x !== undefined))].slice(0, 3);
  const images = `${unused.length} unused image${unused.length === 1 ? '' : 's'}`;
  // What GC wants against what it can free: ours when the local condition holds, else kubelet's numbers.
  const wanted = local?.bytesToFree ?? kubelet?.said.wanted;
  const freeable = local ? canFree : kubelet?.said.freed ?? (measured ? canFree : undefined);
  const severity = wanted !== undefined && freeable !== undefined && freeable < wanted / 4 ? 'critical' : 'warning';
  let message = `kubelet's image GC cannot free enough on ${subject}${at}: `;
  if (local) message += `it is ${local.usagePercent}% used (image GC starts at ${t.high}%) and GC wants ${formatBytes(local.bytesToFree)} freed to get down to ${t.low}%, but it can free at most ${formatBytes(canFree)} (${images}).`;
  if (kubelet) message += `${local ? ' ' : ''}${describeKubeletReport(kubelet, now)}.`;
  if (kubelet && !local && measured) message += ` The unused images here would free ${formatBytes(canFree)} (${images}).`;
  if (kubelet && !measured) message += ' Where the space is: being measured now (nodewarden du).';
  message += where;
  return [
    {
      check: 'disk.imageGc',
      severity,
      subject,
      message,
      evidence: {
        mountPoint: subject,
        runtimeRoot: input.runtimeRoot ?? null,
        size: live?.size ?? 0,
        avail: live?.avail ?? 0,
        usagePercent: wants?.usagePercent ?? null,
        highThreshold: t.high,
        lowThreshold: t.low,
        bytesToFree: wanted ?? null,
        reclaimable: measured ? canFree : null,
        unusedImages: unused.map((c) => c.image ?? c.path),
        topConsumers: top.map((c) => ({ kind: c.kind, bytes: c.bytes, path: c.path, pod: c.pod ?? null, container: c.container ?? null })),
        kubelet: kubelet
          ? { reason: kubelet.latest.reason, message: kubelet.latest.message, wanted: kubelet.said.wanted ?? null, freed: kubelet.said.freed ?? null, times: kubelet.times, lastSeen: new Date(kubelet.latest.lastSeen).toISOString(), since: new Date(kubelet.since).toISOString() }
          : null,
      },
      remedy: ['nodewarden prune --dry-run  # the unused images', ...looks, ...(kubelet && input.node ? [`kubectl describe node ${shellQuote(input.node)}  # kubelet's events`] : []), 'nodewarden du --json  # everything on it'].join('; '),
    },
  ];
}

/**
 * disk.usage and disk.eviction with the largest consumers of their filesystem, when it was measured, and
 * each one's growth rate when its samples show one (bytes per minute in the evidence, null when unknown).
 */
export function withTopConsumers(obs: readonly Observation[], fillers: Fillers | undefined, growth: Readonly<Record<string, { ratePerMinute: number }>> = {}): Observation[] {
  if (!fillers) return [...obs];
  return obs.map((o) => {
    if (o.check !== 'disk.usage' && o.check !== 'disk.eviction') return o;
    if (!fillers.filesystems.some((f) => f.mountPoint === o.subject)) return o;
    const top = fillers.consumers.filter((c) => c.filesystem === o.subject).slice().sort((a, b) => b.bytes - a.bytes).slice(0, 3);
    if (top.length === 0) return o;
    const rate = (c: Consumer) => growth[c.path]?.ratePerMinute;
    return {
      ...o,
      message: `${o.message} Largest: ${top.map((c) => describeConsumer(c, rate(c))).join(', ')}.`,
      evidence: { ...o.evidence, topConsumers: top.map((c) => ({ kind: c.kind, bytes: c.bytes, path: c.path, pod: c.pod ?? null, container: c.container ?? null, ratePerMinute: rate(c) === undefined ? null : Math.round(rate(c)!) })) },
    };
  });
}
