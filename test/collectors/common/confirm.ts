import t from 'tap';
import { confirmSuspects, containerFacts, keepConfirmed, type Suspect } from '../../../collectors/common/confirm.js';
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
