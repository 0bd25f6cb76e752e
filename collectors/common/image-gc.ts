// Why kubelet's image GC cannot free what it wants: the imagefs over its high threshold, what image GC
// wants freed (down to the low threshold, kubelet's own arithmetic), what removing the unused images
// frees (du's reclaimable rows), and where the rest is (writable layers, logs, emptyDirs). Pure: the
// disk collector hands in its statfs row and the last du measurement (collectors/common/fillers.ts).
import type { Observation } from '../../protocol/finding.js';
import type { DiskRow } from '../disk.js';
import type { Consumer, Fillers } from './fillers.js';
import { formatBytes, shellQuote } from './text.js';

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

/** "writable layer of ns/pod/container (3.1G)", "emptyDir cache of ns/pod (1G)", "other files in /var/tmp (2G)". */
export function describeConsumer(c: Consumer): string {
  const size = formatBytes(c.bytes);
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
}

/**
 * disk.imageGc: imagefs at or over the high threshold and the unused images free less than image GC
 * wants. Warning; critical when they free less than a quarter of it (GC fails cycle after cycle and
 * only eviction is left). Nothing without a measurement of that filesystem, or when it was partial.
 */
export function evaluateImageGc(input: ImageGcInput, fillers: Fillers | undefined, t: ImageGcThresholds): Observation[] {
  const fs = input.imagefs;
  if (!fs || fs.status !== 'ok' || !fillers || fillers.partial) return [];
  if (!fillers.filesystems.some((f) => f.mountPoint === fs.mountPoint)) return [];
  const wants = imageGcWants(fs, t);
  if (!wants) return [];
  const unused = fillers.consumers.filter((c) => c.filesystem === fs.mountPoint && c.kind === 'image-reclaimable');
  const canFree = unused.reduce((n, c) => n + c.bytes, 0);
  if (canFree >= wants.bytesToFree) return [];
  const top = topConsumers(fillers, fs.mountPoint, 5);
  const where = top.length > 0 ? ` The space is in: ${top.map(describeConsumer).join(', ')}.` : '';
  const at = input.runtimeRoot ? ` (${input.runtimeRoot})` : '';
  const looks = [...new Set(top.map(lookAt).filter((x): x is string => x !== undefined))].slice(0, 3);
  return [
    {
      check: 'disk.imageGc',
      severity: canFree < wants.bytesToFree / 4 ? 'critical' : 'warning',
      subject: fs.mountPoint,
      message:
        `kubelet's image GC cannot free enough on ${fs.mountPoint}${at}: it is ${wants.usagePercent}% used (image GC starts at ${t.high}%) and GC wants ${formatBytes(wants.bytesToFree)} freed to get down to ${t.low}%, ` +
        `but it can free at most ${formatBytes(canFree)} (${unused.length} unused image${unused.length === 1 ? '' : 's'}).${where}`,
      evidence: {
        mountPoint: fs.mountPoint,
        runtimeRoot: input.runtimeRoot ?? null,
        size: fs.size ?? 0,
        avail: fs.avail ?? 0,
        usagePercent: wants.usagePercent,
        highThreshold: t.high,
        lowThreshold: t.low,
        bytesToFree: wants.bytesToFree,
        reclaimable: canFree,
        unusedImages: unused.map((c) => c.image ?? c.path),
        topConsumers: top.map((c) => ({ kind: c.kind, bytes: c.bytes, path: c.path, pod: c.pod ?? null, container: c.container ?? null })),
      },
      remedy: ['nodewarden prune --dry-run  # the unused images', ...looks, 'nodewarden du --json  # everything on it'].join('; '),
    },
  ];
}

/** disk.usage and disk.eviction with the largest consumers of their filesystem, when it was measured. */
export function withTopConsumers(obs: readonly Observation[], fillers: Fillers | undefined): Observation[] {
  if (!fillers) return [...obs];
  return obs.map((o) => {
    if (o.check !== 'disk.usage' && o.check !== 'disk.eviction') return o;
    if (!fillers.filesystems.some((f) => f.mountPoint === o.subject)) return o;
    const top = fillers.consumers.filter((c) => c.filesystem === o.subject).slice().sort((a, b) => b.bytes - a.bytes).slice(0, 3);
    if (top.length === 0) return o;
    return {
      ...o,
      message: `${o.message} Largest: ${top.map(describeConsumer).join(', ')}.`,
      evidence: { ...o.evidence, topConsumers: top.map((c) => ({ kind: c.kind, bytes: c.bytes, path: c.path, pod: c.pod ?? null, container: c.container ?? null })) },
    };
  });
}
