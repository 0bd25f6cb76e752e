// The du measurement's incremental refresh: the allocated bytes under a few roots (the largest consumers
// of the last full walk), re-measured without walking them again. The first refresh of a root indexes it
// (every directory with its mtime and ctime, the bytes of the files in it); later ones stat each known
// directory, re-list only those whose mtime or ctime changed (an entry added, removed or renamed), and
// re-stat only the files worth watching, since appending to a file changes its size but not its directory:
// files of 1 MiB or more, and the 32 most recently written of those listed (a writer writes a few files; a
// freshly written tree of thousands must not cost a stat each). A small old file that starts growing is
// seen at the next full walk. Hard links are counted once per link here (the full walk counts them once):
// a series of refreshes is compared with itself, never with the walk.
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import path from 'node:path';
import { REFRESH_MAX_ENTRIES } from '../../collectors/common/fillers.js';
import { nativeIndexFs } from './attrs.js';

/** Files at least this large are re-stat'ed at every refresh. */
export const TRACK_BYTES = 1024 * 1024;
/** Files written this recently (at indexing) may be growing: the most recent of them are re-stat'ed at every refresh. */
export const RECENT_MS = 10 * 60_000;
/** How many of the recently written files per root are re-stat'ed (a writer writes a few files; a fresh tree of many must not cost a stat each). */
export const MAX_RECENT = 32;
/** At most this many large files per root are re-stat'ed; the rest wait for the full walk. */
export const MAX_TRACKED = 1_000;
/**
 * A root is indexed only while it holds at most MAX_ROOT_ENTRIES entries (indexing costs a stat per
 * entry, about 5 microseconds of CPU warm from the native calls, 9 from lstatSync), and all roots together at most MAX_DIRS directories (an
 * unchanged refresh costs a stat per directory at every disk run while a filesystem fills, about 23
 * microseconds each: on this machine's root 9,336 calls were 0.22 s of CPU a run, 1,650 calls 25 ms).
 * A larger root (a data root of millions of files) is left to the full walk: unbounded, with every
 * filesystem over its warning, the agent re-indexed a root of millions of entries at every run
 * (242 millicores, 244 MiB peak).
 */
export const MAX_ROOT_ENTRIES = REFRESH_MAX_ENTRIES;
export const MAX_DIRS = 2_500;
/** A root found over its budget is not tried again for this long while it stays asked for. */
export const OVER_BUDGET_RETRY_MS = 60 * 60_000;

interface DirNode {
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Bytes of the directory itself and of its files that are not tracked. */
  own: number;
  tracked: Map<string, number>;
  subdirs: Map<string, DirNode>;
}

interface RootIndex {
  dev: number;
  /** A directory root, or the bytes of a root that is a file. */
  node: DirNode | { file: number };
  tracked: number;
}

export interface RefreshResult {
  /** Bytes per root (as given), for the roots measured; a root that is gone or over the budget is absent. */
  bytes: Record<string, number>;
  /** lstat and readdir calls made: the cost, for the bench. */
  calls: number;
  /** Entries indexed anew (first refresh of a root, or directories that changed). */
  indexed: number;
  /** Roots over their budget (found now or within the last OVER_BUDGET_RETRY_MS): not measured. */
  overBudget: string[];
}

class OverBudget extends Error {}

/** One entry's stat: kind 0 gone (or unreadable, or a mount point not looked up), 1 directory, 2 regular file, 3 other. */
interface Lite {
  kind: number;
  dev: number;
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Allocated bytes (st_blocks * 512). */
  bytes: number;
}

/**
 * The index's calls, one per directory: the stats of some names in a directory (`dir` null: the names
 * are whole paths), and a directory's listing with the stat of each entry (names in `skip` are never
 * looked up: mount points; past `max` entries, the names only). undefined when the directory cannot be opened. Stats are ST_FIELDS numbers
 * per name, as the native module's statAt and listStat return them.
 */
export interface IndexFs {
  statAt(dir: string | null, names: string[]): Float64Array | undefined;
  list(dir: string, skip: readonly string[], max?: number): { names: string[]; stats: Float64Array } | undefined;
}

