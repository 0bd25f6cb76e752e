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
