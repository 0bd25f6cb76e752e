// What a change of a finding is: the one transition type, and the one rule for "has this finding
// changed" that the agent's tracker, the aggregator's fleet and `tail` all apply. A change is news
// (an `updated` transition: a tail line, an Event, a history entry) only when the severity or the
// meaning changes; live numbers in a message (131,071 -> 131,072 sockets) are a refresh, not news.
import type { Finding, Observation } from './finding.js';

export const TRANSITION_TYPES = ['firing', 'updated', 'resolved'] as const;
export type TransitionType = (typeof TRANSITION_TYPES)[number];

export interface Transition {
  type: TransitionType;
  finding: Finding;
}

/** A transition as the aggregator keeps and sends it: with the time it happened. */
export type TimedTransition = Transition & { at: string };

/** A text's meaning without its live numbers: "131,071 of 131,072" and "131,072 of 131,072" mean the same. */
export function meaning(text: string): string {
  return text.replace(/\d[\d,.]*/g, '#');
}

type Content = Pick<Observation, 'severity' | 'message' | 'remedy'> & { state?: Finding['state'] };

/** Whether `after` is news against `before`: another severity or state, or a message or remedy that means something else. */
export function isNews(before: Content, after: Content): boolean {
  return (
    before.severity !== after.severity ||
    (before.state ?? 'firing') !== (after.state ?? 'firing') ||
    meaning(before.message) !== meaning(after.message) ||
    meaning(before.remedy) !== meaning(after.remedy)
  );
}

/** Whether `after` differs from `before` at all in what people read (its numbers or evidence): worth a refresh. */
export function isRefresh(before: Pick<Observation, 'message' | 'remedy' | 'evidence'>, after: Pick<Observation, 'message' | 'remedy' | 'evidence'>): boolean {
  return before.message !== after.message || before.remedy !== after.remedy || JSON.stringify(before.evidence) !== JSON.stringify(after.evidence);
}
