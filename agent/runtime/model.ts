// The runtime model: asks docker and containerd (probe, lists, inspects, snapshot mounts, with their caches
// and the frozen-runtime rules) and hands their replies to the pure join in join.ts. Collectors read it
// through RuntimeAccess; nothing here depends on docker, ctr or crictl binaries.
import type { HostAccess, RuntimeAccess, RuntimeContainer, RuntimeName, RuntimeSnapshot, RuntimeState } from '../../collectors/types.js';
import { ContainerdClient, type ContainerdContainer, type ContainerdTask } from './containerd.js';
import { DockerClient, DockerError, type DockerContainerInspect } from './docker.js';
import { runtimeEvidence } from './expected.js';
import { NodewardenError } from '../../protocol/errors.js';
import { withDeadline } from '../../protocol/deadline.js';
import { containerdOwn, joinRuntimes, snapshotDirsFromMounts, snapshotKeyOf, type ContainerdReplies, type DockerReplies, type SnapshotDirs } from './join.js';

export interface RuntimeSettings {
  dockerSocket: string;
  containerdSocket: string;
  containerdNamespaces: string[];
  timeout: number;
  /** Confirmation's settle window (ms); see RuntimeAccess.settleMs. */
  settle?: number;
  /** Data roots: when they hold a runtime's state, a missing socket means down, not absent. */
  dockerRoot?: string;
  containerdRoot?: string;
}

/** How long the evidence that a runtime with no socket belongs here is trusted before it is read again. */
export const EVIDENCE_MAX_AGE_MS = 60_000;

/** How long a runtime that timed out is left alone (only the probe asks it) before anyone else tries. */
export const UNRESPONSIVE_HOLD_MS = 15_000;
/** A running container's cached docker inspect is asked again at least this often (see Runtimes.inspect). */
export const RUNNING_INSPECT_MAX_AGE_MS = 30_000;
/** How long a namespace's container list is kept at most before it is listed whole again. */
export const CONTAINERD_LIST_MAX_AGE_MS = 60_000;
/** A runtime that answered this recently is not probed again before a snapshot's reads (they tell). */
export const PROBE_REUSE_MS = 10_000;
/** New containers asked one by one per snapshot at most; past it the whole list is cheaper. */
const CONTAINERD_GETS_MAX = 16;

const errCode = (err: unknown) => (err as { code?: string } | undefined)?.code;
const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Connection refused, or the socket file vanished between our look and the connect. */
export function connectFailure(err: unknown): 'refused' | 'socket-gone' | undefined {
  const causes: unknown[] = [err, (err as { cause?: unknown } | undefined)?.cause];
  for (const c of causes) {
    const code = errCode(c);
    if (code === 'ECONNREFUSED') return 'refused';
    if (code === 'ENOENT') return 'socket-gone';
  }
  const text = errText(err);
  if (/ECONNREFUSED/.test(text)) return 'refused';
  if (/ENOENT/.test(text)) return 'socket-gone';
  return undefined;
}

/**
 * Pure: what a cached docker inspect of a container not running is kept for: its state and its status
 * without the age docker appends ("Exited (137) 3 seconds ago" -> "exited/Exited (137)"). The age changes
 * every second while nothing else does: keyed by it, every snapshot inspected every stopped container
 * again (each inspect waits while docker holds that container's lock). A restart or a new ending sends
 * an event that drops the entry (invalidate(id)).
 */
export function inspectKey(state: string, status: string | undefined): string {
  const s = (status ?? '').replace(/\s+(?:About |Less than )?(?:an? |\d+ )?[A-Za-z]+ ago$/, '');
  return `${state}/${s}`;
}

