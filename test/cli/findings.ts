// check's Findings block: one entry per event, names over ids, a count, the next command.
import t from 'tap';
import { renderFindings } from '../../cli/findings.js';
import { painter } from '../../cli/format.js';

const p = painter(false);
const id = 'd'.repeat(64);
const w = { containerId: id, containerName: 'nginx', pod: 'web-1', namespace: 'shop' };
const file = (n: number) => ({ check: 'immutable.file', severity: 'critical' as const, subject: `/var/lib/docker/overlay2/${'e'.repeat(64)}/diff/f${n}`, message: `f${n} is immutable`, evidence: {}, remedy: `chattr -i f${n}`, workload: w });

t.test('one container event with seven immutable files is one entry with a count', async (t) => {
  const text = renderFindings([1, 2, 3, 4, 5, 6, 7].map(file), p);
  t.match(text, /^Findings \(7\)\nCRITICAL immutable\.file  shop\/web-1\/nginx ×7\n  f1 is immutable\n  also: .*eeeeeeeeeeee\/diff\/f2 \(shop\/web-1\/nginx\), .* and 1 more\n  next: chattr -i f1$/);
  t.notMatch(text, /d{64}|e{64}/, 'no 64-hex ids in human output');
});

t.test('a single finding about a container shows its names; none says none', async (t) => {
  const drift = { check: 'runtime.drift', severity: 'critical' as const, subject: id, message: 'docker says running, the task is STOPPED', evidence: {}, remedy: 'drain', workload: w };
  t.match(renderFindings([drift], p), /CRITICAL runtime\.drift  shop\/web-1\/nginx\n  docker says running/);
  t.equal(renderFindings([], p), 'Findings: none');
});
