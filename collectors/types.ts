// The Collector contract and the context a collector receives. The agent implements these interfaces
// and hands them in; a test hands a collector the same context over a captured host tree.
import type { EvidenceValue, Finding, Observation, Workload } from '../protocol/finding.js';
import type { ObjectSpec } from '../protocol/schema.js';
import type { Fillers, TreeWalker } from './common/fillers.js';

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
  /** The bytes a file takes on disk (lstat's blocks of 512 bytes); undefined when it does not exist. */
  allocatedBytes(path: string): Promise<number | undefined>;
  /**
   * statfs for host absolute paths, each answered within timeoutMs. A path that hangs (a dead NFS
   * server) answers `timeout` and is not asked again until an earlier probe of it returns.
   */
  statfs(hostPaths: readonly string[], timeoutMs: number): Promise<StatfsOutcome[]>;
  /** Numeric pids under the proc root. */
  pids(): Promise<number[]>;
}

/** Bits from statx: the immutable (i) and append-only (a) attributes. */
export const ATTR_IMMUTABLE = 1;
export const ATTR_APPEND = 2;

export interface AttrScan {
  entries: number;
  errors: number;
  /** Host-root-relative paths are not used here: these are the paths as given (agent view). */
  flagged: [path: string, bits: number][];
}

/** File attribute reading (statx), separate from HostAccess because it needs the native module. */
/** How far a multi-unit scan has got: units (the paths given) finished of total, entries examined so far. */
export interface ScanProgress {
  units: number;
  total: number;
  entries: number;
}