export class Runtimes implements RuntimeAccess {
  readonly docker: DockerClient;
  readonly containerd: ContainerdClient;
  readonly settleMs: number;
  readonly namespaces: readonly string[];
  private cached: { at: number; fresh: boolean; value: Promise<RuntimeSnapshot> } | undefined;
  /**
   * Whether docker's event stream is being followed now (the agent sets it): then a stopped container's
   * cached inspect is dropped by its own start or die event, and a fresh read may keep it. Without it
   * (`check`, `why`, a stream that is down) a fresh read inspects every container again.
   */
  eventsFollowed: () => boolean = () => false;
  /** Inspects in flight; invalidate() marks them: an answer that may predate the event is not kept. */
  private readonly inflight = new Map<string, { overtaken: boolean }>();
  private readonly inspectCache = new Map<string, { key: string; value: DockerContainerInspect; at: number }>();
  /**
   * By snapshotKeyOf(): a containerd container's snapshot dirs, with the container (namespace, id, creation
   * time) they were asked for. Served only to that same container (a key reused by a later one, as `ctr run`
   * reuses the id, is asked again); dropped when containerd deletes it (forget()) and, when a namespace is
   * listed whole, for every container no longer in it: on a busy node it grew by one entry per container.
   */
  private readonly snapshotDirCache = new Map<string, { ns: string; id: string; createdAt: string | undefined; dirs: SnapshotDirs }>();
  /** A runtime that timed out: nobody but the probe waits on it again until it answers (or the hold ends). */
  private readonly unresponsive = new Map<RuntimeName, { at: number; state: RuntimeState }>();
  private readonly probes = new Map<RuntimeName, Promise<RuntimeState>>();
  /** Runtimes that answered at least once in this process: a socket that vanishes afterwards is down. */
  private readonly answered = new Set<RuntimeName>();
  /** The last containers each runtime reported, kept for attribution while it does not answer. */
  private readonly lastKnown = new Map<RuntimeName, RuntimeContainer[]>();
  /** Calls that waited out runtime.timeout, per runtime (a frozen runtime should cost one per cycle). */
  readonly timeouts: Record<RuntimeName, number> = { docker: 0, containerd: 0 };

  constructor(
    private readonly host: HostAccess,
    readonly settings: RuntimeSettings,
    private readonly now: () => number = Date.now,
    private readonly maxAgeMs = 2000,
  ) {
    this.docker = new DockerClient(host.hostPath(settings.dockerSocket), settings.timeout);
    this.containerd = new ContainerdClient(host.hostPath(settings.containerdSocket), settings.timeout);
    this.settleMs = settings.settle ?? 2000;
    this.namespaces = settings.containerdNamespaces;
  }

  private socketOf(name: RuntimeName): string {
    return name === 'docker' ? this.settings.dockerSocket : this.settings.containerdSocket;
  }

  private readonly evidence = new Map<RuntimeName, { at: number; why: string | undefined }>();

  /**
   * Why a runtime whose socket is missing belongs here (then it is down), or undefined (absent): see
   * expected.ts. Asked again at most every EVIDENCE_MAX_AGE_MS (it walks the process table for kubelet).
   */
  private async belongsHere(name: RuntimeName): Promise<string | undefined> {
    const hit = this.evidence.get(name);
    if (hit && this.now() - hit.at < EVIDENCE_MAX_AGE_MS) return hit.why;
    const root = name === 'docker' ? this.settings.dockerRoot ?? '/var/lib/docker' : this.settings.containerdRoot ?? '/var/lib/containerd';
    const why = await runtimeEvidence(this.host, name, root);
    this.evidence.set(name, { at: this.now(), why });
    return why;
  }

  /** Records a call's failure: a timeout makes the runtime unresponsive for everyone but the probe. */
  private failed(name: RuntimeName, err: unknown, latencyMs: number): RuntimeState {
    const socket = this.socketOf(name);
    if (errCode(err) === 'NW_ERR_TIMEOUT') {
      // One wait, one count: a snapshot's overall deadline and the call it was waiting on end together.
      const held = this.unresponsive.get(name);
      if (!held || this.now() - held.at >= this.settings.timeout) this.timeouts[name] += 1;
      const state: RuntimeState = { name, socket, status: 'unresponsive', error: errText(err), latencyMs };
      this.unresponsive.set(name, { at: this.now(), state });
      return state;
    }
    if (/\bE(ACCES|PERM)\b/.test(`${errCode(err) ?? ''} ${errCode((err as { cause?: unknown } | undefined)?.cause) ?? ''} ${errText(err)}`)) {
      return { name, socket, status: 'forbidden', error: `permission denied on ${socket}`, latencyMs };
    }
    const how = connectFailure(err);
    if (how) return { name, socket, status: 'down', downReason: how, error: errText(err), latencyMs };
    return { name, socket, status: 'error', error: errText(err), latencyMs };
  }

