// The agent's own Node as the API server has it (its Ready condition: kubelet's "PLEG is not healthy"
// and every other NotReady), read by a paced GET, and the probe failures kubelet reported on this node's
// pods (Events with reason Unhealthy) and kubelet's image-GC failures on the Node (ImageGCFailed,
// FreeDiskSpaceFailed), each listed only while a collector asks for them. All are read in the
// background, each call under the client's timeout, and kept reduced; collectors read the last answer
// (NodeAccess), so a slow, huge or malformed answer costs the agent one bounded read and a reason, never
// a collector run.
import type { KubeletGcEvent, KubeletGcEventState, Log, NodeAccess, NodeReady, NodeReadyState, ProbeFailure, ProbeFailureState } from '../../collectors/types.js';
import { errorMessage } from '../../protocol/errors.js';
import { sleep } from '../../protocol/deadline.js';
import { BackgroundLoop } from './background.js';
import { KubeError, type KubeClient } from './client.js';

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** A Node is kilobytes (its image list is capped at 50 by kubelet); more is not a Node worth reading. */
export const NODE_MAX_BODY = 4 * 1024 * 1024;

/** Pure: the Ready condition of a Node object; undefined when it has none (or it is not well-formed). */
export function nodeReady(raw: unknown): NodeReady | undefined {
  const conditions = obj(obj(raw)?.['status'])?.['conditions'];
  if (!Array.isArray(conditions)) return undefined;
  const c = conditions.map(obj).find((x) => x?.['type'] === 'Ready');
  const status = str(c?.['status']);
  if (!c || (status !== 'True' && status !== 'False' && status !== 'Unknown')) return undefined;
  const out: NodeReady = { status, reason: (str(c['reason']) ?? '').slice(0, 128), message: (str(c['message']) ?? '').slice(0, 1000) };
  const at = str(c['lastTransitionTime']);
  if (at) out.lastTransitionTime = at.slice(0, 64);
  return out;
}

/** One Unhealthy Event reduced to what the finding reads. */
export interface ProbeEvent {
  namespace: string;
  pod: string;
  uid?: string;
  probe: ProbeFailure['probe'];
  count: number;
  lastSeen: number;
  message: string;
}

/**
 * Pure: an Event about a failing probe of a pod on `node` (kubelet's `Unhealthy`, "Liveness probe failed:
 * ..."), reduced; undefined for anything else. The Event is this node's when kubelet on this node
 * reported it (source.host, or reportingInstance in events.k8s.io's shape) or when it is about one of
 * this node's pods (`podUids`, from the pod watcher).
 */
export function toProbeEvent(raw: unknown, node: string, podUids?: ReadonlySet<string>): ProbeEvent | undefined {
  const ev = obj(raw);
  const involved = obj(ev?.['involvedObject']) ?? obj(ev?.['regarding']);
  if (!ev || !involved || ev['reason'] !== 'Unhealthy' || involved['kind'] !== 'Pod') return undefined;
  const namespace = str(involved['namespace']);
  const pod = str(involved['name']);
  const uid = str(involved['uid']);
  const host = str(obj(ev['source'])?.['host']) ?? str(obj(ev['deprecatedSource'])?.['host']) ?? str(ev['reportingInstance']);
  if (!namespace || !pod || !(host === node || (uid !== undefined && podUids?.has(uid)))) return undefined;
  const message = str(ev['message']) ?? str(ev['note']) ?? '';
  const m = /^(Liveness|Readiness|Startup) probe (?:failed|errored)/.exec(message);
  if (!m) return undefined;
  const seen = eventSeen(ev);
  if (!seen) return undefined;
  return { namespace: namespace.slice(0, 253), pod: pod.slice(0, 253), ...(uid ? { uid } : {}), probe: m[1] as ProbeFailure['probe'], count: seen.count, lastSeen: seen.lastSeen, message: message.slice(0, 300) };
}

