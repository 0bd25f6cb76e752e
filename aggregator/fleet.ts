// The aggregator's view of the cluster: each node's active findings (a snapshot replaces, deltas
// apply), a bounded history of transitions, and node.silent for nodes whose agent stopped answering.
import { EventEmitter } from 'node:events';
import { findingId, severityRank, type Finding } from '../protocol/finding.js';
import type { TailFilter } from '../protocol/wire.js';
import { matchesFilter } from '../protocol/wire.js';
import { jsonSize } from '../protocol/schema.js';
import { isNews, refreshViolation, type TimedTransition, type Transition } from '../protocol/transition.js';

export type { TimedTransition } from '../protocol/transition.js';

export interface NodeInfo {
  node: string;
  connected: boolean;
  agentVersion?: string;
  collectors: string[];
  connectedAt?: string;
  lastMessageAt?: string;
  disconnectedAt?: string;
  collectorStatus: { name: string; status: string; durationMs: number; detail?: string }[];
}

interface NodeState extends NodeInfo {
  active: Map<string, Finding>;
  /** Serialized size of its active findings. */
  bytes: number;
  silenceTimer?: NodeJS.Timeout;
}

export interface FleetOptions {
  historyLimit: number;
  /** History is also bounded in serialized bytes: the oldest transitions go first. */
  historyMaxBytes?: number;
  /** Active findings one node may have; a snapshot or delta beyond it is refused whole. */
  maxFindingsPerNode?: number;
  /** Serialized bytes of every node's active findings together; a message that would pass it is refused. */
  maxActiveBytes?: number;
  /** How long after its agent goes away a node is declared silent. */
  silentAfterMs: number;
  now?: () => number;
}

/** A peer asked for more than a server-side bound allows; the server refuses that connection's message. */
export class LimitError extends Error {
  readonly code = 'NW_ERR_LIMIT';
}

/** What the journal needs to write the fleet's current state: each node, then its active findings. */
export interface FleetState {
  node: string;
  lastMessageAt?: string;
  disconnectedAt?: string;
  active: Iterable<Finding>;
}

/** A node as the web view's fleet overview draws it: its worst severity (-1: none), active count, connected, silent. */
export type NodeSummary = [node: string, worst: number, active: number, connected: 0 | 1, silent: 0 | 1];

/**
 * Emits 'transition' (TimedTransition) for every change any tailer should see, 'refresh' (finding,
 * before) for fresh numbers of an active finding (no transition), and 'node' (its name) when a node
 * connects, disconnects or is forgotten (the web view redraws its cell).
 */
export class Fleet extends EventEmitter {
  private readonly nodes = new Map<string, NodeState>();
  /** Ring buffer of the newest historyLimit transitions: no copying on the hot path. */
  private readonly history: (TimedTransition | undefined)[];
  private historyHead = 0;
  /** Active findings by check and severity, kept as they change: metrics never walk every finding. */
  private readonly counts = new Map<string, number>();
  private historyCount = 0;
  private historyBytes = 0;
  private activeBytes = 0;
  /** About the serialized size of each finding held, computed once (without serializing it). */
  private readonly sizes = new WeakMap<Finding, number>();
  private readonly now: () => number;

  constructor(private readonly opts: FleetOptions) {
    super();
    this.now = opts.now ?? Date.now;
    this.history = new Array<TimedTransition | undefined>(opts.historyLimit);
  }

  private count(f: Finding, delta: number): void {
    const key = `${f.check}\0${f.severity}`;
    const n = (this.counts.get(key) ?? 0) + delta;
    if (n > 0) this.counts.set(key, n);
    else this.counts.delete(key);
  }

  private size(f: Finding): number {
    let n = this.sizes.get(f);
    if (n === undefined) {
      n = jsonSize(f);
      this.sizes.set(f, n);
    }
    return n;
  }

  /** A transition is its finding plus its type and time. */
  private transitionSize(t: TimedTransition): number {
    return this.size(t.finding) + 64;
  }

  private setActive(n: NodeState, f: Finding): Finding | undefined {
    const before = n.active.get(f.id);
    if (before) {
      this.count(before, -1);
      this.addBytes(n, -this.size(before));
    }
    n.active.set(f.id, f);
    this.count(f, 1);
    this.addBytes(n, this.size(f));
    return before;
  }

  private deleteActive(n: NodeState, id: string): boolean {
    const before = n.active.get(id);
    if (!before) return false;
    n.active.delete(id);
    this.count(before, -1);
    this.addBytes(n, -this.size(before));
    return true;
  }

  private addBytes(n: NodeState, delta: number): void {
    n.bytes += delta;
    this.activeBytes += delta;
  }