  private async state(name: RuntimeName, call: () => Promise<string>): Promise<RuntimeState> {
    const socket = this.socketOf(name);
    if (!(await this.host.exists(this.host.hostPath(socket)))) {
      if (this.answered.has(name)) return { name, socket, status: 'down', downReason: 'socket-gone', error: `${socket} is gone, though ${name} answered on it earlier` };
      const why = await this.belongsHere(name);
      if (why) return { name, socket, status: 'down', downReason: 'socket-gone', error: `${socket} does not exist, though ${why}` };
      return { name, socket, status: 'absent' };
    }
    const started = this.now();
    try {
      const version = await call();
      this.answered.add(name);
      this.unresponsive.delete(name);
      const state: RuntimeState = { name, socket, status: 'ok', version, latencyMs: this.now() - started };
      this.answeredAt.set(name, { at: this.now(), state });
      return state;
    } catch (err) {
      return this.failed(name, err, this.now() - started);
    }
  }

  /** One probe per runtime at a time: every caller during it shares its answer (and its one timeout). */
  private probe(name: RuntimeName): Promise<RuntimeState> {
    const inFlight = this.probes.get(name);
    if (inFlight) return inFlight;
    const p = this.state(name, () => (name === 'docker' ? this.docker.ping() : this.containerd.version())).finally(() => this.probes.delete(name));
    this.probes.set(name, p);
    return p;
  }

  /** The last time each runtime answered (a probe, or all of a snapshot's calls), with the probe's state then. */
  private readonly answeredAt = new Map<RuntimeName, { at: number; state: RuntimeState }>();

  /**
   * For everyone but the probe: a runtime that timed out recently is unresponsive without asking it; one
   * that answered within PROBE_REUSE_MS is taken as up without a probe of its own (the snapshot's own
   * calls then tell: a refused or timed-out list marks it so). Every snapshot began with a ping and a
   * version call, a fifth of the runtime calls under churn.
   */
  private async stateForRead(name: RuntimeName): Promise<RuntimeState> {
    const held = this.unresponsive.get(name);
    if (held && this.now() - held.at < UNRESPONSIVE_HOLD_MS) {
      return { ...held.state, error: `${held.state.error ?? 'no answer'} (at ${new Date(held.at).toISOString()}; not asked again until it answers the runtime probe)` };
    }
    const recent = this.answeredAt.get(name);
    if (recent && this.now() - recent.at < PROBE_REUSE_MS && (await this.host.exists(this.host.hostPath(this.socketOf(name))))) return { ...recent.state };
    return this.probe(name);
  }

  ping(): Promise<RuntimeState[]> {
    return Promise.all([this.probe('docker'), this.probe('containerd')]);
  }

  snapshot(opts: { since?: number } = {}): Promise<RuntimeSnapshot> {
    const now = this.now();
    // A read asked to be fresh is served only by a fresh one taken since: a plain snapshot (kept inspects,
    // a kept containerd list) started after `since` is still not a confirmation.
    if (this.cached && now - this.cached.at < this.maxAgeMs && (opts.since === undefined || (this.cached.fresh && this.cached.at >= opts.since))) return this.cached.value;
    const fresh = opts.since !== undefined;
    const value = this.take(fresh);
    this.cached = { at: now, fresh, value };
    void value.then((snap) => {
      if (!this.newest || snap.takenAt >= this.newest.takenAt) this.newest = snap;
    });
    return value;
  }

  private newest: RuntimeSnapshot | undefined;

  latest(): RuntimeSnapshot | undefined {
    return this.newest;
  }

