// The agent's own Node as the API server has it (its Ready condition: kubelet's "PLEG is not healthy"
// and every other NotReady), read by a paced GET, and the probe failures kubelet reported on this node's
// pods (Events with reason Unhealthy), listed only while a collector asks for them. Both are read in the
// background, each call under the client's timeout, and kept reduced; collectors read the last answer
// (NodeAccess), so a slow, huge or malformed answer costs the agent one bounded read and a reason, never
// a collector run.
import type { Log, NodeAccess, NodeReady, NodeReadyState, ProbeFailure, ProbeFailureState } from '../../collectors/types.js';
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
  const meta = obj(ev['metadata']);
  const series = obj(ev['series']);
  const when = [str(ev['lastTimestamp']), str(series?.['lastObservedTime']), str(ev['eventTime']), str(ev['firstTimestamp']), str(meta?.['creationTimestamp'])].map((t) => (t ? Date.parse(t) : NaN)).find(Number.isFinite);
  if (when === undefined) return undefined;
  const count = Math.max(1, Math.min(1e6, Math.floor(num(ev['count']) ?? num(series?.['count']) ?? 1)));
  return { namespace: namespace.slice(0, 253), pod: pod.slice(0, 253), ...(uid ? { uid } : {}), probe: m[1] as ProbeFailure['probe'], count, lastSeen: when, message: message.slice(0, 300) };
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
  now?: () => number;
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
  private lastProblem: string | undefined;
  stats = { reads: 0, readErrors: 0, lists: 0, listErrors: 0 };

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

  override async stop(): Promise<void> {
    await super.stop();
    await this.listing;
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

  /** One bounded list of kubelet's Unhealthy Events, kept reduced to this node's. */
  private async listProbeEvents(): Promise<void> {
    const pageSize = this.opts.pageSize ?? 500;
    const max = this.opts.maxEvents ?? 5000;
    const uids = this.opts.podUids?.();
    const kept: ProbeEvent[] = [];
    let scanned = 0;
    let cont: string | undefined;
    try {
      do {
        const page = await this.opts.client.list(`/api/v1/events?fieldSelector=${encodeURIComponent(PROBE_EVENTS_SELECTOR)}&limit=${pageSize}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`, (item) => {
          // A server that ignores `limit` still cannot make us read more than `max`: the list ends here.
          if (++scanned > max) throw new EnoughEvents();
          const ev = toProbeEvent(item, this.opts.node, uids);
          if (ev) kept.push(ev);
        }, { signal: this.controller.signal });
        cont = str(obj(page['metadata'])?.['continue']) || undefined;
      } while (cont && scanned < max && !this.stopped);
      this.stats.lists++;
      this.probeEvents = kept;
      this.probes = { status: 'synced', failures: [], readAt: this.now(), scanned: Math.min(scanned, max), truncated: cont !== undefined };
    } catch (err) {
      if (err instanceof EnoughEvents) {
        this.stats.lists++;
        this.probeEvents = kept;
        this.probes = { status: 'synced', failures: [], readAt: this.now(), scanned: max, truncated: true };
        return;
      }
      if (this.controller.signal.aborted) return;
      this.stats.listErrors++;
      const reason = `cannot list probe failures (Events reason=Unhealthy): ${errorMessage(err)}`;
      // The last list stands, its failures ageing out of the window as they would: one failed list does not
      // make a firing pressure.load flap. Its readAt is kept, so the next ask tries again.
      this.probes = this.probes.status === 'synced' ? { ...this.probes, stale: reason } : { status: 'unsynced', reason };
      this.opts.log.warn({ err: errorMessage(err) }, 'cannot list probe-failure events');
    }
  }
}
