import t from 'tap';
import { carrySuspects, confirmSuspects, containerFacts, keepConfirmed, suspectKey, type Suspect } from '../../../collectors/common/confirm.js';
import type { Observation } from '../../../protocol/finding.js';
import type { RuntimeContainer } from '../../../collectors/types.js';

const o = (subject: string, message = 'drifted'): Observation => ({ check: 'runtime.drift', severity: 'critical', subject, message, evidence: {}, remedy: 'x' });
const s = (subject: string, facts: string, message?: string): Suspect => ({ observation: o(subject, message), facts });

t.test('only a suspect seen twice on the same facts is confirmed, with the second read\'s numbers', async (t) => {
  t.same(keepConfirmed([s('a', '1'), s('b', '1'), s('c', '1')], [s('a', '1', 'now 5'), s('b', '2'), s('d', '1')]).map((x) => [x.subject, x.message]), [['a', 'now 5']]);
  t.same(keepConfirmed([], [s('a', '1')]), [], 'new on the second read: not yet');
});

t.test('container facts change with a restart, a new pid or a state change', async (t) => {
  const base: RuntimeContainer = { id: 'c1', name: 'web', manager: 'docker', image: 'i', labels: {}, workload: { containerId: 'c1' }, storage: {}, docker: { status: 'running', running: true, pid: 10, dead: false, removing: false, error: '', exitCode: 0, startedAt: 'T1' }, containerd: { known: true, task: { status: 'RUNNING', pid: 10, exitStatus: 0 } } };
  const f = containerFacts(base);
  t.equal(containerFacts({ ...base }), f);
  t.not(containerFacts({ ...base, docker: { ...base.docker!, pid: 11 } }), f, 'new pid');
  t.not(containerFacts({ ...base, docker: { ...base.docker!, startedAt: 'T2' } }), f, 'restarted');
  t.not(containerFacts({ ...base, containerd: { known: true } }), f, 'task gone');
  t.equal(containerFacts(undefined), '-', 'removed');
});

t.test('confirmSuspects reads twice only when there is something to confirm, the second time afresh after the settle window', async (t) => {
  const sinces: (number | undefined)[] = [];
  let clock = 1000;
  const ctx = { runtime: { settleMs: 5, snapshot: async () => ({ runtimes: [], containers: [], takenAt: 0 }), ping: async () => [] }, now: () => clock, signal: new AbortController().signal };
  const quiet = await confirmSuspects(ctx, async (since) => {
    sinces.push(since);
    return [];
  });
  t.same([quiet.observations, sinces], [[], [undefined]], 'nothing suspected: one read');
  sinces.length = 0;
  let n = 0;
  const r = await confirmSuspects(ctx, async (since) => {
    sinces.push(since);
    clock += 10;
    n += 1;
    return n === 1 ? [s('a', '1'), s('b', '1')] : [s('a', '1')];
  });
  t.same(r.observations.map((x) => x.subject), ['a']);
  t.same([r.suspected, r.dismissed], [2, 1]);
  t.same(sinces, [undefined, 1010], 'the second read asks for a view taken after the window');
});

t.test('confirmSuspects with more waits: a suspect must rest on the same facts in every read; it stops reading once nothing is left', async (t) => {
  const ctx = { runtime: { settleMs: 1, snapshot: async () => ({ runtimes: [], containers: [], takenAt: 0 }), ping: async () => [] }, now: () => Date.now(), signal: new AbortController().signal };
  const reads = (seq: Suspect[][]) => {
    let n = 0;
    const fn = async () => seq[Math.min(n++, seq.length - 1)]!;
    return { fn, count: () => n };
  };
  // Mended between the second and the third read (dockerd caught up): not a finding.
  const mended = reads([[s('a', '1')], [s('a', '1')], []]);
  const r1 = await confirmSuspects(ctx, mended.fn, { moreWaitsMs: [1] });
  t.same([r1.observations, r1.suspected, r1.dismissed, mended.count()], [[], 1, 1, 3], 'seen twice, gone at the third read: dismissed');
  // The facts changed at the third read: not the same episode.
  const changed = reads([[s('a', '1')], [s('a', '1')], [s('a', '2')]]);
  t.same((await confirmSuspects(ctx, changed.fn, { moreWaitsMs: [1] })).observations, []);
  // Stays in all three: confirmed, once.
  const stays = reads([[s('a', '1'), s('b', '1')], [s('a', '1'), s('b', '1')], [s('a', '1')]]);
  const r3 = await confirmSuspects(ctx, stays.fn, { moreWaitsMs: [1] });
  t.same(r3.observations.map((x) => x.subject), ['a']);
  t.same([r3.suspected, r3.dismissed], [2, 1]);
  // Dismissed at the second read: no third read.
  const gone = reads([[s('a', '1')], []]);
  await confirmSuspects(ctx, gone.fn, { moreWaitsMs: [1] });
  t.equal(gone.count(), 2, 'nothing left after the second read: no third');
});

