// Parser for /proc/PID/mountinfo (proc(5)), shared by the disk and mounts collectors.
import { decodeBytes, splitFields, splitLines, unescapeOctal } from './text.js';

export interface MountInfo {
  mountId: number;
  parentId: number;
  /** "major:minor" of the filesystem's device. */
  device: string;
  /** The root of the mount within its filesystem. */
  root: string;
  mountPoint: string;
  /** Per-mount options (rw, nosuid...). */
  mountOptions: string[];
  /** Optional fields (shared:N, master:N...). */
  optional: string[];
  fsType: string;
  source: string;
  /** Per-superblock options; here the kernel says a filesystem went read-only after an error. */
  superOptions: string[];
}

const decodeField = (field: Uint8Array): string => decodeBytes(unescapeOctal(field));

/** Parses mountinfo text. Malformed lines are skipped, never thrown on: the file is the kernel's. */
export function parseMountinfo(input: Uint8Array | string): MountInfo[] {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  const mounts: MountInfo[] = [];
  for (const line of splitLines(buf)) {
    if (line.length === 0) continue;
    const fields = splitFields(line);
    const sep = fields.findIndex((f, i) => i >= 6 && f.length === 1 && f[0] === 0x2d);
    if (sep < 6 || fields.length < sep + 3) continue;
    const [idF, parentF, devF, rootF, mpF, optsF] = fields as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    const mountId = Number(decodeBytes(idF));
    const parentId = Number(decodeBytes(parentF));
    if (!Number.isInteger(mountId) || !Number.isInteger(parentId)) continue;
    mounts.push({
      mountId,
      parentId,
      device: decodeBytes(devF),
      root: decodeField(rootF),
      mountPoint: decodeField(mpF),
      mountOptions: decodeBytes(optsF).split(','),
      optional: fields.slice(6, sep).map(decodeBytes),
      fsType: decodeField(fields[sep + 1]!),
      source: decodeField(fields[sep + 2]!),
      superOptions: fields.length > sep + 3 ? decodeField(fields[sep + 3]!).split(',') : [],
    });
  }
  return mounts;
}

/** The mount that holds `path` (longest mount point that is a prefix of it), or undefined. */
export function mountFor<M extends { mountPoint: string }>(mounts: readonly M[], path: string): M | undefined {
  let best: M | undefined;
  for (const m of mounts) {
    const mp = m.mountPoint;
    const under = mp === '/' || path === mp || path.startsWith(mp.endsWith('/') ? mp : `${mp}/`);
    // Later mounts over the same point hide earlier ones: prefer the later on ties.
    if (under && (best === undefined || mp.length >= best.mountPoint.length)) best = m;
  }
  return best;
}