  /**
   * docker's inspect of one container, cached. A stopped container's does not change until it starts
   * again (an event drops its entry, invalidate(id)); a running one's (its pid) changes only when it
   * restarts, which sends a start event too; a running one is still asked again at least every
   * RUNNING_INSPECT_MAX_AGE_MS. A fresh read inspects every running container again, and every stopped
   * one too unless docker's events are being followed: `check` and `why` have none, and a container
   * that exited, restarted and exited again with the same code has the same state key for both lives.
   * In the agent the events drop a stopped container's entry when it starts or dies, so a firing finding
   * (which keeps every run of its collector fresh) does not re-inspect hundreds of exited containers
   * each run. Without the cache every snapshot of a busy node inspected every container.
   */
  private async inspect(id: string, stateKey: string, fresh: boolean): Promise<DockerContainerInspect> {
    const hit = this.inspectCache.get(id);
    const running = stateKey.startsWith('running');
    const key = running ? 'running' : stateKey;
    const keep = running ? !fresh && this.now() - (hit?.at ?? 0) < RUNNING_INSPECT_MAX_AGE_MS : !fresh || this.eventsFollowed();
    if (hit && hit.key === key && keep) return hit.value;
    const mark = { overtaken: false };
    this.inflight.set(id, mark);
    try {
      const value = await this.docker.inspect(id);
      // An event about it while the inspect was out (a restart): this answer may be from before it.
      if (!mark.overtaken) this.inspectCache.set(id, { key, value, at: this.now() });
      return value;
    } finally {
      if (this.inflight.get(id) === mark) this.inflight.delete(id);
    }
  }

  /**
   * The asking: each runtime's replies (or its state when it does not answer), then the pure join.
   * Each runtime is asked in parallel, and all its calls together (probe, lists, inspects, snapshot
   * mounts) get one runtime.timeout: a runtime that freezes half-way costs one timeout per snapshot,
   * not one per call (a containerd frozen between its version and its lists cost 5 s per namespace and
   * per new container, and runs at 2 s intervals timed out behind it).
   */
  private async take(fresh = false): Promise<RuntimeSnapshot> {
    const takenAt = this.now();
    const budget = this.settings.timeout;
    // The calls still out when the budget ends name what hangs (`docker inspect of container 4f1c2d9e7a41
    // (/web)`): kubelet's PLEG waits on the same runtime, and one container it cannot inspect is a known cause.
    const pending: Record<RuntimeName, Set<string>> = { docker: new Set(), containerd: new Set() };
    const track = <T>(name: RuntimeName, what: string, call: Promise<T>): Promise<T> => {
      pending[name].add(what);
      return call.finally(() => pending[name].delete(what));
    };
    const overrun = (name: RuntimeName) => {
      const out = [...pending[name]];
      const waiting = out.length > 0 ? `; still waiting on ${out.slice(0, 3).join(', ')}${out.length > 3 ? ` and ${out.length - 3} more` : ''}` : '';
      return new NodewardenError('NW_ERR_TIMEOUT', `${name} did not answer all of one snapshot's calls within ${budget} ms${waiting}`);
    };
    let containerdState!: RuntimeState;
    let dockerState!: RuntimeState;
    // A runtime that fails a call now is marked so in `runtimes` (the probe's answer is updated in place).
    const failedNow = (name: RuntimeName, state: RuntimeState, err: unknown): RuntimeState => Object.assign(state, this.failed(name, err, this.now() - takenAt));

    const askContainerd = async (signal: AbortSignal): Promise<ContainerdReplies | RuntimeState> => {
      containerdState = await this.stateForRead('containerd');
      if (containerdState.status !== 'ok') return containerdState;
      const replies = new Map<string, { containers: ContainerdContainer[]; tasks: ContainerdTask[] }>();
      const answers = await Promise.all(
        this.settings.containerdNamespaces.map(async (ns) => {
          const tasks = await track('containerd', `the tasks of namespace ${ns}`, this.containerd.tasks(ns));
          return [await track('containerd', `the containers of namespace ${ns}`, this.containerdContainers(ns, tasks, fresh)), tasks] as const;
        }),
      );
      this.settings.containerdNamespaces.forEach((ns, i) => replies.set(ns, { containers: answers[i]![0], tasks: answers[i]![1] }));
      if (signal.aborted) throw overrun('containerd');
      return replies;
    };
    const askDocker = async (): Promise<DockerReplies | RuntimeState> => {
      dockerState = await this.stateForRead('docker');
      if (dockerState.status !== 'ok') return dockerState;
      const list = await track('docker', 'the list of containers', this.docker.containers());
      // A 404 is a container removed between list and inspect; anything else (a timeout) is the runtime's.
      const inspected = await Promise.all(
        list.map((c) =>
          track('docker', `the inspect of container ${c.Id.slice(0, 12)}${c.Names?.[0] ? ` (${c.Names[0]})` : ''}`, this.inspect(c.Id, inspectKey(c.State, c.Status), fresh)).catch((err: unknown) => {
            if (err instanceof DockerError && err.statusCode === 404) return undefined;
            throw err;
          }),
        ),
      );
      const live = new Set(list.map((c) => c.Id));
      for (const id of this.inspectCache.keys()) if (!live.has(id)) this.inspectCache.delete(id);
      const byId = new Map<string, DockerContainerInspect>();
      list.forEach((c, i) => {
        const ins = inspected[i];
        if (ins) byId.set(c.Id, ins);
      });
      return { list, inspected: byId };
    };
    const settle = async <T>(name: RuntimeName, work: (signal: AbortSignal) => Promise<T | RuntimeState>): Promise<T | RuntimeState> => {
      try {
        return await withDeadline(work, budget, () => overrun(name));
      } catch (err) {
        const state = (name === 'docker' ? dockerState : containerdState) ?? { name, socket: this.socketOf(name), status: 'ok' };
        const failed = failedNow(name, state, err);
        if (name === 'docker') dockerState = failed;
        else containerdState = failed;
        return failed;
      }
    };
    const [containerd, docker] = await Promise.all([settle('containerd', askContainerd), settle('docker', askDocker)]);
    const runtimes = [dockerState, containerdState];
    for (const st of runtimes) {
      const recent = this.answeredAt.get(st.name);
      if (st.status === 'ok' && recent) recent.at = this.now();
    }

    // Snapshot mounts of containerd's own containers: what is left of the budget, then they wait for
    // the next snapshot (uncached: an unknown dir is only less attribution, never a finding).
    const snapshotDirs = new Map<string, SnapshotDirs>();
    const until = takenAt + budget;
    for (const { ns, container } of containerdOwn(docker, containerd)) {
      const key = snapshotKeyOf(ns, container);
      if (!key || snapshotDirs.has(key)) continue;
      const left = until - this.now();
      const dirs = this.keptDirs(key, ns, container) ?? (left > 0 ? await withDeadline(this.snapshotDirs(key, ns, container), left, () => undefined) : undefined);
      if (dirs) snapshotDirs.set(key, dirs);
    }

    const lastKnown = Object.fromEntries(this.lastKnown);
    const { containers, stale } = joinRuntimes({ docker, containerd, snapshotDirs, lastKnown });
    for (const name of ['docker', 'containerd'] as const) {
      const st = name === 'docker' ? dockerState : containerdState;
      if (st.status === 'ok') this.lastKnown.set(name, containers.filter((c) => c.manager === name));
    }
    const snap: RuntimeSnapshot = { runtimes, containers, takenAt };
    if (stale) snap.stale = stale;
    return snap;
  }