const ST_FIELDS = 6;
const lite = (a: Float64Array, i: number): Lite => {
  const o = i * ST_FIELDS;
  return { kind: a[o]!, dev: a[o + 1]!, ino: a[o + 2]!, mtimeMs: a[o + 3]!, ctimeMs: a[o + 4]!, bytes: a[o + 5]! };
};

/** The same calls made of lstatSync and readdirSync, where the native module is not built. */
export const jsIndexFs: IndexFs = {
  statAt(dir, names) {
    const out = new Float64Array(names.length * ST_FIELDS);
    names.forEach((n, i) => putStats(out, i, dir === null ? n : path.join(dir, n)));
    return out;
  },
  list(dir, skip, max) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return undefined;
    }
    if (max !== undefined && names.length > max) return { names, stats: new Float64Array(0) };
    const out = new Float64Array(names.length * ST_FIELDS);
    names.forEach((n, i) => {
      if (!skip.includes(n)) putStats(out, i, path.join(dir, n));
    });
    return { names, stats: out };
  },
};

function putStats(out: Float64Array, i: number, p: string): void {
  let st: Stats | undefined;
  try {
    st = lstatSync(p, { throwIfNoEntry: false });
  } catch {
    st = undefined;
  }
  if (!st) return;
  out.set([st.isDirectory() ? 1 : st.isFile() ? 2 : 3, st.dev, st.ino, st.mtimeMs, st.ctimeMs, st.blocks * 512], i * ST_FIELDS);
}

const join = (dir: string, name: string) => (dir.endsWith('/') ? dir + name : `${dir}/${name}`);

/**
 * The refresher keeps one index per root between calls; a root not asked for is forgotten. `hostPath`
 * maps a host path to where the agent sees it (--host-root). `maxEntries` bounds what one call indexes
 * anew for one root, `maxDirs` the directories all roots' indexes hold (the roots are taken in the
 * order given, so the first, largest, come first): a root past either is not measured
 * (the full walk still is), nor tried again for OVER_BUDGET_RETRY_MS.
 */
