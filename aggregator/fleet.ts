// The aggregator's view of the cluster: each node's active findings (a snapshot replaces, deltas
// apply), a bounded history of transitions, and node.silent for nodes whose agent stopped answering.
import { EventEmitter } from 'node:events';
import { findingId, type Finding } from '../protocol/finding.js';
import type { TailFilter, WireTransition } from '../protocol/wire.js';
import { matchesFilter } from '../protocol/wire.js';

export type TimedTransition = WireTransition & { at: string };

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
  silenceTimer?: NodeJS.Timeout;
}

export interface FleetOptions {
  historyLimit: number;
  /** How long after its agent goes away a node is declared silent. */
  silentAfterMs: number;
  now?: () => number;
}

function changed(a: Finding, b: Finding): boolean {
  return a.severity !== b.severity || a.message !== b.message || a.state !== b.state;
}

/** Emits 'transition' (TimedTransition) for every change any tailer should see. */
export class Fleet extends EventEmitter {
  private readonly nodes = new Map<string, NodeState>();
  /** Ring buffer of the newest historyLimit transitions: no copying on the hot path. */
  private readonly history: (TimedTransition | undefined)[];
  private historyHead = 0;
  /** Active findings by check and severity, kept as they change: metrics never walk every finding. */
  private readonly counts = new Map<string, number>();
  private historyCount = 0;
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

  private setActive(n: NodeState, f: Finding): Finding | undefined {
    const before = n.active.get(f.id);
    if (before) this.count(before, -1);
    n.active.set(f.id, f);
    this.count(f, 1);
    return before;
  }

  private deleteActive(n: NodeState, id: string): boolean {
    const before = n.active.get(id);
    if (!before) return false;
    n.active.delete(id);
    this.count(before, -1);
    return true;
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
    this.history[(this.historyHead + this.historyCount) % this.opts.historyLimit] = t;
    if (this.historyCount < this.opts.historyLimit) this.historyCount++;
    else this.historyHead = (this.historyHead + 1) % this.opts.historyLimit;
  }

  /** History, oldest first. */
  private historyList(): TimedTransition[] {
    const out: TimedTransition[] = [];
    for (let i = 0; i < this.historyCount; i++) out.push(this.history[(this.historyHead + i) % this.opts.historyLimit]!);
    return out;
  }

  private node(name: string): NodeState {
    let n = this.nodes.get(name);
    if (!n) {
      n = { node: name, connected: false, collectors: [], active: new Map(), collectorStatus: [] };
      this.nodes.set(name, n);
    }
    return n;
  }

  private record(t: WireTransition, at = new Date(this.now()).toISOString()): TimedTransition {
    const timed = { ...t, at };
    this.remember(timed);
    this.emit('transition', timed);
    return timed;
  }

  /** Restores history and last known active sets (from a journal) without emitting. */
  restore(transitions: readonly TimedTransition[]): void {
    for (const t of transitions) {
      this.remember(t);
      const n = this.node(t.finding.node);
      if (t.type === 'resolved') this.deleteActive(n, t.finding.id);
      else this.setActive(n, t.finding);
    }
    // Nodes known only from the journal have no agent yet: they go silent unless one connects.
    for (const n of this.nodes.values()) this.armSilence(n);
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
      this.record({ type: 'resolved', finding: { ...silent, state: 'resolved', lastSeen: new Date(this.now()).toISOString() } });
    }
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
    for (const [id, before] of n.active) {
      if (before.check === 'node.silent') continue;
      if (!next.has(id)) {
        this.deleteActive(n, id);
        out.push(this.record({ type: 'resolved', finding: { ...before, state: 'resolved', lastSeen: new Date(this.now()).toISOString() } }));
      }
    }
    for (const f of next.values()) {
      const before = this.setActive(n, f);
      if (!before) out.push(this.record({ type: 'firing', finding: f }));
      else if (changed(before, f)) out.push(this.record({ type: 'updated', finding: f }));
    }
    return out;
  }

  applyDelta(node: string, transitions: readonly WireTransition[]): TimedTransition[] {
    const n = this.node(node);
    const out: TimedTransition[] = [];
    for (const t of transitions) {
      if (t.type === 'resolved') {
        if (!this.deleteActive(n, t.finding.id)) continue; // already gone: nothing to tell
      } else this.setActive(n, t.finding);
      out.push(this.record(t));
    }
    return out;
  }

  setStatus(node: string, collectors: NodeInfo['collectorStatus']): void {
    this.node(node).collectorStatus = collectors;
  }

  active(filter: TailFilter = {}): Finding[] {
    const out: Finding[] = [];
    for (const n of this.nodes.values()) for (const f of n.active.values()) if (matchesFilter(f, filter)) out.push(f);
    return out;
  }

  historySince(sinceMs: number, filter: TailFilter = {}): TimedTransition[] {
    return this.historyList().filter((t) => Date.parse(t.at) >= sinceMs && matchesFilter(t.finding, filter));
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

  historySize(): number {
    return this.historyCount;
  }

  close(): void {
    for (const n of this.nodes.values()) clearTimeout(n.silenceTimer);
  }
}
