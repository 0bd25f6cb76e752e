// Host access rooted at --host-root: the only module that knows where /proc, /sys and host paths are.
import { promises as fsp, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { NodewardenError, errnoCode } from '../../protocol/errors.js';
import { ExecTimeoutError } from './exec.js';
import type { Exec, FsStats, HostAccess, StatfsOutcome } from '../../collectors/types.js';

/**
 * Errors that mean "not there (any more)": a file that does not exist, a process that exited. EINVAL
 * is what opening /proc/PID/mountinfo gives while the process's mount namespace is being torn down
 * (a container exiting as we read: seen under churn).
 */
const GONE = new Set(['ENOENT', 'ESRCH', 'ENOTDIR', 'EINVAL']);

/** Runs a read; undefined when the thing is gone, any other error is thrown. */
async function unlessGone<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    if (GONE.has(errnoCode(err) ?? '')) return undefined;
    throw err;
  }
}

/** Runs a synchronous read; undefined when the thing is gone, any other error is thrown. */
function unlessGoneSync<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (err) {
    if (GONE.has(errnoCode(err) ?? '')) return undefined;
    throw err;
  }
}

/** Per-process files of /proc whose read takes no lock a stuck process can hold (not cmdline, environ, maps: mmap_lock; not mountinfo: the namespace's lock). */
const SYNC_PID_FILES = new Set(['stat', 'status', 'cgroup', 'comm', 'limits', 'oom_score_adj']);
/** Node-wide /proc files that are counters the kernel prints. */
const SYNC_PROC_FILES = new Set(['loadavg', 'meminfo', 'stat', 'uptime', 'vmstat']);

/**
 * Pure: whether a read of this path (relative to /proc or /sys, `under`) is served synchronously.
 * These are the kernel's own counters: they never wait on a disk, a mount or another process, and a
 * read through the thread pool costs five hand-offs between threads (open, fstat, read, read, close),
 * each a futex wake and an epoll wake-up. On a busy node the agent spent a third of its CPU in those
 * context switches (perf, docs/design.md), so they are read in place, as the fd census and the
 * namespace walk already were. Everything else (container storage, mountinfo, cmdline) keeps the pool.
 */
export function readsInPlace(under: 'proc' | 'sys', rel: string): boolean {
  const parts = rel.split('/');
  if (under === 'sys') return parts[0] === 'fs' && parts[1] === 'cgroup' && parts.length > 2 && !parts.includes('..');
  if (parts.includes('..')) return false;
  if (parts.length === 1) return SYNC_PROC_FILES.has(parts[0]!);
  if (parts[0] === 'sys' || parts[0] === 'pressure') return parts.length > 1;
  if (parts[0] === 'net') return parts.length === 2 && (parts[1] === 'sockstat' || parts[1] === 'sockstat6');
  return parts.length === 2 && /^(\d+|self)$/.test(parts[0]!) && SYNC_PID_FILES.has(parts[1]!);
}

/** Checks that --host-root exists and is a directory; throws NW_ERR_HOST_ROOT otherwise. */
export function checkHostRoot(root: string): string {
  const resolved = path.resolve(root);
  let isDir = false;
  try {
    isDir = statSync(resolved).isDirectory();
  } catch (err) {
    throw new NodewardenError('NW_ERR_HOST_ROOT', `--host-root ${root}: ${errnoCode(err) === 'ENOENT' ? 'no such directory' : String(err)}`);
  }
  if (!isDir) throw new NodewardenError('NW_ERR_HOST_ROOT', `--host-root ${root}: not a directory`);
  return resolved;
}

// `stat -f` prints one record per path it could read, NUL-terminated, name last (names may hold spaces).
const STATFS_FORMAT = '%S %b %f %a %c %d %n\\0';

export function parseStatfsOutput(stdout: string): Map<string, FsStats> {
  const out = new Map<string, FsStats>();
  for (const record of stdout.split('\0')) {
    if (record === '') continue;
    const parts = record.split(' ');
    if (parts.length < 7) continue;
    const nums = parts.slice(0, 6).map(Number);
    if (nums.some((n) => !Number.isFinite(n))) continue;
    const [blockSize, blocks, blocksFree, blocksAvailable, inodes, inodesFree] = nums as [number, number, number, number, number, number];
    out.set(parts.slice(6).join(' '), { blockSize, blocks, blocksFree, blocksAvailable, inodes, inodesFree });
  }
  return out;
}