  /** Refuses (LimitError) a change that would take the cluster's active findings past maxActiveBytes. */
  private fits(n: NodeState, nextNodeBytes: number): void {
    const max = this.opts.maxActiveBytes;
    if (max !== undefined && nextNodeBytes > n.bytes && this.activeBytes - n.bytes + nextNodeBytes > max) {
      throw new LimitError(`the aggregator already holds its limit of ${Math.round(max / 1048576)} MiB of active findings`);
    }
  }

  /** Serialized bytes of all active findings and of history (for metrics and the bench). */
  bytes(): { active: number; history: number } {
    return { active: this.activeBytes, history: this.historyBytes };
  }

  /** Active findings by check and severity. */
  countsByCheck(): { check: string; severity: string; count: number }[] {
    return [...this.counts].map(([k, count]) => {
      const [check, severity] = k.split('\0') as [string, string];
      return { check, severity, count };
    });
  }

  connectedNodes(): { connected: number; total: number } {
    let connected = 0;
    for (const n of this.nodes.values()) if (n.connected) connected++;
    return { connected, total: this.nodes.size };
  }

  private remember(t: TimedTransition): void {
    if (this.historyCount === this.opts.historyLimit) this.dropOldest();
    this.history[(this.historyHead + this.historyCount) % this.opts.historyLimit] = t;
    this.historyCount++;
    this.historyBytes += this.transitionSize(t);
    const max = this.opts.historyMaxBytes ?? Infinity;
    while (this.historyBytes > max && this.historyCount > 1) this.dropOldest();
  }

  private dropOldest(): void {
    const old = this.history[this.historyHead];
    if (old) this.historyBytes -= this.transitionSize(old);
    this.history[this.historyHead] = undefined;
    this.historyHead = (this.historyHead + 1) % this.opts.historyLimit;
    this.historyCount--;
  }


  private node(name: string): NodeState {
    let n = this.nodes.get(name);
    if (!n) {
      n = { node: name, connected: false, collectors: [], active: new Map(), bytes: 0, collectorStatus: [] };
      this.nodes.set(name, n);
    }
    return n;
  }

  /** `before`: the finding as it was active before this transition (none for a new one), for listeners that count matches (the web feed's totals). */
  private record(t: Transition, before?: Finding, at = new Date(this.now()).toISOString()): TimedTransition {
    const timed = { ...t, at };
    this.remember(timed);
    this.emit('transition', timed, before);
    return timed;
  }

  // ---- restoring from the journal, record by record, without emitting ----

  /** A journaled transition: into history, and applied to its node's active set. */
  restoreTransition(t: TimedTransition): void {
    this.remember(t);
    const n = this.node(t.finding.node);
    if (t.type === 'resolved') this.deleteActive(n, t.finding.id);
    else this.setActive(n, t.finding);
  }

  /** A journaled node state: the node exists (even with nothing active) and its active set starts empty. */
  restoreNode(node: string, info: { lastMessageAt?: string; disconnectedAt?: string }): void {
    const n = this.node(node);
    for (const id of [...n.active.keys()]) this.deleteActive(n, id);
    if (info.lastMessageAt) n.lastMessageAt = info.lastMessageAt;
    if (info.disconnectedAt) n.disconnectedAt = info.disconnectedAt;
  }

  restoreActive(f: Finding): void {
    this.setActive(this.node(f.node), f);
  }

  /** After restoring: nodes known only from the journal have no agent yet, so they go silent unless one connects. */
  restored(): void {
    for (const n of this.nodes.values()) if (!n.connected) this.armSilence(n);
  }

  /** The current state, node by node, for the journal's compaction. */
  *state(): Generator<FleetState> {
    for (const n of this.nodes.values()) {
      yield { node: n.node, ...(n.lastMessageAt ? { lastMessageAt: n.lastMessageAt } : {}), ...(n.disconnectedAt ? { disconnectedAt: n.disconnectedAt } : {}), active: n.active.values() };
    }
  }

  /** History, oldest first, as a generator: chunked senders never copy it whole. */
  *historyEntries(): Generator<TimedTransition> {
    for (let i = 0; i < this.historyCount; i++) yield this.history[(this.historyHead + i) % this.opts.historyLimit]!;
  }

  has(node: string): boolean {
    return this.nodes.has(node);
  }

  /**
   * Forgets a node (deleted from the cluster, or by an admin): its active findings resolve for every
   * tailer, then it is gone, silence included. False when it was not known.
   */
  forget(node: string): boolean {
    const n = this.nodes.get(node);
    if (!n) return false;
    clearTimeout(n.silenceTimer);
    const at = new Date(this.now()).toISOString();
    for (const f of [...n.active.values()]) {
      this.deleteActive(n, f.id);
      this.record({ type: 'resolved', finding: { ...f, state: 'resolved', lastSeen: at } }, f);
    }
    this.nodes.delete(node);
    this.emit('forget', node);
    this.emit('node', node);
    return true;
  }