/** When an Event (core v1 or events.k8s.io/v1) was last and first seen, and how often; undefined without a time. */
function eventSeen(ev: Json): { lastSeen: number; firstSeen: number; count: number } | undefined {
  const meta = obj(ev['metadata']);
  const series = obj(ev['series']);
  const time = (t: string | undefined) => (t ? Date.parse(t) : NaN);
  const lastSeen = [str(ev['lastTimestamp']), str(series?.['lastObservedTime']), str(ev['eventTime']), str(ev['firstTimestamp']), str(meta?.['creationTimestamp'])].map(time).find(Number.isFinite);
  if (lastSeen === undefined) return undefined;
  const first = [str(ev['firstTimestamp']), str(ev['eventTime']), str(meta?.['creationTimestamp'])].map(time).find(Number.isFinite);
  const count = Math.max(1, Math.min(1e6, Math.floor(num(ev['count']) ?? num(series?.['count']) ?? 1)));
  return { lastSeen, firstSeen: first !== undefined && first <= lastSeen ? first : lastSeen, count };
}

const GC_REASONS: ReadonlySet<string> = new Set(['ImageGCFailed', 'FreeDiskSpaceFailed']);

/**
 * Pure: kubelet's report that image GC could not free enough (an Event on the Node `node` with reason
 * ImageGCFailed or FreeDiskSpaceFailed), reduced and bounded; undefined for anything else. kubelet
 * records Node events with the node's name as involvedObject (or `regarding` in events.k8s.io/v1).
 */
export function toKubeletGcEvent(raw: unknown, node: string): KubeletGcEvent | undefined {
  const ev = obj(raw);
  const involved = obj(ev?.['involvedObject']) ?? obj(ev?.['regarding']);
  const reason = str(ev?.['reason']);
  if (!ev || !involved || !reason || !GC_REASONS.has(reason) || involved['kind'] !== 'Node' || involved['name'] !== node) return undefined;
  const message = str(ev['message']) ?? str(ev['note']);
  const seen = eventSeen(ev);
  if (!message || !seen) return undefined;
  return { reason: reason as KubeletGcEvent['reason'], message: message.slice(0, 1000), ...seen };
}

/** Pure: probe failures last seen within `windowMs` of `now`, per pod and probe, most failures first. */
export function summariseProbeFailures(events: readonly ProbeEvent[], now: number, windowMs: number): ProbeFailure[] {
  const by = new Map<string, ProbeFailure>();
  for (const e of events) {
    if (now - e.lastSeen > windowMs) continue;
    const key = `${e.namespace}/${e.pod}/${e.probe}`;
    const had = by.get(key);
    if (!had) by.set(key, { namespace: e.namespace, pod: e.pod, probe: e.probe, count: e.count, lastSeen: e.lastSeen, message: e.message });
    else {
      had.count += e.count;
      if (e.lastSeen >= had.lastSeen) Object.assign(had, { lastSeen: e.lastSeen, message: e.message });
    }
  }
  return [...by.values()].sort((a, b) => b.count - a.count || a.namespace.localeCompare(b.namespace) || a.pod.localeCompare(b.pod));
}

export interface NodeViewOptions {
  client: KubeClient;
  node: string;
  log: Log;
  /** This node's pods' uids (the pod watcher's), to claim Events kubelet posted without source.host. */
  podUids?: () => ReadonlySet<string> | undefined;
  /** How often the Node is read. */
  pollMs?: number;
  /** Probe failures are listed again once the last list is this old (only while asked for). */
  eventsMaxAgeMs?: number;
  /** Events per page, and at most this many read per list: the rest are not counted (`truncated`). */
  pageSize?: number;
  maxEvents?: number;
  /** kubelet's image-GC failures are listed again once the last list is this old (only while asked for). */
  gcEventsMaxAgeMs?: number;
  /** At most this many of them kept (the latest). */
  maxGcEvents?: number;
  now?: () => number;
}

/** This Node's Warning Events: kubelet's ImageGCFailed and FreeDiskSpaceFailed are among them (a field selector cannot OR two reasons). */
export function nodeWarningsSelector(node: string): string {
  return `involvedObject.kind=Node,involvedObject.name=${node},type=Warning`;
}

/** Why a list failed, as the state says it: a 403 is "no permission", with what to grant. */
function listFailure(what: string, err: unknown): { reason: string; forbidden?: boolean } {
  if (err instanceof KubeError && err.status === 403) return { reason: `no permission to list ${what} (403: the agent's ClusterRole needs events: list): ${errorMessage(err)}`, forbidden: true };
  return { reason: `cannot list ${what}: ${errorMessage(err)}` };
}