export function createTreeIndex(opts: { hostPath?: (p: string) => string; maxEntries?: number; maxDirs?: number; now?: () => number; mountPoints?: () => Promise<ReadonlySet<string>>; fs?: IndexFs } = {}): { refresh(roots: readonly string[]): Promise<RefreshResult> } {
  const hostPath = opts.hostPath ?? ((p: string) => p);
  const maxEntries = opts.maxEntries ?? MAX_ROOT_ENTRIES;
  const maxDirs = opts.maxDirs ?? MAX_DIRS;
  const now = opts.now ?? Date.now;
  const fs = opts.fs ?? nativeIndexFs() ?? jsIndexFs;
  let indexes = new Map<string, RootIndex>();
  /** Roots found over their budget, with when. */
  let overBudget = new Map<string, number>();

  return {
    async refresh(roots) {
      const out: RefreshResult = { bytes: {}, calls: 0, indexed: 0, overBudget: [] };
      const next = new Map<string, RootIndex>();
      const nextOver = new Map<string, number>();
      // entries: indexed anew for the root at hand; dirs: held by the roots measured so far and this one.
      const budget = { entries: 0, dirs: 0 };
      const t = now();
      // Never stat a mount point under a root (a dead NFS server hangs the call): it is another
      // filesystem, and a directory indexed before something was mounted on it is dropped.
      const mounts = (await opts.mountPoints?.()) ?? new Set<string>();
      const mountsIn = new Map<string, string[]>();
      for (const m of mounts) {
        const dir = path.dirname(m);
        mountsIn.set(dir, [...(mountsIn.get(dir) ?? []), path.basename(m)]);
      }
      let sinceYield = 0;
      /** Counts `n` calls, yielding to the event loop every 256 (the calls are synchronous). */
      const pace = async (n: number) => {
        out.calls += n;
        sinceYield += n;
        if (sinceYield >= 256) {
          sinceYield = 0;
          await new Promise((r) => setImmediate(r));
        }
      };
      /**
       * Synchronous calls, one per directory (a few microseconds an entry warm, where a promise per
       * lstat costs tens: indexing 127,000 entries of /usr took 6.4 s of CPU with promises), never on a
       * mount point. Synchronous calls are why the index lives on a worker thread.
       */
      const statAt = async (dir: string, names: string[]): Promise<(Lite | undefined)[]> => {
        const asked = names.filter((n) => !mounts.has(join(dir, n)));
        if (asked.length === 0) return names.map(() => undefined);
        await pace(asked.length);
        const a = fs.statAt(dir, asked);
        const got = new Map<string, Lite>();
        if (a) asked.forEach((n, i) => {
          const l = lite(a, i);
          if (l.kind !== 0) got.set(n, l);
        });
        return names.map((n) => got.get(n));
      };

      type Recent = { node: DirNode; name: string; bytes: number; mtimeMs: number };
      const scan = async (p: string, st: Lite, dev: number, old: DirNode | undefined, idx: { tracked: number; recent: Recent[] }): Promise<DirNode> => {
        if (old && old.ino === st.ino && old.mtimeMs === st.mtimeMs && old.ctimeMs === st.ctimeMs) {
          // The listing is the same: only the watched files and the subdirectories can have changed.
          const node: DirNode = { ...old, tracked: new Map(), subdirs: new Map() };
          const files = [...old.tracked.keys()];
          const dirs = [...old.subdirs.keys()];
          budget.dirs += dirs.length;
          if (budget.dirs > maxDirs) throw new OverBudget();
          const stats = files.length + dirs.length > 0 ? await statAt(p, [...files, ...dirs]) : [];
          files.forEach((name, i) => {
            const f = stats[i];
            if (f) node.tracked.set(name, f.bytes);
          });
          for (const [i, name] of dirs.entries()) {
            const c = stats[files.length + i];
            if (c?.kind === 1 && c.dev === dev) node.subdirs.set(name, await scan(join(p, name), c, dev, old.subdirs.get(name), idx));
          }
          idx.tracked += node.tracked.size;
          return node;
        }
        // A root's host path can end in a slash ("/" under --host-root is "/host/"), the mount points' directories never do.
        // More entries than the budget has room for: their names only, none looked up (the root is dropped).
        const listed = fs.list(p, mountsIn.get(p.replace(/\/+$/, '') || '/') ?? [], maxEntries - budget.entries);
        const names = listed?.names ?? [];
        await pace(1 + (listed ? listed.stats.length / ST_FIELDS : 0));
        budget.entries += names.length;
        out.indexed += names.length;
        if (budget.entries > maxEntries || ++budget.dirs > maxDirs) throw new OverBudget();
        const node: DirNode = { ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, own: st.bytes, tracked: new Map(), subdirs: new Map() };
        const dirs: [string, Lite][] = [];
        names.forEach((name, i) => {
          const e = lite(listed!.stats, i);
          if (e.kind === 0 || e.dev !== dev) return; // vanished, or another filesystem mounted here: not ours
          // A name that is not UTF-8 cannot be looked up again by its decoded name: counted here, never entered or watched.
          const lossy = name.includes('\uFFFD');
          if (e.kind === 1 && !lossy) dirs.push([name, e]);
          else if (e.kind === 2 && !lossy && e.bytes >= TRACK_BYTES && idx.tracked < MAX_TRACKED) {
            node.tracked.set(name, e.bytes);
            idx.tracked++;
          } else {
            node.own += e.bytes;
            if (e.kind === 2 && !lossy && t - e.mtimeMs < RECENT_MS) idx.recent.push({ node, name, bytes: e.bytes, mtimeMs: e.mtimeMs });
          }
        });
        for (const [name, e] of dirs) node.subdirs.set(name, await scan(join(p, name), e, dev, old?.subdirs.get(name), idx));
        return node;
      };
      const total = (n: DirNode): number => {
        let b = n.own;
        for (const v of n.tracked.values()) b += v;
        for (const c of n.subdirs.values()) b += total(c);
        return b;
      };

      for (const root of new Set(roots)) {
        const over = overBudget.get(root);
        if (over !== undefined && t - over < OVER_BUDGET_RETRY_MS) {
          nextOver.set(root, over);
          out.overBudget.push(root);
          continue;
        }
        budget.entries = 0;
        const dirsBefore = budget.dirs;
        const at = hostPath(root);
        let st: Lite | undefined;
        if (!mounts.has(at)) {
          await pace(1);
          const a = fs.statAt(null, [at]);
          st = a ? lite(a, 0) : undefined;
        }
        if (!st || st.kind === 0) continue;
        const old = indexes.get(root);
        const oldDir = old && old.dev === st.dev && 'ino' in old.node ? old.node : undefined;
        try {
          if (st.kind === 1) {
            const idx = { tracked: 0, recent: [] as Recent[] };
            const node = await scan(at, st, st.dev, oldDir, idx);
            // The most recently written files listed in this refresh are watched too: they may be growing.
            for (const r of idx.recent.sort((a, b) => b.mtimeMs - a.mtimeMs).slice(0, MAX_RECENT)) {
              r.node.own -= r.bytes;
              r.node.tracked.set(r.name, r.bytes);
            }
            next.set(root, { dev: st.dev, node, tracked: idx.tracked });
            out.bytes[root] = total(node);
          } else {
            next.set(root, { dev: st.dev, node: { file: st.bytes }, tracked: 0 });
            out.bytes[root] = st.bytes;
          }
        } catch (err) {
          if (!(err instanceof OverBudget)) throw err;
          budget.dirs = dirsBefore;
          nextOver.set(root, t);
          out.overBudget.push(root);
        }
      }
      indexes = next;
      overBudget = nextOver;
      return out;
    },
  };
}

