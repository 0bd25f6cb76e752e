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

/** Files at least this large are re-stat'ed at every refresh. */
export const TRACK_BYTES = 1024 * 1024;
/** Files written this recently (at indexing) may be growing: the most recent of them are re-stat'ed at every refresh. */
export const RECENT_MS = 10 * 60_000;
/** How many of the recently written files per root are re-stat'ed (a writer writes a few files; a fresh tree of many must not cost a stat each). */
export const MAX_RECENT = 32;
/** At most this many large files per root are re-stat'ed; the rest wait for the full walk. */
export const MAX_TRACKED = 1_000;
/**
 * A root is indexed only while it holds at most MAX_ROOT_ENTRIES entries (indexing costs an lstat per
 * entry, about 12 microseconds of CPU warm), and all roots together at most MAX_DIRS directories (an
 * unchanged refresh costs an lstat per directory at every disk run while a filesystem fills, about 23
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

const allocated = (st: Stats): number => st.blocks * 512;

/**
 * The refresher keeps one index per root between calls; a root not asked for is forgotten. `hostPath`
 * maps a host path to where the agent sees it (--host-root). `maxEntries` bounds what one call indexes
 * anew for one root, `maxDirs` the directories all roots' indexes hold (the roots are taken in the
 * order given, so the first, largest, come first): a root past either is not measured
 * (the full walk still is), nor tried again for OVER_BUDGET_RETRY_MS.
 */
export function createTreeIndex(opts: { hostPath?: (p: string) => string; maxEntries?: number; maxDirs?: number; now?: () => number; mountPoints?: () => Promise<ReadonlySet<string>> } = {}): { refresh(roots: readonly string[]): Promise<RefreshResult> } {
  const hostPath = opts.hostPath ?? ((p: string) => p);
  const maxEntries = opts.maxEntries ?? MAX_ROOT_ENTRIES;
  const maxDirs = opts.maxDirs ?? MAX_DIRS;
  const now = opts.now ?? Date.now;
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
      let sinceYield = 0;
      const pace = async () => {
        if (++sinceYield >= 256) {
          sinceYield = 0;
          await new Promise((r) => setImmediate(r));
        }
      };
      /**
       * Synchronous lstat (a few microseconds warm, where a promise costs tens: indexing 127,000
       * entries of /usr took 6.4 s of CPU with promises), yielding to the event loop every 256 calls;
       * never a mount point. Synchronous calls are why the index lives on a worker thread.
       */
      const stat = async (p: string): Promise<Stats | undefined> => {
        if (mounts.has(p)) return undefined;
        out.calls++;
        await pace();
        try {
          return lstatSync(p, { throwIfNoEntry: false });
        } catch {
          return undefined;
        }
      };
      const list = async (p: string): Promise<string[]> => {
        out.calls++;
        await pace();
        try {
          return readdirSync(p);
        } catch {
          return [];
        }
      };

      type Recent = { node: DirNode; name: string; bytes: number; mtimeMs: number };
      const scan = async (p: string, st: Stats, dev: number, old: DirNode | undefined, idx: { tracked: number; recent: Recent[] }): Promise<DirNode> => {
        if (old && old.ino === st.ino && old.mtimeMs === st.mtimeMs && old.ctimeMs === st.ctimeMs) {
          // The listing is the same: only the watched files and the subdirectories can have changed.
          const node: DirNode = { ...old, tracked: new Map(), subdirs: new Map() };
          for (const name of old.tracked.keys()) {
            const f = await stat(path.join(p, name));
            if (f) node.tracked.set(name, allocated(f));
          }
          for (const [name, child] of old.subdirs) {
            if (++budget.dirs > maxDirs) throw new OverBudget();
            const c = await stat(path.join(p, name));
            if (c?.isDirectory() && c.dev === dev) node.subdirs.set(name, await scan(path.join(p, name), c, dev, child, idx));
          }
          idx.tracked += node.tracked.size;
          return node;
        }
        const names = await list(p);
        budget.entries += names.length;
        out.indexed += names.length;
        if (budget.entries > maxEntries || ++budget.dirs > maxDirs) throw new OverBudget();
        const node: DirNode = { ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, own: allocated(st), tracked: new Map(), subdirs: new Map() };
        const stats: (Stats | undefined)[] = [];
        for (const n of names) stats.push(await stat(path.join(p, n)));
        const dirs: [string, Stats][] = [];
        names.forEach((name, i) => {
          const e = stats[i];
          if (!e || e.dev !== dev) return; // vanished, or another filesystem mounted here: not ours
          if (e.isDirectory()) dirs.push([name, e]);
          else if (e.isFile() && allocated(e) >= TRACK_BYTES && idx.tracked < MAX_TRACKED) {
            node.tracked.set(name, allocated(e));
            idx.tracked++;
          } else {
            node.own += allocated(e);
            if (e.isFile() && t - e.mtimeMs < RECENT_MS) idx.recent.push({ node, name, bytes: allocated(e), mtimeMs: e.mtimeMs });
          }
        });
        for (const [name, e] of dirs) node.subdirs.set(name, await scan(path.join(p, name), e, dev, old?.subdirs.get(name), idx));
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
        const st = await stat(hostPath(root));
        if (!st) continue;
        const old = indexes.get(root);
        const oldDir = old && old.dev === st.dev && 'ino' in old.node ? old.node : undefined;
        try {
          if (st.isDirectory()) {
            const idx = { tracked: 0, recent: [] as Recent[] };
            const node = await scan(hostPath(root), st, st.dev, oldDir, idx);
            // The most recently written files listed in this refresh are watched too: they may be growing.
            for (const r of idx.recent.sort((a, b) => b.mtimeMs - a.mtimeMs).slice(0, MAX_RECENT)) {
              r.node.own -= r.bytes;
              r.node.tracked.set(r.name, r.bytes);
            }
            next.set(root, { dev: st.dev, node, tracked: idx.tracked });
            out.bytes[root] = total(node);
          } else {
            next.set(root, { dev: st.dev, node: { file: allocated(st) }, tracked: 0 });
            out.bytes[root] = allocated(st);
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