export interface AttrAccess {
  /**
   * Walks the trees with `threads` threads; does not cross filesystems or follow symlinks. With
   * `onProgress`, it reports as groups of the given paths finish (for a progress line; nothing else).
   */
  scanTree(paths: readonly string[], threads: number, onProgress?: (p: ScanProgress) => void): Promise<AttrScan>;
  /** The attribute bits of one path; undefined when it no longer exists. */
  attrsOf(path: string): number | undefined;
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

export type RuntimeName = 'docker' | 'containerd';

export interface RuntimeState {
  name: RuntimeName;
  /** The socket as the host knows it (not under --host-root). */
  socket: string;
  /**
   * absent: no socket and nothing shows the runtime belongs here (not an error); down: its socket is
   * gone or refuses connections although it answered before or its data root shows it belongs on this
   * node; unresponsive: no answer in time (then nobody asks it again until it answers a probe).
   */
  /** forbidden: its socket is there but we may not connect (EACCES: not root): we cannot look, it is not down. */
  status: 'ok' | 'absent' | 'down' | 'unresponsive' | 'error' | 'forbidden';
  error?: string;
  /** Why it is down: the socket is missing, or it refuses connections. */
  downReason?: 'socket-gone' | 'refused';
  version?: string;
  latencyMs?: number;
}

export type TaskStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING';

/** One container as docker, containerd and the kernel see it, joined by id. */
export interface RuntimeContainer {
  id: string;
  /** docker's name, or the Kubernetes container name, or the id. */
  name: string;
  /** Who manages it: docker (its containerd twin lives in namespace moby), or containerd directly (CRI). */
  manager: RuntimeName;
  /** containerd namespace (moby for docker's containers). */
  namespace?: string;
  image: string;
  labels: Record<string, string>;
  workload: Workload;
  /** running is false in restart back-off (docker's State.Restarting, pid 0): nothing runs then. */
  docker?: { status: string; running: boolean; pid: number; dead: boolean; removing: boolean; restarting?: boolean; error: string; exitCode: number; startedAt?: string; finishedAt?: string };
  /** containerd's view: whether it has the container, and its task. */
  containerd?: { known: boolean; task?: { status: TaskStatus; pid: number; exitStatus: number } };
  /** Host paths of the container's storage: writable layer, merged rootfs, container dir. */
  storage: { upperDir?: string; mergedDir?: string; lowerDirs?: string[]; containerDir?: string };
}

export interface RuntimeSnapshot {
  runtimes: RuntimeState[];
  containers: RuntimeContainer[];
  takenAt: number;
  /**
   * Runtimes whose containers are the last known ones, not read now (it did not answer): good for
   * attribution (which container owns a path), never for judging their state.
   */
  stale?: RuntimeName[];
}

export interface RuntimeAccess {
  /**
   * The joined view, cached for a couple of seconds so collectors in one cycle share it. Never throws.
   * `since`: only a view taken at or after this time will do (a fresh read for confirmation).
   */
  snapshot(opts?: { since?: number }): Promise<RuntimeSnapshot>;
  /**
   * Image layer directories (host paths, e.g. /var/lib/docker/overlay2/ID) -> the image that uses
   * them (its first tag, else its id); undefined when docker cannot tell. Asked only when a flagged
   * file has no container. Never throws.
   */
  imageLayers?(): Promise<Map<string, string> | undefined>;
  /** Asks each runtime whether it answers (the probe: the one call allowed to wait on a frozen runtime). Never throws. */
  ping(): Promise<RuntimeState[]>;
  /** The newest view any reader has finished, without asking anyone (undefined before the first). */
  latest?(): RuntimeSnapshot | undefined;
  /**
   * How long a suspicion about runtime state waits before it is read again and confirmed: longer than
   * the window in which a starting or exiting container looks inconsistent across docker, containerd
   * and the kernel.
   */
  readonly settleMs: number;
  /** The containerd namespaces read (runtime.containerdNamespaces): what is in any other is not judged. */
  readonly namespaces?: readonly string[];
}

/** One kernel log record from /dev/kmsg. facility 0 is the kernel itself; userspace writes are never 0. */
export interface KmsgRecord {
  seq: number;
  facility: number;
  level: number;
  /** Monotonic microseconds since boot, as the kernel stamped it. */
  usec: number;
  /** usec as wall-clock milliseconds since the epoch. */
  wallMs: number;
  message: string;
  /** Old kernels' continuation flags (joined by the reader). */
  cont?: 'start' | 'more';
  /** The record's KEY=VALUE lines (SUBSYSTEM, DEVICE). */
  dict?: Record<string, string>;
}

/** What one read of the kernel log gave: new records, and what was lost since the last read. */
export interface KernelLogBatch {
  /** absent: no /dev/kmsg here (no data); error: it could not be read (reopened next time). */
  status: 'ok' | 'absent' | 'error';
  error?: string;
  records: KmsgRecord[];
  /** Records the ring overwrote before they were read (sequence gaps), exact. */
  lost: number;
  /** EPIPE answers (ring overflows) in this read. */
  overflows: number;
  /** True when the per-read cap stopped the read before the ring was drained. */
  more?: boolean;
  bootId?: string;
}

/** The kernel log, read from where the last read stopped (a restarted agent resumes from its cursor). */
export interface KernelLog {
  read(): Promise<KernelLogBatch>;
  /** The reader's own health and totals (records, lost, overflows, errors, reopens). */
  health(): { ok: boolean; error?: string; totals: Record<string, number> };
}

export interface CollectorContext<TConfig, TData> {
  /** The node name findings carry. */
  node: string;
  host: HostAccess;
  exec: Exec;
  /** Container runtimes; every collector may use them, none may assume they answer. */
  runtime: RuntimeAccess;
  /** statx attributes; undefined when the native module is not built. */
  attrs: AttrAccess | undefined;
  config: TConfig;
  /** Milliseconds since the epoch; tests may pin it. */
  now(): number;
  log: Log;
  /** Aborted when the runner gives up on this collection (timeout or shutdown). */
  signal: AbortSignal;
  /** What this collector returned last time, for checks that compare cycles. */
  previous: TData | undefined;
  /**
   * True when something asked for this collector to run again at once (a runtime event: a container
   * died or its removal failed): long work (a paced sweep) should yield early, the runner re-runs it.
   */
  rerunRequested?(): boolean;
  /**
   * True when this run was asked for by a runtime event rather than the schedule: do the urgent part
   * (a container stuck in removal) and leave background work (the paced sweep) to scheduled runs.
   */
  triggered?: boolean;
  /** The node's pods from the API server; undefined where the agent has none (check, tests). */
  pods?: PodAccess;
  /** This node's own Node object and its pods' probe failures, from the API server; undefined without one. */
  kube?: NodeAccess;
  /** The kernel log reader (one per process); undefined where there is none. */
  kmsg?: KernelLog;
  /** The du measurement (what fills nodefs and imagefs), made in the background; undefined where there is none. */
  fillers?: FillersAccess;
  /** The du walk (the native module), for measuring a few directories now; undefined without the module. */
  walker?: TreeWalker;
  /** The runner's firing findings (other collectors' confirmed ones); empty where there is no runner. */
  active?: () => readonly Finding[];
  /**
   * Where long work says how far along it is (check's progress line on a terminal); absent in the
   * agent and in tests. A collector only calls it; it never waits on it or changes what it does.
   */
  progress?(p: CollectorProgress): void;
  /**
   * Confirmation across runs (the agent's runner): suspects and what they rested on, kept from one run
   * to the next, so that a run only reads and its timeout measures the reads. Absent (check, tests):
   * confirmSuspects waits the settle windows within the run (see `pausing`).
   */
  confirmations?: ConfirmationStore;
  /** Asks the runner for another run in `ms` (the next confirming read of a suspect is due then). */
  rerunIn?(ms: number): void;
  /**
   * True when this run is one that rerunIn asked for: suspects first seen in it wait for the schedule
   * (on a busy node every read catches some container in transition, and each asking for its own early
   * read kept drift reading every 2 s at a 30 s interval).
   */
  confirming?: boolean;
  /** This run is about to wait `ms` on purpose (confirmation within one run): its deadline moves by as much. */
  pausing?(ms: number): void;
}

/** One suspect carried between runs: the facts it rests on, when first seen so, and how many reads agreed. */
export interface CarriedSuspect {
  facts: string;
  firstSeen: number;
  reads: number;
}
/** Per collector, kept by the runner: check and subject -> the carried suspect. */
export type ConfirmationStore = Map<string, CarriedSuspect>;

/** One step of a collector's long work: `scanning storage 120/400 units, 1,234,567 entries`. */
export interface CollectorProgress {
  /** What is being done, lower case: `scanning storage`. */
  step: string;
  done?: number;
  total?: number;
  /** Unit of done/total: `units`. */
  unit?: string;
  /** Entries (files, directories) examined so far. */
  entries?: number;
}

/** The reason a collector gives when the kernel refused it (EACCES, EPERM): `check` and `up` look for it. */
export const PERMISSION_DENIED = 'permission denied (nodewarden needs root on a node)';

export type CollectResult<TData> =
  | { kind: 'ok'; observations: Observation[]; data: TData }
  /** The check does not apply on this node (no sockstat6, no docker socket): not an error. */
  | { kind: 'no-data'; reason: string; /** Handed to the next run as `previous` (never reported as data): what a search already ruled out. */ carry?: TData }
  /**
   * Something it depends on does not answer (a frozen runtime, reported by its own check): the
   * collector's earlier findings stand, because not knowing is not healthy.
   */
  | { kind: 'unavailable'; reason: string };

export interface Collector<TConfig = unknown, TData = unknown> {
  name: string;
  /** One line for --help and the collector tables (README, docs/collectors.md). */
  description: string;
  /** Which checks (finding names) it can raise. */
  checks: readonly string[];
  /**
   * What each of its checks means to Kubernetes: the NodeCondition type it sets on the agent's Node,
   * or null when it sets none (pod.stuck goes to its Pod as an Event). Every check has an entry (a
   * test holds this), so a new check cannot silently go without a condition; the Kubernetes
   * exporter's table and docs/kubernetes.md's list of conditions derive from these.
   */
  conditions: Readonly<Record<string, string | null>>;
  defaultIntervalMs: number;
  defaultTimeoutMs: number;
  /**
   * Deadlines one run may have to wait out, as config keys: a top-level key (`runtime.timeout`) or a
   * key of the collector's own section (`sweepSlice`). Its timeout must be longer than their sum, so
   * that what it waits on reports the hang (runtime.unresponsive) before the runner reports
   * collector.timeout. The agent's config loader derives and checks timeouts from this.
   */
  waitsFor?: readonly string[];
  /** Thresholds with documented defaults; validated by the agent's config loader. */
  configSpec: ObjectSpec<TConfig>;
  collect(ctx: CollectorContext<TConfig, TData>): Promise<CollectResult<TData>>;
}

/** Any collector, whatever its config and data types: what the registry and the runner hold. */
export type AnyCollector = Collector<any, any>;

/** One container status of a pod, as the API server reports it (only what the diagnosis needs). */
export interface PodContainerStatus {
  name: string;
  /** The runtime's id without the scheme (docker://, containerd://), when it has one. */
  containerId?: string;
  state: 'waiting' | 'running' | 'terminated' | 'unknown';
  /** For waiting: ContainerCreating, CreateContainerError...; for terminated: Completed, Error... */
  reason?: string;
  message?: string;
  /** When the container last finished, if it ever did (a container waiting to start again). */
  finishedAt?: string;
  /** status.containerStatuses[].restartCount: how many times kubelet has restarted it. */
  restartCount?: number;
  /** Its latest termination: the current state when terminated, else lastState.terminated (crash loops). */
  lastTermination?: { reason?: string; exitCode?: number; signal?: number; finishedAt?: string };
  /** From the pod's spec, by container name: resources.limits.memory as written (`256Mi`). */
  memoryLimit?: string;
  /** From the pod's spec: its liveness probe, in one line (`HTTP GET :8080/healthz every 10s, 3 failures`). */
  livenessProbe?: string;
}

/**
 * A pod bound to this node, reduced to the fields the stuck check and its diagnosis read. The agent keeps
 * one of these per pod instead of the whole object: memory stays bounded on a node with many pods.
 */
export interface PodInfo {
  uid: string;
  namespace: string;
  name: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  startTime?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  terminationGracePeriodSeconds?: number;
  finalizers: string[];
  /** kind/name of each owner (the controller a finalizer's remedy names). */
  owners: string[];
  phase?: string;
  /** spec.nodeName: the node the pod is bound to (the aggregator accepts pod.stuck only from that node). */
  nodeName?: string;
  containers: PodContainerStatus[];
  /** Volume names, for the kubelet dirs the diagnosis looks at. */
  volumes: string[];
  /** Its local-storage limits (pod.ephemeral), only when the spec sets one. */
  storage?: PodStorageLimits;
  /** Evicted for local storage: which bound kubelet's status.message names (present only for such an eviction). */
  eviction?: EphemeralEviction;
}

/**
 * What a pod may write to the node's disk before kubelet evicts it: each container's
 * `resources.limits['ephemeral-storage']` (its writable layer and logs), the pod's (the sum of those set,
 * against all its containers' layers and logs and its emptyDirs, as kubelet's PodLimits counts), and each
 * emptyDir's `sizeLimit`. Bytes.
 */
export interface EphemeralEviction {
  /** emptyDir over its sizeLimit, a container over its limit, the pod over the sum, or node pressure (DiskPressure ranking by use over request). */
  scope: 'emptyDir' | 'container' | 'pod' | 'node-pressure';
  volume?: string;
  container?: string;
  /** Bytes, when kubelet's quantity parses. */
  limit?: number;
  /** node-pressure: each container kubelet named, what it used and what it requested, in bytes. */
  usage: { container: string; bytes: number; request: number }[];
}

export interface PodStorageLimits {
  containers: { name: string; limit?: number }[];
  /** Every emptyDir; `memory`: medium Memory (tmpfs: RAM, not the node's disk, not measured here). */
  emptyDirs: { name: string; sizeLimit?: number; memory: boolean }[];
}

export type PodListState =
  /** No API server configured: the pod checks do not apply (no-data). */
  | { status: 'absent'; reason: string }
  /** Listing or watching failed, or the first list has not completed: what we know may be stale. */
  | { status: 'unsynced'; reason: string; pods: PodInfo[] }
  | { status: 'synced'; pods: PodInfo[]; resourceVersion: string };

/** One cause in the diagnosis walk: checked or not, found or not, and the facts. */
export interface DiagnosisStep {
  cause: 'finalizers' | 'immutable' | 'mount-held' | 'drift' | 'runtime' | 'volumes';
  /** False when the cause could not be examined (no native module, a runtime that does not answer). */
  checked: boolean;
  found: boolean;
  /** One sentence: what was seen, or what was ruled out. */
  summary: string;
  /** The command a person runs for this cause, when found. */
  remedy?: string;
  facts: Record<string, EvidenceValue>;
}

export interface PodDiagnosis {
  steps: DiagnosisStep[];
  /** The pod's containers the runtime knows, by id and name. */
  containers: { id: string; name: string; state: string }[];
}

/** The node's pods, as the agent's watcher knows them, and the targeted diagnosis of one. */
export interface PodAccess {
  list(): PodListState;
  /** Walks the causes in the runbooks' order for one pod. `active` are the runner's firing findings (confirmed drift). */
  diagnose(pod: PodInfo, active: readonly Finding[], signal: AbortSignal): Promise<PodDiagnosis>;
}

/** The Node's Ready condition as the API server has it (kubelet writes it). */
export interface NodeReady {
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  /** kubelet's message, bounded: `PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s`. */
  message: string;
  lastTransitionTime?: string;
}

export type NodeReadyState =
  /** No API server configured: the Node's conditions are not read (no-data for that part). */
  | { status: 'absent'; reason: string }
  /** The Node could not be read lately (or not yet): `last` is what the last good read said, if any. */
  | { status: 'unsynced'; reason: string; last?: { ready: NodeReady | undefined; readAt: number } }
  /** Read at `readAt`; `ready` undefined when the Node has no Ready condition (kubelet never posted one). */
  | { status: 'synced'; ready: NodeReady | undefined; readAt: number };

/** One pod on this node whose probes kubelet reported failing (Events with reason Unhealthy). */
export interface ProbeFailure {
  namespace: string;
  pod: string;
  /** Liveness, Readiness or Startup (from the Event's message). */
  probe: 'Liveness' | 'Readiness' | 'Startup';
  /** Failures within the window (the Events' counts added up). */
  count: number;
  /** When the last of them was seen (ms since the epoch). */
  lastSeen: number;
  /** The last Event's message, bounded (`Liveness probe failed: Get "http://10.0.0.7:8080/healthz": context deadline exceeded`). */
  message: string;
}

export type ProbeFailureState =
  | { status: 'absent'; reason: string }
  | { status: 'unsynced'; reason: string }
  /** `scanned`: Events read; `truncated`: more matched than the agent reads; `stale`: why the last list failed (this is the one before). */
  | { status: 'synced'; failures: ProbeFailure[]; readAt: number; scanned: number; truncated: boolean; stale?: string };

/**
 * One of kubelet's reports that image GC could not free what it wanted: an Event on this Node with
 * reason ImageGCFailed or FreeDiskSpaceFailed, reduced (collectors/common/image-gc.ts reads the message).
 */
export interface KubeletGcEvent {
  reason: 'ImageGCFailed' | 'FreeDiskSpaceFailed';
  /** kubelet's message, bounded: `failed to garbage collect required amount of images. Wanted to free 6089891840 bytes, but freed 0 bytes`. */
  message: string;
  /** How many times kubelet reported it (the Event's count, or its series' count). */
  count: number;
  /** When it was first and last reported (ms since the epoch). */
  firstSeen: number;
  lastSeen: number;
}

export type KubeletGcEventState =
  | { status: 'absent'; reason: string }
  /** `forbidden`: the API server refused the list (403): the agent has no permission to list Events. */
  | { status: 'unsynced'; reason: string; forbidden?: boolean }
  /** `scanned`: this Node's Warning Events read; `truncated`: more than the agent reads; `stale`: why the last list failed (this is the one before). */
  | { status: 'synced'; events: KubeletGcEvent[]; readAt: number; scanned: number; truncated: boolean; stale?: string };

/**
 * The agent's view of its own Node and of the probe failures on it, read from the API server in the
 * background (every read under the client's timeout): a collector only reads the last answer, so a
 * slow or hostile API server never holds a collector up.
 */
export interface NodeAccess {
  ready(): NodeReadyState;
  /**
   * Probe failures on this node's pods within `windowMs`, as last read. Asking is what makes the agent
   * read them (a list of Events is costly at the cluster's scale): the answer may be one read behind.
   */
  probeFailures(windowMs: number): ProbeFailureState;
  /**
   * kubelet's image-GC failures on this Node (its Events), as last read. Asking is what makes the agent
   * read them, at most once a minute: the answer may be one read behind.
   */
  kubeletGcFailures(): KubeletGcEventState;
}

/** A du measurement and when it finished (ms since the epoch). */
export interface MeasuredFillers {
  fillers: Fillers;
  takenAt: number;
  /**
   * The largest consumers (refreshRoots of the last measurement) re-measured since, incrementally (no
   * full walk): bytes per consumer path, and when. Absent until a refresh finished.
   */
  refreshed?: { takenAt: number; bytes: Record<string, number> };
}

/**
 * The du measurement (collectors/common/fillers.ts) is a walk of whole filesystems: too slow for a
 * collector's run. The agent makes it in the background, one at a time, and hands out the last one.
 */
export interface FillersAccess {
  /**
   * The last measurement (none older than 3 x everyMs: the node has changed since); starts a new one
   * in the background when the last is older than everyMs and none is running. Never throws, never
   * waits on the walk. With `refresh`, it also starts (when none runs) an incremental refresh of the
   * last measurement's largest consumers, for their growth; the next call returns it.
   */
  get(everyMs: number, opts?: { refresh?: boolean }): Promise<MeasuredFillers | undefined>;
}
