// The Kubernetes exporter: nodewarden's findings where Kubernetes users already look. It keeps one
// NodeCondition per family of checks on the agent's own Node (`kubectl describe node`) and emits an Event
// per firing finding (`kubectl get events`), rate-limited. Conditions are reconciled when the agent starts
// and on every change, so none stays stale after a restart or a config change.
import { compareFindings, type Finding } from '../../protocol/finding.js';
import { nodeConditions } from '../../collectors/index.js';
import type { Log } from '../../collectors/types.js';
import { KubeError, type KubeClient, type KubeNode, type NodeCondition } from '../kube/client.js';
import type { Transition } from '../tracker.js';
import type { Exporter, RunnerView } from './exporter.js';
import { errorMessage } from '../../protocol/errors.js';

/**
 * Condition type -> the checks that set it, from the collectors' own declarations. Every type
 * nodewarden owns starts with "Nodewarden".
 */
export const CONDITIONS: readonly { type: string; checks: string[] }[] = nodeConditions();

const OURS = /^Nodewarden/;
const camel = (check: string) => check.split(/[._-]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');

/** Pure: the conditions the node should carry, given the active findings and what it carries now. */
export function desiredConditions(active: readonly Finding[], current: readonly NodeCondition[], now: string): NodeCondition[] {
  const out: NodeCondition[] = [];
  const before = new Map(current.map((c) => [c.type, c]));
  for (const { type, checks } of CONDITIONS) {
    const hits = active.filter((f) => checks.includes(f.check)).sort(compareFindings);
    const first = hits[0];
    const status = first ? 'True' : 'False';
    const reason = first ? camel(first.check) : 'NoProblem';
    const message = first
      ? `${first.message}${hits.length > 1 ? ` (and ${hits.length - 1} more: nodewarden tail --node ${first.node} --check ${first.check.split('.')[0]})` : ''}`.slice(0, 1024)
      : `nodewarden sees no ${checks.join(' or ')} problem`;
    const prev = before.get(type);
    out.push({ type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: prev && prev.status === status ? prev.lastTransitionTime : now });
  }
  // Conditions of ours the config no longer knows (a renamed type, an older version): not left True.
  for (const c of current) {
    if (OURS.test(c.type) && !CONDITIONS.some((x) => x.type === c.type) && c.status !== 'False') {
      out.push({ ...c, status: 'False', reason: 'NoLongerChecked', message: 'this nodewarden version no longer sets this condition', lastTransitionTime: now, lastHeartbeatTime: now });
    }
  }
  return out;
}

/** Whether the node's status must change (heartbeats alone do not justify a write). */
export function conditionsDiffer(desired: readonly NodeCondition[], current: readonly NodeCondition[]): boolean {
  const by = new Map(current.map((c) => [c.type, c]));
  return desired.some((d) => {
    const c = by.get(d.type);
    return !c || c.status !== d.status || c.reason !== d.reason || c.message !== d.message;
  });
}

export interface ExporterOptions {
  client: KubeClient;
  node: string;
  /** The active findings the conditions are computed from. */
  runner: Pick<RunnerView, 'active'>;
  log: Log;
  events: boolean;
  eventNamespace: string;
  /** One event per finding id at most this often. */
  eventIntervalMs: number;
  /** And at most this many events per minute from this node. */
  eventsPerMinute: number;
  now?: () => number;
}

export class NodeExporter implements Exporter {
  readonly name = 'kubernetes';
  /** Between start() and stop(): transitions outside it are not followed. */
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Consecutive failed syncs: the retry waits 1 s, 2 s, 4 s ... up to a minute. */
  private failures = 0;
  private syncing: Promise<void> | undefined;
  private again = false;
  private readonly lastEvent = new Map<string, number>();
  private eventTimes: number[] = [];
  private nodeUid: string | undefined;
  private readonly now: () => number;
  stats = { patches: 0, conflicts: 0, events: 0, eventsDropped: 0, errors: 0 };

  constructor(private readonly opts: ExporterOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Reconciles the node's conditions now, then follows every change. */
  async start(): Promise<void> {
    this.running = true;
    await this.sync();
  }

  onTransition(t: Transition): void {
    if (!this.running) return;
    if (this.opts.events) void this.event(t);
    this.schedule();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
  }

  /**
   * After a failed write every condition is brought in line again (a whole sync, not just the change
   * that failed), with backoff, until one succeeds: a failed PATCH never leaves a condition stale.
   */
  private retryLater(): void {
    this.failures += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.sync(), Math.min(60_000, 1000 * 2 ** Math.min(this.failures - 1, 6)));
    this.retryTimer.unref?.();
  }

  /** Coalesces bursts of transitions into one write. */
  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.sync(), 250);
  }

  /** Brings the node's conditions in line with the active findings; retries on 409 with a fresh read. */
  sync(): Promise<void> {
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      for (let attempt = 1; attempt <= 5; attempt++) {
        try {
          const node: KubeNode = await this.opts.client.getNode(this.opts.node);
          this.nodeUid = node.metadata.uid;
          const current = node.status?.conditions ?? [];
          const desired = desiredConditions(this.opts.runner.active(), current, new Date(this.now()).toISOString());
          if (!conditionsDiffer(desired, current)) {
            this.failures = 0;
            return;
          }
          // The resourceVersion makes the write conditional: if kubelet changed the node since our read,
          // the API server answers 409 and we read again rather than overwrite what we did not see.
          await this.opts.client.patchNodeStatus(this.opts.node, { metadata: { resourceVersion: node.metadata.resourceVersion }, status: { conditions: desired } });
          this.stats.patches++;
          this.failures = 0;
          return;
        } catch (err) {
          if (err instanceof KubeError && err.status === 409 && attempt < 5) {
            this.stats.conflicts++;
            continue;
          }
          this.stats.errors++;
          this.opts.log.warn({ err: errorMessage(err), node: this.opts.node, retry: this.failures + 1 }, 'could not update the node conditions; will resync them all');
          this.retryLater();
          return;
        }
      }
    })().finally(() => {
      this.syncing = undefined;
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    });
    return this.syncing;
  }

  private async event(t: Transition): Promise<void> {
    const f = t.finding;
    const onPod = podEventTarget(f);
    // A stuck pod's cause can change (the finalizer is gone, an immutable file remains): say so on the Pod.
    if (t.type === 'updated' && !onPod) return;
    const now = this.now();
    const key = `${f.id}/${t.type}`;
    if (now - (this.lastEvent.get(key) ?? -Infinity) < this.opts.eventIntervalMs) return;
    this.eventTimes = this.eventTimes.filter((x) => now - x < 60_000);
    if (this.eventTimes.length >= this.opts.eventsPerMinute) {
      this.stats.eventsDropped++;
      return;
    }
    this.lastEvent.set(key, now);
    this.eventTimes.push(now);
    const iso = new Date(now).toISOString();
    const resolved = t.type === 'resolved';
    try {
      if (onPod) {
        await this.opts.client.createEvent(onPod.namespace, podEvent(f, resolved, onPod, this.opts.node, iso));
        this.stats.events++;
        return;
      }
      await this.opts.client.createEvent(this.opts.eventNamespace, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { generateName: `${this.opts.node}.nodewarden.`, namespace: this.opts.eventNamespace },
        involvedObject: { apiVersion: 'v1', kind: 'Node', name: this.opts.node, ...(this.nodeUid ? { uid: this.nodeUid } : {}) },
        reason: resolved ? `${eventReason(f)}Resolved` : eventReason(f),
        message: resolved ? `Resolved: ${f.message}`.slice(0, 1024) : `${f.message} Next: ${f.remedy}`.slice(0, 1024),
        type: resolved || f.severity === 'info' ? 'Normal' : 'Warning',
        source: { component: 'nodewarden', host: this.opts.node },
        reportingComponent: 'nodewarden',
        reportingInstance: this.opts.node,
        firstTimestamp: iso,
        lastTimestamp: iso,
        count: 1,
      });
      this.stats.events++;
      // An OOM kill and a crash loop hurt a pod: its own Event too, so `kubectl describe pod` shows it.
      const alsoPod = alsoOnPod(f);
      if (alsoPod && !resolved) {
        await this.opts.client.createEvent(alsoPod.namespace, podEventFor(f, alsoPod, this.opts.node, iso));
        this.stats.events++;
      }
    } catch (err) {
      this.stats.errors++;
      this.opts.log.warn({ err: errorMessage(err) }, 'could not create an event');
    }
  }
}

