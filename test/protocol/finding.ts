import t from 'tap';
import { compareFindings, findingId, worstSeverity } from '../../protocol/finding.js';

t.test('ids are stable for node + check + subject and differ otherwise', async (t) => {
  t.equal(findingId('n1', 'disk.usage', '/'), findingId('n1', 'disk.usage', '/'));
  t.not(findingId('n1', 'disk.usage', '/'), findingId('n2', 'disk.usage', '/'));
  t.not(findingId('n1', 'disk.usage', '/a b'), findingId('n1', 'disk.usage b', '/a'), 'fields cannot run into each other');
});

t.test('ordering and worst severity', async (t) => {
  const base = { message: '', evidence: {}, remedy: '' };
  const list = [
    { ...base, check: 'b', subject: 'x', severity: 'warning' as const },
    { ...base, check: 'a', subject: 'x', severity: 'critical' as const },
    { ...base, check: 'a', subject: 'x', severity: 'info' as const },
  ];
  t.same([...list].sort(compareFindings).map((f) => f.severity), ['critical', 'warning', 'info']);
  t.equal(worstSeverity(list), 'critical');
  t.equal(worstSeverity([]), undefined);
});
