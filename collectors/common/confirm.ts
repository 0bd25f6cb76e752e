// Confirmation, once for every collector that judges runtime state (drift, mounts, immutable): a
// suspect becomes a finding only if a second, fresh read taken after the settle window shows the same
// suspect with the same facts (the same container id, pid, start time and state; the same mount
// namespace and holders). A container that is starting, exiting or being removed looks inconsistent
// across docker, containerd and the kernel for a few milliseconds; it is never evidence.
import type { Finding, Observation } from '../../protocol/finding.js';
import type { CarriedSuspect, CollectorContext, ConfirmationStore, RuntimeContainer } from '../types.js';
import { sleep } from '../../protocol/deadline.js';

export interface Suspect {
  observation: Observation;
  /** The facts it rests on; a change between the two reads dismisses it. */
  facts: string;
}

/**
 * What identifies a container's life for confirmation: a new container, a restart (new pid or start
 * time) or a state change between two reads means the first read caught it in transition.
 */
export function containerFacts(c: RuntimeContainer | undefined): string {
  if (!c) return '-';
  const d = c.docker;
  const t = c.containerd?.task;
  return [
    c.id,
    d ? `${d.status}/${d.running}/${d.pid}/${d.startedAt ?? ''}/${d.finishedAt ?? ''}` : 'nodocker',
    c.containerd ? `${c.containerd.known}/${t ? `${t.status}/${t.pid}` : 'notask'}` : 'nocontainerd',
  ].join('|');
}

/** A suspect's key in the confirmation store; also how `unjudged` names one suspect rather than a whole check. */
export const suspectKey = (check: string, subject: string): string => `${check}\u0000${subject}`;
const key = (o: Observation) => suspectKey(o.check, o.subject);

// sleep (abortable: a run that is aborted stops waiting) lives with the deadline helper; immutable imports it from here.
export { sleep } from '../../protocol/deadline.js';

/** Pure: the second read's suspects that the first read also saw, resting on the same facts. */
export function keepSameFacts(first: readonly Suspect[], second: readonly Suspect[]): Suspect[] {
  const before = new Map(first.map((s) => [key(s.observation), s.facts]));
  return second.filter((s) => before.get(key(s.observation)) === s.facts);
}

/** Pure: the confirmed observations of keepSameFacts. */
export function keepConfirmed(first: readonly Suspect[], second: readonly Suspect[]): Observation[] {
  return keepSameFacts(first, second).map((s) => s.observation);
}

/**
 * Reads, and when there are suspects waits `ctx.runtime.settleMs` and reads again; then, for each of
 * `moreWaitsMs`, waits and reads once more while anything is left. A suspect must rest on the same
 * facts in every read. `read(since)` must read afresh: `since` is undefined for the first read (a
 * shared cached runtime view will do) and the time the wait ended for the later ones (ask
 * `ctx.runtime.snapshot({ since })`). Returns the confirmed observations, with the last read's
 * (freshest) numbers.
 *
 * In the agent (`ctx.confirmations` set) the waits are not spent inside the run: each run reads once,
 * suspects are carried to the next run in the store, and the runner is asked (`ctx.rerunIn`) for a run
 * when the next confirming read is due. A suspect is confirmed once reads spanning the same windows
 * (settle, then each of moreWaitsMs) all agreed; it stays confirmed while later reads agree. So a run's
 * timeout measures its reads only, and a short interval (drift every 2 s) confirms like a long one.
 */
export async function confirmSuspects(
  ctx: Pick<CollectorContext<unknown, unknown>, 'runtime' | 'now' | 'signal' | 'confirmations' | 'rerunIn' | 'pausing' | 'confirming'>,
  read: (since: number | undefined) => Promise<Suspect[]>,
  opts: {
    moreWaitsMs?: readonly number[];
    /** After each read: checks, or single suspects (suspectKey), it could not judge; see carrySuspects. */
    unjudged?: () => ReadonlySet<string>;
    /** When the view the read judged was taken, when that is before the read began (immutable's run-start view). */
    viewStart?: () => number | undefined;
  } = {},
): Promise<{ observations: Observation[]; suspected: number; dismissed: number }> {
  const waits = [ctx.runtime.settleMs, ...(opts.moreWaitsMs ?? [])];
  if (ctx.confirmations) return confirmAcrossRuns(ctx.confirmations, ctx, read, waits, opts.unjudged, opts.viewStart);
  const first = await read(undefined);
  if (first.length === 0) return { observations: [], suspected: 0, dismissed: 0 };
  let kept: Suspect[] = first;
  for (const wait of waits) {
    ctx.pausing?.(wait);
    await sleep(wait, ctx.signal);
    kept = keepSameFacts(kept, await read(ctx.now()));
    if (kept.length === 0) break;
  }
  return { observations: kept.map((s) => s.observation), suspected: first.length, dismissed: first.length - kept.length };
}