/**
 * node-problem-detector's Event reasons for the kernel checks it also has (its kernel-monitor.json), so
 * alerts and dashboards built on them keep working; every other check's reason is its name in CamelCase.
 */
export const NPD_REASONS: Readonly<Record<string, string>> = {
  'kernel.oom': 'OOMKilling',
  'kernel.systemOom': 'OOMKilling',
  'kernel.hungTask': 'TaskHung',
  'kernel.ioError': 'IOError',
  'kernel.fsReadonly': 'FilesystemIsReadOnly',
  'kernel.oops': 'KernelOops',
  'kernel.netdevice': 'UnregisterNetDevice',
};

/** Pure: an Event's reason for a finding (NPD's where it has one; ext4 errors are its Ext4Error, EDAC memory read errors its MemoryReadError). */
export function eventReason(f: Pick<Finding, 'check' | 'message'>): string {
  if (f.check === 'kernel.fsError' && /warns about the ext4/i.test(f.message)) return 'Ext4Warning';
  if (f.check === 'kernel.fsError' && /(EXT4-fs|an ext4 error)/i.test(f.message)) return 'Ext4Error';
  if (f.check === 'kernel.hardware' && /memory read error/i.test(f.message)) return 'MemoryReadError';
  return NPD_REASONS[f.check] ?? camel(f.check);
}