t.test('across runs (the agent): each run reads once; a suspect is confirmed when reads spanning the windows agree, and the runner is asked for the next read', async (t) => {
  let clock = 10_000;
  const store = new Map();
  const asked: number[] = [];
  const sinces: (number | undefined)[] = [];
  const ctx = { runtime: { settleMs: 2000, snapshot: async () => ({ runtimes: [], containers: [], takenAt: 0 }), ping: async () => [] }, now: () => clock, signal: new AbortController().signal, confirmations: store, rerunIn: (ms: number) => asked.push(ms) };
  const run = (suspects: Suspect[]) => confirmSuspects(ctx, async (since) => {
    sinces.push(since);
    return suspects;
  }, { moreWaitsMs: [6000] });
  // Read 1 at 0 s: suspected; the next read is due after the settle window.
  t.same((await run([s('a', '1')])).observations, []);
  t.same(asked, [2000], 'a run asked for in 2 s');
  clock += 2000;
  t.same((await run([s('a', '1')])).observations, [], 'two reads 2 s apart: not yet (drift waits once more)');
  t.same(asked.at(-1), 6000, 'the third read is due 6 s later');
  clock += 1000;
  t.same((await run([s('a', '1')])).observations, [], 'a run in between (2 s interval) agrees, but the span is not there yet');
  t.same(asked.at(-1), 5000);
  clock += 5000;
  const r = await run([s('a', '1', 'now 7')]);
  t.same(r.observations.map((x) => [x.subject, x.message]), [['a', 'now 7']], 'confirmed at 8 s, with the last read\'s numbers');
  const n = asked.length;
  clock += 2000;
  t.same((await run([s('a', '1')])).observations.length, 1, 'stays confirmed while reads agree, at once');
  t.equal(asked.length, n, 'nothing left to confirm: no extra run asked for');
  t.same(sinces.slice(0, 2), [undefined, 10_000 + 2000], 'the first sighting may use a cached view; with something carried the read is fresh');
  // A change of facts starts over; a read without it dismisses it.
  const changed = await run([s('a', '2')]);
  t.same([changed.observations, changed.dismissed], [[], 1], 'new facts (a restart): a new suspect');
  const gone = await run([]);
  t.same([gone.observations, gone.dismissed, store.size], [[], 1, 0], 'gone: dismissed and forgotten');
});

t.test('within one run (check): every wait is announced so the runner moves its deadline', async (t) => {
  const paused: number[] = [];
  const ctx = { runtime: { settleMs: 3, snapshot: async () => ({ runtimes: [], containers: [], takenAt: 0 }), ping: async () => [] }, now: () => Date.now(), signal: new AbortController().signal, pausing: (ms: number) => paused.push(ms) };
  const r = await confirmSuspects(ctx, async () => [s('a', '1')], { moreWaitsMs: [9] });
  t.same([r.observations.length, paused], [1, [3, 9]]);
});

t.test('across runs: a suspect first seen in an early confirming read waits for the schedule (a busy node has a container in transition at every read)', async (t) => {
  const store = new Map();
  const first = carrySuspects(store, [s('a', '1')], [2000, 6000], 0, false);
  t.same([first.observations, first.rereadInMs], [[], undefined], 'no early read asked for it');
  const scheduled = carrySuspects(store, [s('a', '1')], [2000, 6000], 30_000, true);
  t.equal(scheduled.rereadInMs, 250, 'seen again at the next scheduled run: its last confirming read is due at once');
  t.same(carrySuspects(store, [s('a', '1')], [2000, 6000], 30_250, true).observations.map((o) => o.subject), ['a'], 'three reads over 30 s: confirmed');
  const fresh = carrySuspects(new Map(), [s('b', '1')], [2000, 6000], 0, true);
  t.equal(fresh.rereadInMs, 2000, 'first seen in a scheduled run: the early read is asked for');
});

t.test('across runs: a read whose view began before the next read was due (a run triggered early) neither counts nor confirms', async (t) => {
  const store = new Map<string, { facts: string; firstSeen: number; reads: number }>();
  // Seen first at 50.0 s (the read's end). A run triggered at once reads from 50.05 s to 52.1 s.
  carrySuspects(store, [s('f', 'critical|c1')], [2000], 50_000, true);
  const early = carrySuspects(store, [s('f', 'critical|c1')], [2000], 52_100, true, new Set(), 50_050);
  t.same(early.observations, [], 'two reads 0.05 s apart confirm nothing, though the second ended 2.1 s after the first');
  t.equal([...store.values()][0]?.reads, 1, 'and it is not counted as a read');
  t.ok(early.rereadInMs !== undefined && early.rereadInMs >= 250, 'the next read is still asked for');
  const spaced = carrySuspects(store, [s('f', 'critical|c1')], [2000], 54_000, true, new Set(), 52_200);
  t.same(spaced.observations.map((x: Observation) => x.subject), ['f'], 'a view begun 2.2 s after the first read confirms');
  const other = new Map();
  carrySuspects(other, [s('g', 'critical|c1')], [2000], 50_000, true);
  const changed = carrySuspects(other, [s('g', 'critical|c2')], [2000], 50_500, true, new Set(), 50_100);
  t.equal(changed.dismissed, 1, 'other facts in an early read still dismiss the suspect');
});

t.test('across runs: a read that could not judge one suspect (suspectKey) carries it as it was; the rest of the check is judged', async (t) => {
  const store = new Map<string, { facts: string; firstSeen: number; reads: number }>();
  carrySuspects(store, [s('a', 'critical|c1'), s('b', 'critical|c2')], [2000], 10_000, true);
  const r = carrySuspects(store, [], [2000], 13_000, true, new Set([suspectKey('runtime.drift', 'a')]));
  t.equal(r.dismissed, 1, 'b, not seen and judged, is dismissed');
  t.same([...store.keys()], [suspectKey('runtime.drift', 'a')], 'a, not judged, is carried');
  t.same(store.get(suspectKey('runtime.drift', 'a')), { facts: 'critical|c1', firstSeen: 10_000, reads: 1 }, 'unchanged');
});