  private within(n: NodeState, adding: Iterable<string>, removing: ReadonlySet<string> = new Set()): void {
    const max = this.opts.maxFindingsPerNode;
    if (max === undefined) return;
    let size = 0;
    for (const id of n.active.keys()) if (!removing.has(id)) size++;
    for (const id of adding) if (!n.active.has(id) || removing.has(id)) size++;
    if (size > max) throw new LimitError(`more than ${max} active findings for node ${n.node}`);
  }

  connect(node: string, info: { agentVersion: string; collectors: string[] }): void {
    const n = this.node(node);
    clearTimeout(n.silenceTimer);
    n.silenceTimer = undefined;
    n.connected = true;
    n.agentVersion = info.agentVersion;
    n.collectors = info.collectors;
    n.connectedAt = new Date(this.now()).toISOString();
    n.lastMessageAt = n.connectedAt;
    const silentId = findingId(node, 'node.silent', node);
    const silent = n.active.get(silentId);
    if (silent) {
      this.deleteActive(n, silentId);
      this.record({ type: 'resolved', finding: { ...silent, state: 'resolved', lastSeen: new Date(this.now()).toISOString() } }, silent);
    }
    this.emit('node', node);
  }

  touch(node: string): void {
    const n = this.nodes.get(node);
    if (n) n.lastMessageAt = new Date(this.now()).toISOString();
  }

  disconnect(node: string): void {
    const n = this.nodes.get(node);
    if (!n) return;
    n.connected = false;
    n.disconnectedAt = new Date(this.now()).toISOString();
    this.armSilence(n);
    this.emit('node', node);
  }

  private armSilence(n: NodeState): void {
    clearTimeout(n.silenceTimer);
    n.silenceTimer = setTimeout(() => this.silence(n.node), this.opts.silentAfterMs);
    n.silenceTimer.unref();
  }

  private silence(node: string): void {
    const n = this.nodes.get(node);
    if (!n || n.connected) return;
    const id = findingId(node, 'node.silent', node);
    if (n.active.has(id)) return;
    const now = new Date(this.now()).toISOString();
    const since = n.lastMessageAt ?? n.disconnectedAt ?? now;
    const f: Finding = {
      id,
      node,
      check: 'node.silent',
      severity: 'critical',
      subject: node,
      message: `The nodewarden agent on ${node} has not been heard from since ${since}: its findings below are the last it sent, and nothing on this node is being checked. Silence is not health.`,
      evidence: { lastMessageAt: since, disconnectedAt: n.disconnectedAt ?? null, activeFindings: n.active.size },
      remedy: `kubectl -n nodewarden get pods -o wide --field-selector spec.nodeName=${node}; kubectl get node ${node}; kubectl -n nodewarden logs ds/nodewarden-agent --tail=50`,
      state: 'firing',
      firstSeen: now,
      lastSeen: now,
    };
    this.setActive(n, f);
    this.record({ type: 'firing', finding: f });
  }

  /** A snapshot replaces the node's active set: what is new fires, what changed updates, what is gone resolves. */
  applySnapshot(node: string, findings: readonly Finding[]): TimedTransition[] {
    const n = this.node(node);
    const out: TimedTransition[] = [];
    const next = new Map(findings.map((f) => [f.id, f]));
    const max = this.opts.maxFindingsPerNode;
    if (max !== undefined && next.size > max) throw new LimitError(`snapshot of ${next.size} findings for node ${node} is over the limit of ${max}`);
    let nextBytes = 0;
    for (const f of next.values()) nextBytes += this.size(f);
    this.fits(n, nextBytes);
    for (const [id, before] of n.active) {
      if (before.check === 'node.silent') continue;
      if (!next.has(id)) {
        this.deleteActive(n, id);
        out.push(this.record({ type: 'resolved', finding: { ...before, state: 'resolved', lastSeen: new Date(this.now()).toISOString() } }, before));
      }
    }
    for (const f of next.values()) {
      const before = this.setActive(n, f);
      if (!before) out.push(this.record({ type: 'firing', finding: f }));
      else if (isNews(before, f)) out.push(this.record({ type: 'updated', finding: f }, before));
    }
    return out;
  }