/** The Pod an OOM kill, a hung task or a crash loop also gets an Event on (besides the Node), when the finding names it. */
export function alsoOnPod(f: Finding): { namespace: string; name: string; uid?: string } | undefined {
  if (f.check !== 'kernel.oom' && f.check !== 'kernel.systemOom' && f.check !== 'kernel.hungTask' && f.check !== 'pod.crashLoop') return undefined;
  if (!f.workload?.pod || !f.workload.namespace) return undefined;
  return { namespace: f.workload.namespace, name: f.workload.pod, ...(f.workload.podUid ? { uid: f.workload.podUid } : {}) };
}

/** Pure: that Pod's Warning Event, with the same reason as the Node's. */
export function podEventFor(f: Finding, pod: { namespace: string; name: string; uid?: string }, node: string, iso: string): Record<string, unknown> {
  return { ...podEvent(f, false, pod, node, iso), reason: eventReason(f) };
}

/** The Pod a finding's Event goes on instead of the Node (pod.stuck), or undefined. */
export function podEventTarget(f: Finding): { namespace: string; name: string; uid?: string } | undefined {
  if (f.check !== 'pod.stuck' || !f.workload?.pod || !f.workload.namespace) return undefined;
  return { namespace: f.workload.namespace, name: f.workload.pod, ...(f.workload.podUid ? { uid: f.workload.podUid } : {}) };
}

/** Pure: the Warning Event on a stuck Pod (reason NodewardenStuck), so `kubectl describe pod` shows the cause. */
export function podEvent(f: Finding, resolved: boolean, pod: { namespace: string; name: string; uid?: string }, node: string, iso: string): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { generateName: `${pod.name}.nodewarden.`, namespace: pod.namespace },
    involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.name, ...(pod.uid ? { uid: pod.uid } : {}) },
    reason: resolved ? 'NodewardenStuckResolved' : 'NodewardenStuck',
    message: resolved ? `nodewarden no longer sees this pod stuck (it was: ${f.message})`.slice(0, 1024) : `${f.message} Next: ${f.remedy}`.slice(0, 1024),
    type: resolved ? 'Normal' : 'Warning',
    source: { component: 'nodewarden', host: node },
    reportingComponent: 'nodewarden',
    reportingInstance: node,
    firstTimestamp: iso,
    lastTimestamp: iso,
    count: 1,
  };
}