export interface HostOptions {
  root: string;
  exec: Exec;
  /**
   * statfs(2) of one (agent-side) path off the JavaScript thread and off libuv's pool (agent/host/attrs.ts
   * `nativeStatfs`); without it, statfs is asked of a `stat -f` child for all paths at once.
   */
  statfs?: (agentPath: string) => Promise<FsStats>;
}

/**
 * A path that path.join and path.resolve would leave as it is: absolute, no empty, `.` or `..` segment,
 * no trailing slash. The agent builds tens of thousands of /proc paths a minute on a busy node (every
 * process's stat, cgroup, fds); normalizing each was a tenth of its allocations.
 */
function isPlainAbsolute(p: string): boolean {
  if (p.length < 2 || p.charCodeAt(0) !== 47 || p.charCodeAt(p.length - 1) === 47) return false;
  return !p.includes('//') && !p.includes('/./') && !p.includes('/../') && !p.endsWith('/.') && !p.endsWith('/..');
}

/** path.join(base, ...parts) for a normalized base, without normalizing again when no part needs it. */
function under(base: string, parts: readonly (string | number)[]): string {
  let out = base;
  for (const part of parts) {
    const s = typeof part === 'number' ? String(part) : part;
    if (s === '' || s === '.' || s === '..' || s.includes('/')) return path.join(base, ...parts.map(String));
    out += `/${s}`;
  }
  return out;
}