  applyDelta(node: string, transitions: readonly Transition[]): TimedTransition[] {
    const n = this.node(node);
    const out: TimedTransition[] = [];
    const resolving = new Set(transitions.filter((t) => t.type === 'resolved').map((t) => t.finding.id));
    this.within(n, transitions.filter((t) => t.type !== 'resolved').map((t) => t.finding.id), resolving);
    let nextBytes = n.bytes;
    for (const t of transitions) {
      const before = n.active.get(t.finding.id);
      nextBytes += (t.type === 'resolved' ? 0 : this.size(t.finding)) - (before ? this.size(before) : 0);
    }
    this.fits(n, nextBytes);
    for (const t of transitions) {
      const before = n.active.get(t.finding.id);
      if (t.type === 'resolved') {
        if (!this.deleteActive(n, t.finding.id)) continue; // already gone: nothing to tell
      } else this.setActive(n, t.finding);
      out.push(this.record(t, before));
    }
    return out;
  }

  /**
   * Fresh numbers for findings the node already has active (a `refresh`): stored as they are, so
   * /api/findings and a new tailer's active set show them, with no transition (no tail line, no
   * history, no journal record: the journal's compaction writes the current state). A finding that is
   * no longer active is skipped (it resolved in between). One that changes anything but numbers
   * (refreshViolation: its check, subject, firstSeen, workload, severity, remedy or the meaning of its
   * message) is refused and returned with the field: never applied, since no one would see it change.
   */
  applyRefresh(node: string, findings: readonly Finding[]): { applied: number; refused: { id: string; field: string }[] } {
    const n = this.node(node);
    let nextBytes = n.bytes;
    const fresh: Finding[] = [];
    const refused: { id: string; field: string }[] = [];
    for (const f of findings) {
      const before = n.active.get(f.id);
      if (!before) continue;
      const field = refreshViolation(before, f);
      if (field) {
        refused.push({ id: f.id, field });
        continue;
      }
      fresh.push(f);
      nextBytes += this.size(f) - this.size(before);
    }
    this.fits(n, nextBytes);
    // 'refresh' (finding, before): no transition, but a listener counting matches of a filter on the
    // text (the web feed's totals) must see the numbers change.
    for (const f of fresh) this.emit('refresh', f, this.setActive(n, f));
    return { applied: fresh.length, refused };
  }

  setStatus(node: string, collectors: NodeInfo['collectorStatus']): void {
    this.node(node).collectorStatus = collectors;
    this.emit('status', node);
  }

  active(filter: TailFilter = {}): Finding[] {
    const out: Finding[] = [];
    for (const n of this.nodes.values()) for (const f of n.active.values()) if (matchesFilter(f, filter)) out.push(f);
    return out;
  }

  historySince(sinceMs: number, filter: TailFilter = {}): TimedTransition[] {
    return [...this.historyEntries()].filter((t) => Date.parse(t.at) >= sinceMs && matchesFilter(t.finding, filter));
  }

  nodeInfos(): (NodeInfo & { activeFindings: number; silent: boolean })[] {
    return [...this.nodes.values()]
      .map((n) => ({
        node: n.node,
        connected: n.connected,
        ...(n.agentVersion ? { agentVersion: n.agentVersion } : {}),
        collectors: n.collectors,
        ...(n.connectedAt ? { connectedAt: n.connectedAt } : {}),
        ...(n.lastMessageAt ? { lastMessageAt: n.lastMessageAt } : {}),
        ...(n.disconnectedAt ? { disconnectedAt: n.disconnectedAt } : {}),
        collectorStatus: n.collectorStatus,
        activeFindings: n.active.size,
        silent: [...n.active.values()].some((f) => f.check === 'node.silent'),
      }))
      .sort((a, b) => a.node.localeCompare(b.node));
  }

  /** One node's cell in the web view, or undefined when it is not known (forgotten). */
  nodeSummary(name: string): NodeSummary | undefined {
    const n = this.nodes.get(name);
    return n ? summarize(n) : undefined;
  }

  /** Every node's cell, by name. */
  nodeSummaries(): NodeSummary[] {
    return [...this.nodes.values()].map(summarize).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** One node as /api/nodes lists it. */
  nodeInfo(name: string): NodeInfo | undefined {
    const n = this.nodes.get(name);
    if (!n) return undefined;
    const { active: _a, bytes: _b, silenceTimer: _t, ...info } = n;
    return info;
  }

  nodeCount(): number {
    return this.nodes.size;
  }

  historySize(): number {
    return this.historyCount;
  }

  close(): void {
    for (const n of this.nodes.values()) clearTimeout(n.silenceTimer);
  }
}

function summarize(n: NodeState): NodeSummary {
  let worst = -1;
  let silent: 0 | 1 = 0;
  for (const f of n.active.values()) {
    const r = severityRank(f.severity);
    if (r > worst) worst = r;
    if (f.check === 'node.silent') silent = 1;
  }
  return [n.node, worst, n.active.size, n.connected ? 1 : 0, silent];
}