  /**
   * A namespace's containers. The whole list is most of a megabyte on a node with a few dozen
   * containers (each carries its OCI spec), and on a busy node every snapshot is a new one (each runtime
   * event drops the cached view): listing it each time was a quarter of a megabyte a second for the
   * garbage collector. So the list is kept: a task whose container it lacks is asked for on its own
   * (Containers/Get), a container containerd announced deleted leaves it (forget()), and it is listed
   * whole again at least every CONTAINERD_LIST_MAX_AGE_MS, after a gap in the events (invalidate()), and
   * for every fresh read (a confirming read never rests on a kept list). A kept list may miss a
   * container created without a task until then: such a container runs nothing and holds no mount.
   */
  private async containerdContainers(ns: string, tasks: readonly ContainerdTask[], fresh: boolean): Promise<ContainerdContainer[]> {
    const kept = this.containerdLists.get(ns);
    if (!fresh && kept && this.now() - kept.at < CONTAINERD_LIST_MAX_AGE_MS) {
      const missing = [...new Set(tasks.map((t) => t.containerId))].filter((id) => !kept.byId.has(id));
      if (missing.length <= CONTAINERD_GETS_MAX) {
        const got = await Promise.all(missing.map((id) => this.containerd.container(ns, id)));
        got.forEach((c) => c && kept.byId.set(c.id, c));
        return [...kept.byId.values()];
      }
    }
    const list = await this.containerd.containers(ns);
    const byId = new Map(list.map((c) => [c.id, c]));
    this.containerdLists.set(ns, { at: this.now(), byId });
    // The whole namespace: snapshot dirs kept for a container it no longer holds go (a missed delete event).
    for (const [key, e] of this.snapshotDirCache) if (e.ns === ns && !this.sameContainer(e, ns, byId.get(e.id))) this.snapshotDirCache.delete(key);
    return list;
  }

