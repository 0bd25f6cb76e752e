import t from 'tap';
import { compareFindings, displaySubject, findingId, groupFindings, worstSeverity } from '../../protocol/finding.js';

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

t.test('displaySubject: names over ids, ids kept in the finding', async (t) => {
  const id = 'a'.repeat(64);
  const layer = 'b'.repeat(64);
  const w = { containerId: id, containerName: 'nginx', pod: 'web-1', namespace: 'shop', podUid: 'u-1' };
  const drift = { subject: id, workload: w };
  t.equal(displaySubject(drift), 'shop/web-1/nginx', 'a container id becomes namespace/pod/container');
  t.equal(drift.subject, id, 'the finding keeps its id');
  t.equal(displaySubject({ subject: id, workload: { containerId: id, containerName: 'builder' } }), 'builder', 'plain docker: the container name');
  t.equal(displaySubject({ subject: `/var/lib/docker/overlay2/${layer}/diff/etc/x`, workload: w }), '/var/lib/docker/overlay2/bbbbbbbbbbbb/diff/etc/x (shop/web-1/nginx)', 'a path: layer ids shortened like docker, whose it is appended');
  t.equal(displaySubject({ subject: `/var/lib/docker/containers/${id}/hostname`, workload: w }), '/var/lib/docker/containers/shop/web-1/nginx/hostname', 'the container id in a path becomes its name');
  t.equal(displaySubject({ subject: id, workload: { containerId: id } }), 'aaaaaaaaaaaa', 'no names known: the short id');
  t.equal(displaySubject({ subject: '/var/lib/docker' }), '/var/lib/docker', 'no workload: as is');
});

t.test('groupFindings: the findings one event caused are one group, with a count', async (t) => {
  const w = { containerId: 'c'.repeat(64), containerName: 'app', pod: 'api-7', namespace: 'prod' };
  const file = (n: number, severity: 'warning' | 'critical' = 'critical') => ({ check: 'immutable.file', severity, subject: `/x/${n}`, message: `file ${n}`, evidence: {}, remedy: `chattr -i /x/${n}`, workload: w });
  const other = { check: 'disk.usage', severity: 'warning' as const, subject: '/', message: 'full', evidence: {}, remedy: 'du' };
  const drift = { check: 'runtime.drift', severity: 'critical' as const, subject: w.containerId, message: 'drift', evidence: {}, remedy: 'drain', workload: w };
  const groups = groupFindings([file(3, 'warning'), other, file(1), drift, file(2)]);
  t.same(groups.map((g) => [g.check, g.severity, g.subject, g.findings.length]), [
    ['immutable.file', 'critical', 'prod/api-7/app', 3],
    ['runtime.drift', 'critical', 'prod/api-7/app', 1],
    ['disk.usage', 'warning', '/', 1],
  ]);
  t.same(groups[0]?.findings.map((f) => f.subject), ['/x/1', '/x/2', '/x/3'], 'worst first inside a group');
});
