// Turns successive collection cycles into firing/resolved transitions. The same problem keeps its id
// (node + check + subject); a problem that stops being observed is resolved explicitly.
import { findingId, type Finding, type Observation } from '../protocol/finding.js';
import { isNews, isRefresh, refreshViolation, type Transition } from '../protocol/transition.js';

// The transition type and the change rule live in protocol/transition.ts; re-exported for the agent's rooms.
export type { Transition, TransitionType } from '../protocol/transition.js';

export class FindingTracker {
  readonly node: string;
  /** source (a collector, or the runner's own checks about a collector) -> id -> finding */
  private readonly bySource = new Map<string, Map<string, Finding>>();
  /** Called for a finding whose numbers changed but whose meaning did not (no transition). */
  onRefresh: ((finding: Finding) => void) | undefined;

  constructor(node: string) {
    this.node = node;
  }

  /**
   * Records what `source` observed this cycle. New problems fire, changed ones (severity, meaning)
   * update, and problems `source` raised before but not now resolve. Findings whose numbers alone
   * changed are refreshed in place and passed to `onRefresh` (for exporters that mirror numbers).
   */
  update(source: string, observations: readonly Observation[], now: number): Transition[] {
    const iso = new Date(now).toISOString();
    const previous = this.bySource.get(source) ?? new Map<string, Finding>();
    const next = new Map<string, Finding>();
    const transitions: Transition[] = [];
    for (const obs of observations) {
      const id = findingId(this.node, obs.check, obs.subject);
      if (next.has(id)) continue; // a collector named the same subject twice: first wins
      const before = previous.get(id);
      const finding: Finding = { ...obs, id, node: this.node, state: 'firing', firstSeen: before?.firstSeen ?? iso, lastSeen: iso };
      next.set(id, finding);
      if (!before) transitions.push({ type: 'firing', finding });
      else if (isNews(before, obs) || refreshViolation(before, finding)) transitions.push({ type: 'updated', finding }); // e.g. its workload became known
      else if (isRefresh(before, obs)) this.onRefresh?.(finding);
    }
    for (const [id, before] of previous) {
      if (!next.has(id)) transitions.push({ type: 'resolved', finding: { ...before, state: 'resolved', lastSeen: iso } });
    }
    if (next.size > 0) this.bySource.set(source, next);
    else this.bySource.delete(source);
    return transitions;
  }

  /** Every firing finding, across sources. */
  active(): Finding[] {
    const out: Finding[] = [];
    for (const m of this.bySource.values()) out.push(...m.values());
    return out;
  }
}
