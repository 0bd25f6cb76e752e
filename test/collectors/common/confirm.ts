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