  /** containerd deleted this container (its /containers/delete event): it leaves the kept lists, its snapshot dirs too. */
  forget(id: string, namespace?: string): void {
    for (const [ns, kept] of this.containerdLists) if (namespace === undefined || ns === namespace) kept.byId.delete(id);
    for (const [key, e] of this.snapshotDirCache) if (e.id === id && (namespace === undefined || e.ns === namespace)) this.snapshotDirCache.delete(key);
  }

  /** How many containers' snapshot dirs are kept (tests; the cache must not outgrow the node's containers). */
  get snapshotDirsKept(): number {
    return this.snapshotDirCache.size;
  }

  private sameContainer(e: { ns: string; id: string; createdAt: string | undefined }, ns: string, c: ContainerdContainer | undefined): boolean {
    return c !== undefined && e.ns === ns && e.id === c.id && e.createdAt === c.createdAt;
  }

  /** The kept snapshot dirs of exactly this container (not of an earlier one that had its key). */
  private keptDirs(key: string, ns: string, c: ContainerdContainer): SnapshotDirs | undefined {
    const e = this.snapshotDirCache.get(key);
    return e && this.sameContainer(e, ns, c) ? e.dirs : undefined;
  }

  /** A snapshot's dirs, asked of containerd once per snapshot (a failed ask is asked again next time). */
  private async snapshotDirs(key: string, ns: string, c: ContainerdContainer): Promise<SnapshotDirs> {
    const hit = this.keptDirs(key, ns, c);
    if (hit) return hit;
    try {
      const dirs = snapshotDirsFromMounts(await this.containerd.snapshotMounts(ns, c.snapshotter, c.snapshotKey));
      this.snapshotDirCache.set(key, { ns, id: c.id, createdAt: c.createdAt, dirs });
      return dirs;
    } catch {
      return {};
    }
  }

  private readonly imageLayerCache = new Map<string, string[]>();
  /** Each containerd namespace's containers, kept between snapshots (containerdContainers()). */
  private readonly containerdLists = new Map<string, { at: number; byId: Map<string, ContainerdContainer> }>();

  /** Undefined when docker cannot tell (then no layer may be called orphaned). */
  async imageLayers(): Promise<Map<string, string> | undefined> {
    const out = new Map<string, string>();
    const state = await this.stateForRead('docker');
    if (state.status !== 'ok') return undefined;
    try {
      const images = await this.docker.images();
      const live = new Set(images.map((i) => i.Id));
      for (const id of this.imageLayerCache.keys()) if (!live.has(id)) this.imageLayerCache.delete(id);
      for (const img of images) {
        let dirs = this.imageLayerCache.get(img.Id);
        if (!dirs) {
          const ins = await this.docker.inspectImage(img.Id);
          const gd = ins.GraphDriver.Data ?? {};
          dirs = [...(gd['LowerDir'] ?? '').split(':'), gd['UpperDir'] ?? ''].filter(Boolean).map((d) => d.replace(/\/diff$/, ''));
          this.imageLayerCache.set(img.Id, dirs);
        }
        const name = img.RepoTags?.find((t) => t !== '<none>:<none>') ?? img.Id.replace(/^sha256:/, '').slice(0, 12);
        for (const d of dirs) if (!out.has(d)) out.set(d, name);
      }
    } catch (err) {
      if (errCode(err) === 'NW_ERR_TIMEOUT') this.failed('docker', err, 0);
      return undefined;
    }
    return out;
  }

  /**
   * The next snapshot is read afresh (a runtime event says the cached view is out of date); with an id,
   * that container's cached inspect goes too; without one (a gap in the events), every cached inspect.
   */
  invalidate(id?: string): void {
    this.cached = undefined;
    if (id === undefined) {
      this.inspectCache.clear();
      this.containerdLists.clear();
      for (const m of this.inflight.values()) m.overtaken = true;
    } else {
      this.inspectCache.delete(id);
      const m = this.inflight.get(id);
      if (m) m.overtaken = true;
    }
  }

  close(): void {
    this.containerd.close();
  }
}
