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
  private readonly history: TimedTransition[] = [];
  private readonly now: () => number;

  constructor(private readonly opts: FleetOptions) {
    super();
    this.now = opts.now ?? Date.now;
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
    this.history.push(timed);
    if (this.history.length > this.opts.historyLimit) this.history.splice(0, this.history.length - this.opts.historyLimit);
    this.emit('transition', timed);
    return timed;
  }

  /** Restores history and last known active sets (from a journal) without emitting. */
  restore(transitions: readonly TimedTransition[]): void {
    for (const t of transitions) {
      this.history.push(t);
      const n = this.node(t.finding.node);
      if (t.type === 'resolved') n.active.delete(t.finding.id);
      else n.active.set(t.finding.id, t.finding);
    }
    if (this.history.length > this.opts.historyLimit) this.history.splice(0, this.history.length - this.opts.historyLimit);
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
      n.active.delete(silentId);
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
    n.active.set(id, f);
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
        n.active.delete(id);
        out.push(this.record({ type: 'resolved', finding: { ...before, state: 'resolved', lastSeen: new Date(this.now()).toISOString() } }));
      }
    }
    for (const f of next.values()) {
      const before = n.active.get(f.id);
      n.active.set(f.id, f);
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
        if (!n.active.delete(t.finding.id)) continue; // already gone: nothing to tell
      } else n.active.set(t.finding.id, t.finding);
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
    return this.history.filter((t) => Date.parse(t.at) >= sinceMs && matchesFilter(t.finding, filter));
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
    return this.history.length;
  }

  close(): void {
    for (const n of this.nodes.values()) clearTimeout(n.silenceTimer);
  }
}
