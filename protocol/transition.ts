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

/**
 * Whether `after` is news against `before`: another severity or state, a message that means something
 * else, or another remedy. A remedy is a command: `nsenter -t 4242` and `nsenter -t 1` differ only in a
 * number but act on different processes, so any change to it is news, never a silent refresh.
 */
export function isNews(before: Content, after: Content): boolean {
  return (
    before.severity !== after.severity ||
    (before.state ?? 'firing') !== (after.state ?? 'firing') ||
    meaning(before.message) !== meaning(after.message) ||
    before.remedy !== after.remedy
  );
}

/** The fields a refresh may not touch: who and what the finding is about, and when it began. */
const IDENTITY_FIELDS = ['id', 'node', 'check', 'subject', 'firstSeen', 'state', 'severity', 'remedy'] as const;

/**
 * Why `after` cannot be a refresh of `before` (undefined when it can): a refresh only brings fresh
 * numbers (in the message, with the same meaning, and in the evidence) to a finding that stays what
 * it was. A peer that uses a refresh to rename, move or re-date a finding, or to change its workload or
 * its command, is refused: that would change what people read with no transition in history or tail.
 */
export function refreshViolation(before: Finding, after: Finding): string | undefined {
  for (const k of IDENTITY_FIELDS) if (before[k] !== after[k]) return k;
  if (JSON.stringify(before.workload ?? null) !== JSON.stringify(after.workload ?? null)) return 'workload';
  if (meaning(before.message) !== meaning(after.message)) return 'message';
  return undefined;
}

/** Whether `after` differs from `before` at all in what people read (its numbers or evidence): worth a refresh. */
export function isRefresh(before: Pick<Observation, 'message' | 'remedy' | 'evidence'>, after: Pick<Observation, 'message' | 'remedy' | 'evidence'>): boolean {
  return before.message !== after.message || before.remedy !== after.remedy || JSON.stringify(before.evidence) !== JSON.stringify(after.evidence);
}