export function createHostAccess(opts: HostOptions): HostAccess {
  const root = path.resolve(opts.root);
  const proc = path.join(root, 'proc');
  const sys = path.join(root, 'sys');
  // Paths whose statfs did not answer in time. They are kept out of the batch (so one dead NFS server
  // never delays the other mounts again) and probed on their own until they answer. A probe child that
  // could not even be killed is not replaced while it lives: no pile-up of stuck processes.
  const unresponsive = new Map<string, { since: number; stuckProbe?: Promise<void> }>();
  // `..` stops at the host's root, as it does on the host itself: `/dev/../../etc` is `<root>/etc`, never
  // a path of the agent's own filesystem outside --host-root.
  const hostPath = (p: string): string => (isPlainAbsolute(p) ? (root === '/' ? p : root + p) : path.join(root, path.posix.resolve('/', p)));
  const inPlace = (p: string): boolean => {
    if (p.startsWith(`${proc}/`)) return readsInPlace('proc', p.slice(proc.length + 1));
    if (p.startsWith(`${sys}/`)) return readsInPlace('sys', p.slice(sys.length + 1));
    return false;
  };

  type Batch = { kind: 'done'; stats: Map<string, FsStats> } | { kind: 'timeout'; exited: Promise<void> };
  async function statfsBatch(agentPaths: string[], timeoutMs: number): Promise<Batch> {
    try {
      const result = await opts.exec('stat', ['-f', `--printf=${STATFS_FORMAT}`, '--', ...agentPaths], { timeoutMs });
      return { kind: 'done', stats: parseStatfsOutput(result.stdout) };
    } catch (err) {
      if (err instanceof ExecTimeoutError) return { kind: 'timeout', exited: err.exited };
      if (err instanceof NodewardenError && err.code === 'NW_ERR_TIMEOUT') return { kind: 'timeout', exited: new Promise(() => undefined) };
      throw err;
    }
  }

  return {
    root,
    procPath: (...parts) => under(proc, parts),
    sysPath: (...parts) => under(sys, parts),
    hostPath,
    readText: (p) => (inPlace(p) ? Promise.resolve(unlessGoneSync(() => readFileSync(p, 'utf8'))) : unlessGone(() => fsp.readFile(p, 'utf8'))),
    readBytes: (p) => (inPlace(p) ? Promise.resolve(unlessGoneSync(() => readFileSync(p))) : unlessGone(() => fsp.readFile(p))),
    list: (p) => unlessGone(() => fsp.readdir(p)),
    async exists(p) {
      try {
        await fsp.access(p);
        return true;
      } catch {
        return false;
      }
    },
    async allocatedBytes(p) {
      try {
        return (await fsp.lstat(p)).blocks * 512;
      } catch {
        return undefined;
      }
    },
    async pids() {
      const names = readdirSync(proc); // /proc itself: in place, as its files are
      const out: number[] = [];
      for (const name of names) {
        const c = name.charCodeAt(0);
        if (c >= 48 && c <= 57) out.push(Number(name));
      }
      return out;
    },
    async statfs(hostPaths, timeoutMs) {
      const results = new Map<string, StatfsOutcome>();
      const record = (hp: string, stats: FsStats | undefined): void => {
        results.set(hp, stats ? { path: hp, ok: true, stats } : { path: hp, ok: false, reason: 'error', error: 'statfs failed' });
      };
      const markHung = (hp: string, exited: Promise<void>): void => {
        const entry = unresponsive.get(hp) ?? { since: Date.now() };
        const stuck = exited.finally(() => {
          if (entry.stuckProbe === stuck) delete entry.stuckProbe;
        });
        entry.stuckProbe = stuck;
        unresponsive.set(hp, entry);
        const since = new Date(entry.since).toISOString();
        results.set(hp, { path: hp, ok: false, reason: 'timeout', error: `statfs did not answer within ${timeoutMs} ms (not answering since ${since})` });
      };
      /** Asks one path on its own; records the answer or marks it hung. */
      const probe = async (hp: string): Promise<void> => {
        const entry = unresponsive.get(hp);
        if (entry?.stuckProbe) {
          results.set(hp, { path: hp, ok: false, reason: 'timeout', error: `an earlier statfs has not returned (not answering since ${new Date(entry.since).toISOString()})` });
          return;
        }
        const single = await statfsBatch([hostPath(hp)], timeoutMs);
        if (single.kind === 'timeout') return markHung(hp, single.exited);
        unresponsive.delete(hp);
        record(hp, single.stats.get(hostPath(hp)));
      };

      const native = opts.statfs;
      if (native) {
        // One thread per path, each with the deadline: a hung path is known at once (no batch to
        // split), and asked again only once its stuck statfs has returned.
        await Promise.all(
          hostPaths.map(async (hp) => {
            const entry = unresponsive.get(hp);
            if (entry?.stuckProbe) {
              results.set(hp, { path: hp, ok: false, reason: 'timeout', error: `an earlier statfs has not returned (not answering since ${new Date(entry.since).toISOString()})` });
              return;
            }
            const asked = native(hostPath(hp)).then(
              (stats) => ({ stats }),
              () => ({ stats: undefined }),
            );
            let timer: ReturnType<typeof setTimeout> | undefined;
            const answer = await Promise.race([asked, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)))]);
            clearTimeout(timer);
            if (answer === 'timeout') return markHung(hp, asked.then(() => undefined));
            unresponsive.delete(hp);
            record(hp, answer.stats);
          }),
        );
        return hostPaths.map((hp) => results.get(hp) ?? { path: hp, ok: false as const, reason: 'error' as const, error: 'not asked' });
      }
      const healthy = hostPaths.filter((hp) => !unresponsive.has(hp));
      const suspects = hostPaths.filter((hp) => unresponsive.has(hp));
      await Promise.all([
        ...suspects.map(probe),
        (async () => {
          if (healthy.length === 0) return;
          const batch = await statfsBatch(healthy.map(hostPath), timeoutMs);
          if (batch.kind === 'done') {
            for (const hp of healthy) record(hp, batch.stats.get(hostPath(hp)));
            return;
          }
          // Something in the batch hangs: ask each path on its own to find which.
          await Promise.all(healthy.map(probe));
        })(),
      ]);
      return hostPaths.map((hp) => results.get(hp) ?? { path: hp, ok: false as const, reason: 'error' as const, error: 'not asked' });
    },
  };
}