/** The shortest pause between two confirming reads the runner is asked for. */
const MIN_REREAD_MS = 250;

/**
 * Pure but for the store it updates: one read's suspects against those carried. Returns the confirmed
 * observations and, when something is still waiting, in how many ms the next read is due.
 */
export function carrySuspects(
  store: ConfirmationStore,
  suspects: readonly Suspect[],
  waits: readonly number[],
  now: number,
  /** False in a run that was itself an early confirming read: what it sees first waits for the schedule. */
  earlyForNew = true,
  /**
   * Checks this read could not judge (a runtime did not answer), or single suspects (suspectKey(check,
   * subject)): their carried suspects are kept as they are, neither counted, confirmed nor dismissed.
   */
  unjudged: ReadonlySet<string> = new Set(),
  /**
   * The earliest moment any fact of this read was read (its view's start; `now` is its end). A read that
   * began before the next one was due (a run triggered early) proves nothing: the same facts seen then
   * neither count as a read nor confirm; other facts still dismiss.
   */
  readFrom: number = now,
): { observations: Observation[]; dismissed: number; rereadInMs?: number } {
  // offsets[i]: how long after the first sighting read i (0-based) is due.
  const offsets = [0];
  for (const w of waits) offsets.push(offsets[offsets.length - 1]! + w);
  const span = offsets[offsets.length - 1]!;
  const seen = new Set<string>();
  const observations: Observation[] = [];
  let due: number | undefined;
  let dismissed = 0;
  for (const s of suspects) {
    const k = key(s.observation);
    if (seen.has(k)) continue;
    seen.add(k);
    const before = store.get(k);
    if (before && before.facts !== s.facts) dismissed += 1;
    const same = before !== undefined && before.facts === s.facts;
    const spaced = same && readFrom - before.firstSeen >= offsets[Math.min(before.reads, offsets.length - 1)]!;
    const e: CarriedSuspect = same ? (spaced ? { ...before, reads: before.reads + 1 } : before) : { facts: s.facts, firstSeen: now, reads: 1 };
    store.set(k, e);
    if (e.reads >= offsets.length && now - e.firstSeen >= span) {
      observations.push(s.observation);
      continue;
    }
    if (e.reads === 1 && !earlyForNew) continue;
    const at = Math.max(now + MIN_REREAD_MS, e.firstSeen + offsets[Math.min(e.reads, offsets.length - 1)]!);
    due = due === undefined ? at : Math.min(due, at);
  }
  for (const k of [...store.keys()]) {
    if (!seen.has(k) && !unjudged.has(k) && !unjudged.has(k.slice(0, k.indexOf('\u0000')))) {
      store.delete(k);
      dismissed += 1;
    }
  }
  return due === undefined ? { observations, dismissed } : { observations, dismissed, rereadInMs: due - now };
}

/**
 * What was firing about subjects a read could not judge, to keep firing unchanged (neither resolved nor
 * judged again on facts that cannot be trusted), except those the read did report.
 */
export function heldFindings(active: readonly Finding[], check: string, subjects: ReadonlySet<string>, reported: readonly Observation[]): Observation[] {
  const done = new Set(reported.filter((o) => o.check === check).map((o) => o.subject));
  return active
    .filter((f) => f.check === check && subjects.has(f.subject) && !done.has(f.subject))
    .map((f): Observation => ({ check: f.check, severity: f.severity, subject: f.subject, message: f.message, evidence: f.evidence, remedy: f.remedy, ...(f.workload ? { workload: f.workload } : {}) }));
}

async function confirmAcrossRuns(
  store: ConfirmationStore,
  ctx: Pick<CollectorContext<unknown, unknown>, 'now' | 'rerunIn' | 'confirming'>,
  read: (since: number | undefined) => Promise<Suspect[]>,
  waits: readonly number[],
  unjudged?: () => ReadonlySet<string>,
  viewStart?: () => number | undefined,
): Promise<{ observations: Observation[]; suspected: number; dismissed: number }> {
  // With something carried, this read must be fresh (a cached view taken before it proves nothing).
  const readStart = ctx.now();
  const suspects = await read(store.size > 0 ? readStart : undefined);
  const now = ctx.now();
  const from = Math.min(now, viewStart?.() ?? readStart);
  const r = carrySuspects(store, suspects, waits, now, ctx.confirming !== true, unjudged?.(), from);
  if (r.rereadInMs !== undefined) ctx.rerunIn?.(r.rereadInMs);
  return { observations: r.observations, suspected: suspects.length, dismissed: r.dismissed };
}
