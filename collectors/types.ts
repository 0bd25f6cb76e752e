// The Collector contract and the context a collector receives. The agent implements these interfaces
// and hands them in; a test hands a collector the same context over a captured host tree.
import type { Observation } from '../protocol/finding.js';
import type { ObjectSpec } from '../protocol/schema.js';

/** statfs(2) numbers for one path, in bytes and inode counts. */
export interface FsStats {
  blockSize: number;
  blocks: number;
  blocksFree: number;
  blocksAvailable: number;
  inodes: number;
  inodesFree: number;
}

export type StatfsOutcome =
  | { path: string; ok: true; stats: FsStats }
  | { path: string; ok: false; reason: 'timeout' | 'error'; error: string };

/**
 * Every host path goes through here, rooted at --host-root. Collectors never write literal /proc,
 * /sys or /var/lib paths: they ask for procPath('net/sockstat') or hostPath('/var/lib/kubelet').
 */
export interface HostAccess {
  /** The directory the host's root filesystem is seen at (`/` on a bare host, `/host` in the DaemonSet). */
  readonly root: string;
  /** `<root>/proc/<parts>` */
  procPath(...parts: (string | number)[]): string;
  /** `<root>/sys/<parts>` */
  sysPath(...parts: (string | number)[]): string;
  /** Maps an absolute path on the host to where the agent sees it. */
  hostPath(absolutePath: string): string;
  /** Reads a text file; undefined when it does not exist (ENOENT, ESRCH: a process that vanished). */
  readText(path: string): Promise<string | undefined>;
  /** Reads a binary file; undefined when it does not exist. */
  readBytes(path: string): Promise<Buffer | undefined>;
  /** Lists a directory; undefined when it does not exist. */
  list(path: string): Promise<string[] | undefined>;
  exists(path: string): Promise<boolean>;
  /**
   * statfs for host absolute paths, each answered within timeoutMs. A path that hangs (a dead NFS
   * server) answers `timeout` and is not asked again until an earlier probe of it returns.
   */
  statfs(hostPaths: readonly string[], timeoutMs: number): Promise<StatfsOutcome[]>;
  /** Numeric pids under the proc root. */
  pids(): Promise<number[]>;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs a command without a shell, always under a timeout and an output cap. */
export type Exec = (file: string, args: readonly string[], opts: { timeoutMs: number; maxBuffer?: number }) => Promise<ExecResult>;

/** Minimal logger interface; pino's Logger satisfies it. */
export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface CollectorContext<TConfig, TData> {
  /** The node name findings carry. */
  node: string;
  host: HostAccess;
  exec: Exec;
  config: TConfig;
  /** Milliseconds since the epoch; tests may pin it. */
  now(): number;
  log: Log;
  /** Aborted when the runner gives up on this collection (timeout or shutdown). */
  signal: AbortSignal;
  /** What this collector returned last time, for checks that compare cycles. */
  previous: TData | undefined;
}

export type CollectResult<TData> =
  | { kind: 'ok'; observations: Observation[]; data: TData }
  /** The check does not apply on this node (no sockstat6, no docker socket): not an error. */
  | { kind: 'no-data'; reason: string };

export interface Collector<TConfig = unknown, TData = unknown> {
  name: string;
  /** One line for --help and the README's collector table. */
  description: string;
  /** Which checks (finding names) it can raise. */
  checks: readonly string[];
  defaultIntervalMs: number;
  defaultTimeoutMs: number;
  /** Thresholds with documented defaults; validated by the agent's config loader. */
  configSpec: ObjectSpec<TConfig>;
  collect(ctx: CollectorContext<TConfig, TData>): Promise<CollectResult<TData>>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyCollector = Collector<any, any>;