function workerUrl(): URL {
  // Compiled: ./tree-index-worker.js; under tap's TypeScript loader: the .ts source.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./tree-index-worker${ext}`, import.meta.url);
}

/**
 * The agent's refresher: the same index on a worker thread, each refresh under a deadline. The index's
 * unchanged-tree path is a synchronous lstat (cheap, but a filesystem that hangs in the kernel would hang
 * the thread that makes it): on the worker, a hung call costs that thread only. A refresh past its
 * deadline fails, and the refresher stops for good (the stuck thread is left behind, unref'ed, never
 * waited on); the full walk, with its own deadline, still measures.
 */
export function createTreeIndexWorker(opts: { hostRoot: string; timeoutMs: number; maxEntries?: number; mountPoints: () => Promise<ReadonlySet<string>> }): { refresh(roots: readonly string[]): Promise<RefreshResult>; close(): Promise<void> } {
  let worker: import('node:worker_threads').Worker | undefined;
  let stuck: string | undefined;
  let seq = 0;
  return {
    async refresh(roots) {
      if (stuck) throw new Error(stuck);
      const mounts = [...(await opts.mountPoints())];
      if (!worker) {
        const { Worker } = await import('node:worker_threads');
        worker = new Worker(workerUrl(), { workerData: { hostRoot: opts.hostRoot, ...(opts.maxEntries ? { maxEntries: opts.maxEntries } : {}) } });
        worker.unref();
        worker.on('error', () => undefined);
      }
      const w = worker;
      const id = ++seq;
      return new Promise<RefreshResult>((resolve, reject) => {
        const done = (fn: () => void) => {
          clearTimeout(timer);
          w.off('message', onMessage);
          w.off('exit', onExit);
          fn();
        };
        const onMessage = (m: { id: number; result?: RefreshResult; error?: string }) => {
          if (m.id === id) done(() => (m.error !== undefined ? reject(new Error(m.error)) : resolve(m.result!)));
        };
        const onExit = (code: number) => {
          worker = undefined;
          done(() => reject(new Error(`the refresh worker exited (${code})`)));
        };
        const timer = setTimeout(() => {
          stuck = `a refresh did not come back within ${Math.round(opts.timeoutMs / 1000)} s (a filesystem call stuck in the kernel): refreshes stopped, the full walk still measures`;
          done(() => reject(new Error(stuck)));
        }, opts.timeoutMs);
        w.on('message', onMessage);
        w.on('exit', onExit);
        w.postMessage({ id, roots: [...roots], mounts });
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      if (w && !stuck) await w.terminate();
    },
  };
}
