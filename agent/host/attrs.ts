// Loads the native statx module (built from native/attrs.c at install). Without it the immutable
// collector reports no data instead of failing.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errnoCode } from '../../protocol/errors.js';
import type { AttrAccess, AttrScan, FsStats, ScanProgress } from '../../collectors/types.js';
import type { TreeWalker, WalkResult } from '../../collectors/common/fillers.js';
import { withDeadline } from '../../protocol/deadline.js';
import type { IndexFs } from './tree-index.js';

interface NativeAttrs {
  scanTree(roots: string[], threads: number): Promise<AttrScan>;
  attrsOf(path: string): number;
  duTree?(roots: string[], threads: number, timeoutMs: number, maxEntries: number, excludes: string[], devices: (string | null)[]): Promise<WalkResult>;
  statfs?(path: string): Promise<FsStats>;
  statAt?(dir: string | null, names: string[]): Float64Array | null;
  listStat?(dir: string, skip: string[], max?: number): { names: string[]; stats: Float64Array } | null;
}

let loaded: NativeAttrs | null | undefined;

function load(): NativeAttrs | null {
  if (loaded !== undefined) return loaded;
  const require = createRequire(import.meta.url);
  const here = path.dirname(fileURLToPath(import.meta.url));
  // Compiled: dist/agent/host -> ../../../build; from source (tests): agent/host -> ../../build.
  for (const rel of ['../../../build/Release/nodewarden_attrs.node', '../../build/Release/nodewarden_attrs.node']) {
    try {
      loaded = require(path.join(here, rel)) as NativeAttrs;
      return loaded;
    } catch {
      // try the next place
    }
  }
  loaded = null;
  return loaded;
}

/**
 * One walk over all paths, reporting progress: the paths go to the native walk in about 32 groups, one
 * after the other, each on all `threads` (the walk itself reports nothing until it ends). A group
 * holds at least `threads` paths so each group keeps every thread busy; the cost is one short idle
 * tail per group, measured in `npm run bench` (immutable).
 */
export async function scanInGroups(scan: (paths: string[], threads: number) => Promise<AttrScan>, paths: readonly string[], threads: number, onProgress: (p: ScanProgress) => void): Promise<AttrScan> {
  const size = Math.max(threads, Math.ceil(paths.length / 32));
  const out: AttrScan = { entries: 0, errors: 0, flagged: [] };
  onProgress({ units: 0, total: paths.length, entries: 0 });
  for (let i = 0; i < paths.length; i += size) {
    const r = await scan(paths.slice(i, i + size), threads);
    out.entries += r.entries;
    out.errors += r.errors;
    out.flagged.push(...r.flagged);
    onProgress({ units: Math.min(paths.length, i + size), total: paths.length, entries: out.entries });
  }
  return out;
}

/** The attrs access, or undefined when the native module was not built. */
export function createAttrAccess(): AttrAccess | undefined {
  const native = load();
  if (!native) return undefined;
  return {
    scanTree: (paths, threads, onProgress) =>
      onProgress && paths.length > 1 ? scanInGroups((p, n) => native.scanTree(p, n), paths, threads, onProgress) : native.scanTree([...paths], threads),
    attrsOf(p) {
      try {
        return native.attrsOf(p);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
        throw err;
      }
    },
  };
}

/** How long past its own deadline a walk may take to come back (a thread stuck in the kernel) before it is given up on. */
const WALK_GRACE_MS = 5_000;

/**
 * The du walk (native duTree), or undefined when the module was not built (or is an older build). A walk
 * whose threads do not return by its deadline plus a grace (a syscall stuck in the kernel) resolves as
 * partial with nothing measured; the stuck thread is left behind, never waited on.
 */
export function createTreeWalker(): TreeWalker | undefined {
  const native = load();
  const du = native?.duTree?.bind(native);
  if (!du) return undefined;
  return {
    walk: (roots, opts) =>
      withDeadline(
        () => du([...roots], opts.threads, opts.timeoutMs, opts.maxEntries, [...opts.excludes], [...opts.devices]),
        opts.timeoutMs + WALK_GRACE_MS,
        () => ({ roots: roots.map(() => ({ bytes: 0, entries: 0, dev: null, kind: 'missing' as const })), entries: 0, errors: 0, partial: 'stuck' as const }),
      ),
  };
}

/**
 * statfs(2) of one path on a native thread of its own (never libuv's pool, which a hung mount would
 * hold), or undefined when the module was not built (or is an older build): host access then asks a
 * `stat -f` child. A child costs this process a fork and exec (about 10 ms of CPU at the agent's size,
 * measured); the thread about 0.15 ms. Either way the caller keeps the deadline.
 */
export function nativeStatfs(): ((path: string) => Promise<FsStats>) | undefined {
  const native = load();
  return native?.statfs?.bind(native);
}

/**
 * The tree index's synchronous calls (statAt, listStat: one per directory, each name looked up relative
 * to its directory), or undefined when the module was not built (or is an older build): the index then
 * makes them of lstatSync and readdirSync.
 */
export function nativeIndexFs(): IndexFs | undefined {
  const native = load();
  const statAt = native?.statAt?.bind(native);
  const listStat = native?.listStat?.bind(native);
  if (!statAt || !listStat) return undefined;
  // The module refuses (throws on) a path of 4095 bytes or more; the kernel cannot look one up either
  // (ENAMETOOLONG), so such a directory is unreadable, as lstatSync and readdirSync find it.
  const fits = (p: string) => Buffer.byteLength(p) < 4095;
  return {
    statAt(dir, names) {
      if (dir !== null && !fits(dir)) return new Float64Array(names.length * 6);
      if (names.every(fits)) return statAt(dir, names) ?? undefined;
      const asked = names.filter(fits);
      const got = asked.length > 0 ? statAt(dir, asked) : new Float64Array(0);
      if (!got) return undefined;
      const out = new Float64Array(names.length * 6);
      let j = 0;
      names.forEach((n, i) => {
        if (fits(n)) out.set(got.subarray(j * 6, ++j * 6), i * 6);
      });
      return out;
    },
    list: (dir, skip, max) => (fits(dir) ? listStat(dir, [...skip], max) ?? undefined : undefined),
  };
}
