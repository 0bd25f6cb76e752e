import t from 'tap';
import { FindingTracker } from '../../agent/tracker.js';
import type { Observation } from '../../protocol/finding.js';

const obs = (subject: string, severity: Observation['severity'] = 'warning'): Observation => ({
  check: 'disk.usage', severity, subject, message: `${subject} ${severity}`, evidence: {}, remedy: 'du',
});

t.test('firing, updated, resolved; ids and firstSeen survive cycles', async (t) => {
  const tr = new FindingTracker('n1');
  const t1 = tr.update('disk', [obs('/a'), obs('/b')], 1000);
  t.same(t1.map((x) => [x.type, x.finding.subject]), [['firing', '/a'], ['firing', '/b']]);
  const t2 = tr.update('disk', [obs('/a'), obs('/b', 'critical')], 2000);
  t.same(t2.map((x) => [x.type, x.finding.subject, x.finding.severity]), [['updated', '/b', 'critical']], 'unchanged /a is quiet');
  t.equal(tr.active().find((f) => f.subject === '/a')?.firstSeen, new Date(1000).toISOString());
  t.equal(tr.active().find((f) => f.subject === '/a')?.lastSeen, new Date(2000).toISOString());
  const t3 = tr.update('disk', [obs('/b', 'critical')], 3000);
  t.same(t3.map((x) => [x.type, x.finding.subject, x.finding.state]), [['resolved', '/a', 'resolved']]);
  t.equal(t3[0]?.finding.id, t1[0]?.finding.id, 'resolution carries the same id');
});

t.test('sources are independent', async (t) => {
  const tr = new FindingTracker('n1');
  tr.update('disk', [obs('/a')], 1);
  t.same(tr.update('sockets', [], 2), [], 'another source reporting nothing resolves nothing of disk');
  t.equal(tr.active().length, 1);
});

t.test('updates carry news: a ticking count refreshes the finding without a transition', async (t) => {
  const tr = new FindingTracker('n1');
  const tw = (n: string, severity: Observation['severity'] = 'warning'): Observation => ({
    check: 'sockstat.timewait', severity, subject: 'tcp', message: `${n} TIME_WAIT sockets of 131,072 allowed`, evidence: { timewait: Number(n.replace(/,/g, '')) }, remedy: 'ss -tan state time-wait | head',
  });
  const refreshed: string[] = [];
  tr.onRefresh = (f) => refreshed.push(f.message);
  tr.update('sockstat', [tw('131,071')], 1);
  t.same(tr.update('sockstat', [tw('131,072')], 2), [], 'no updated transition when only the count moved');
  t.same(refreshed, ['131,072 TIME_WAIT sockets of 131,072 allowed'], 'but the refresh is announced');
  t.equal(tr.active()[0]?.message, '131,072 TIME_WAIT sockets of 131,072 allowed', 'and the active finding carries the new number');
  t.same(tr.active()[0]?.evidence, { timewait: 131072 });
  t.same(tr.update('sockstat', [tw('131,072', 'critical')], 3).map((x) => x.type), ['updated'], 'a severity change is news');
  const other = { ...tw('5'), message: 'TIME_WAIT buckets overflow: 5 dropped' };
  t.same(tr.update('sockstat', [{ ...other, severity: 'critical' }], 4).map((x) => x.type), ['updated'], 'a change of meaning is news');
});
