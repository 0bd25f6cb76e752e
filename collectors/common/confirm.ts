// Confirmation, once for every collector that judges runtime state (drift, mounts, immutable): a
// suspect becomes a finding only if a second, fresh read taken after the settle window shows the same
// suspect with the same facts (the same container id, pid, start time and state; the same mount
// namespace and holders). A container that is starting, exiting or being removed looks inconsistent
// across docker, containerd and the kernel for a few milliseconds; it is never evidence.
import type { Observation } from '../../protocol/finding.js';
import type { CollectorContext, RuntimeContainer } from '../types.js';
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

const key = (o: Observation) => `${o.check}\u0000${o.subject}`;

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
 */
export async function confirmSuspects(
  ctx: Pick<CollectorContext<unknown, unknown>, 'runtime' | 'now' | 'signal'>,
  read: (since: number | undefined) => Promise<Suspect[]>,
  opts: { moreWaitsMs?: readonly number[] } = {},
): Promise<{ observations: Observation[]; suspected: number; dismissed: number }> {
  const first = await read(undefined);
  if (first.length === 0) return { observations: [], suspected: 0, dismissed: 0 };
  let kept: Suspect[] = first;
  for (const wait of [ctx.runtime.settleMs, ...(opts.moreWaitsMs ?? [])]) {
    await sleep(wait, ctx.signal);
    kept = keepSameFacts(kept, await read(ctx.now()));
    if (kept.length === 0) break;
  }
  return { observations: kept.map((s) => s.observation), suspected: first.length, dismissed: first.length - kept.length };
}