/** The Events the agent lists: kubelet's probe failures about pods, cluster-wide (no field selects a node). */
export const PROBE_EVENTS_SELECTOR = 'involvedObject.kind=Pod,reason=Unhealthy';

/** Thrown from inside a list to end it once `maxEvents` were read. */
class EnoughEvents extends Error {}

export class NodeView extends BackgroundLoop implements NodeAccess {
  private readyState: NodeReadyState = { status: 'unsynced', reason: 'the Node has not been read yet' };
  private last: { ready: NodeReady | undefined; readAt: number } | undefined;
  private probes: ProbeFailureState = { status: 'unsynced', reason: 'probe failures have not been listed yet' };
  private probeEvents: ProbeEvent[] = [];
  private listing: Promise<void> | undefined;
  private gc: KubeletGcEventState = { status: 'unsynced', reason: "kubelet's image-GC events have not been listed yet" };
  private gcListing: Promise<void> | undefined;
  private gcProblem: string | undefined;
  private lastProblem: string | undefined;
  stats = { reads: 0, readErrors: 0, lists: 0, listErrors: 0, gcLists: 0, gcListErrors: 0 };

  constructor(private readonly opts: NodeViewOptions) {
    super();
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  ready(): NodeReadyState {
    return this.readyState;
  }

  probeFailures(windowMs: number): ProbeFailureState {
    const at = this.probes.status === 'synced' ? this.probes.readAt : undefined;
    if (!this.listing && !this.stopped && (at === undefined || this.now() - at >= (this.opts.eventsMaxAgeMs ?? 30_000))) {
      this.listing = this.listProbeEvents().finally(() => (this.listing = undefined));
    }
    if (this.probes.status !== 'synced') return this.probes;
    return { ...this.probes, failures: summariseProbeFailures(this.probeEvents, this.now(), windowMs) };
  }

  kubeletGcFailures(): KubeletGcEventState {
    const at = this.gc.status === 'synced' ? this.gc.readAt : undefined;
    if (!this.gcListing && !this.stopped && (at === undefined || this.now() - at >= (this.opts.gcEventsMaxAgeMs ?? 60_000))) {
      this.gcListing = this.listGcEvents().finally(() => (this.gcListing = undefined));
    }
    return this.gc;
  }

  override async stop(): Promise<void> {
    await super.stop();
    await Promise.all([this.listing, this.gcListing]);
  }

  /** Reads the Node once, now (the loop's step; tests call it to avoid waiting a period). */
  async readNode(): Promise<void> {
    try {
      const node = await this.opts.client.getNode(this.opts.node, { maxBody: NODE_MAX_BODY, signal: this.controller.signal });
      // request() answers {} for a body that is not JSON: that is not a Node.
      if (obj(node.metadata)?.['name'] !== this.opts.node) throw new Error('the answer is not this Node (not JSON, or another object)');
      this.stats.reads++;
      this.last = { ready: nodeReady(node), readAt: this.now() };
      this.readyState = { status: 'synced', ...this.last };
      this.lastProblem = undefined;
    } catch (err) {
      if (this.controller.signal.aborted) return;
      this.stats.readErrors++;
      const reason = err instanceof KubeError && err.status === 404 ? `the Node ${this.opts.node} does not exist in the API server` : `cannot read the Node ${this.opts.node}: ${errorMessage(err)}`;
      this.readyState = { status: 'unsynced', reason, ...(this.last ? { last: this.last } : {}) };
      if (reason !== this.lastProblem) this.opts.log.warn({ err: errorMessage(err) }, 'cannot read this node from the API server');
      this.lastProblem = reason;
    }
  }

  protected async loop(): Promise<void> {
    while (!this.stopped) {
      await this.readNode();
      await sleep(this.opts.pollMs ?? 10_000, this.controller.signal);
    }
  }

  /**
   * One bounded list of Events matching `selector`, each handed to `onItem` as it arrives: at most
   * `maxEvents` read, whatever the server does with `limit` and `continue`. Resolves with how many were
   * read and whether more matched.
   */
  private async listEvents(selector: string, onItem: (item: Json) => void, opts: { fromCache?: boolean } = {}): Promise<{ scanned: number; truncated: boolean }> {
    const pageSize = this.opts.pageSize ?? 500;
    const max = this.opts.maxEvents ?? 5000;
    let scanned = 0;
    let cont: string | undefined;
    try {
      do {
        // resourceVersion=0: served from the API server's watch cache, filtered there, not read from etcd.
        const rv = opts.fromCache && !cont ? '&resourceVersion=0' : '';
        const page = await this.opts.client.list(`/api/v1/events?fieldSelector=${encodeURIComponent(selector)}&limit=${pageSize}${rv}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`, (item) => {
          // A server that ignores `limit` still cannot make us read more than `max`: the list ends here.
          if (++scanned > max) throw new EnoughEvents();
          onItem(item);
        }, { signal: this.controller.signal });
        cont = str(obj(page['metadata'])?.['continue']) || undefined;
      } while (cont && scanned < max && !this.stopped);
      return { scanned: Math.min(scanned, max), truncated: cont !== undefined };
    } catch (err) {
      if (err instanceof EnoughEvents) return { scanned: max, truncated: true };
      throw err;
    }
  }

  /** One bounded list of kubelet's Unhealthy Events, kept reduced to this node's. */
  private async listProbeEvents(): Promise<void> {
    const uids = this.opts.podUids?.();
    const kept: ProbeEvent[] = [];
    try {
      const { scanned, truncated } = await this.listEvents(PROBE_EVENTS_SELECTOR, (item) => {
        const ev = toProbeEvent(item, this.opts.node, uids);
        if (ev) kept.push(ev);
      });
      this.stats.lists++;
      this.probeEvents = kept;
      this.probes = { status: 'synced', failures: [], readAt: this.now(), scanned, truncated };
    } catch (err) {
      if (this.controller.signal.aborted) return;
      this.stats.listErrors++;
      const reason = `cannot list probe failures (Events reason=Unhealthy): ${errorMessage(err)}`;
      // The last list stands, its failures ageing out of the window as they would: one failed list does not
      // make a firing pressure.load flap. Its readAt is kept, so the next ask tries again.
      this.probes = this.probes.status === 'synced' ? { ...this.probes, stale: reason } : { status: 'unsynced', reason };
      this.opts.log.warn({ err: errorMessage(err) }, 'cannot list probe-failure events');
    }
  }

  /**
   * One bounded list of this Node's Warning Events, keeping kubelet's image-GC failures (the latest few).
   * Every node asks once a minute: from the watch cache, so a large cluster does not read etcd's events
   * that often (a few seconds stale at most, against a 15-minute lookback).
   */
  private async listGcEvents(): Promise<void> {
    const max = this.opts.maxGcEvents ?? 20;
    let kept: KubeletGcEvent[] = [];
    try {
      const { scanned, truncated } = await this.listEvents(nodeWarningsSelector(this.opts.node), (item) => {
        const ev = toKubeletGcEvent(item, this.opts.node);
        if (!ev) return;
        kept.push(ev);
        if (kept.length > 2 * max) kept = kept.sort((a, b) => b.lastSeen - a.lastSeen).slice(0, max);
      }, { fromCache: true });
      this.stats.gcLists++;
      this.gcProblem = undefined;
      this.gc = { status: 'synced', events: kept.sort((a, b) => b.lastSeen - a.lastSeen).slice(0, max), readAt: this.now(), scanned, truncated };
    } catch (err) {
      if (this.controller.signal.aborted) return;
      this.stats.gcListErrors++;
      const failed = listFailure(`this Node's Events (kubelet's ImageGCFailed, FreeDiskSpaceFailed)`, err);
      // As for probe failures, the last good list stands (its readAt kept, so the next ask tries again).
      this.gc = this.gc.status === 'synced' ? { ...this.gc, stale: failed.reason } : { status: 'unsynced', ...failed };
      // Logged once per cause: a missing permission is asked about every minute and would fill the log.
      if (failed.reason !== this.gcProblem) this.opts.log.warn({ err: errorMessage(err) }, "cannot list this node's events (image GC failures)");
      this.gcProblem = failed.reason;
    }
  }
}
