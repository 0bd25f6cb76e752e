import t from 'tap';
import { countBySeverity, formatStatus, formatSummary, StatusLine } from '../../cli/status.js';
import { painter } from '../../cli/format.js';
import type { Finding, Severity } from '../../protocol/finding.js';

const finding = (node: string, severity: Severity, state: Finding['state'] = 'firing'): Finding =>
  ({ id: `${node}-${severity}`, node, check: 'disk.usage', severity, subject: '/', message: 'm', evidence: {}, state, firstSeen: '', lastSeen: '' }) as Finding;

t.test('counts and the summary leave resolved findings out', async (t) => {
  const fs = [finding('a', 'critical'), finding('a', 'warning'), finding('b', 'warning'), finding('b', 'critical', 'resolved')];
  t.same(countBySeverity(fs), { critical: 1, warning: 2, info: 0 });
  t.equal(formatSummary(fs.slice(0, 3)), '3 active findings on 2 nodes: 1 critical, 2 warning, 0 info');
  t.equal(formatSummary([finding('a', 'info')]), '1 active finding on 1 node: 0 critical, 0 warning, 1 info');
  t.equal(formatSummary([]), 'no active findings');
});

t.test('a lost link is said, with since when, and is never "all quiet"', async (t) => {
  const p = painter(false);
  const at = new Date('2026-01-01T12:00:05Z');
  t.equal(formatStatus({ critical: 0, warning: 0, info: 0, link: { up: false, since: new Date('2026-01-01T11:59:00Z') } }, p, at), '12:00:05  0 critical · 0 warning · 0 info  ·  aggregator lost since 11:59:00');
  t.equal(formatStatus({ critical: 0, warning: 0, info: 0, link: { up: true }, collectors: { ok: 7, total: 8 }, nodes: { connected: 1, total: 1 } }, p, at), '12:00:05  0 critical · 0 warning · 0 info  ·  1 of 1 node connected  ·  collectors 7/8 ok  ·  all quiet');
});

t.test('on a terminal: cut to the width, ordinary lines above it, cleared before exit', async (t) => {
  let err = '';
  const out: string[] = [];
  const line = new StatusLine({ tty: true, write: (s) => (err += s), out: (l) => out.push(l), columns: 11 });
  line.show('0123456789abcdef');
  t.equal(err, '\r\x1b[2K012345678…', 'one column short of the width, so it never wraps');
  err = '';
  line.line('finding');
  t.same(out, ['finding'], 'ordinary lines go to their own stream');
  t.equal(err, '\r\x1b[2K\r\x1b[2K012345678…', 'the status is taken away, then drawn again');
  err = '';
  line.clear();
  t.equal(err, '\r\x1b[2K');
  err = '';
  line.clear();
  t.equal(err, '', 'nothing to clear twice');
});

t.test('in a pipe: forced lines always, others at most every pipeEveryMs', async (t) => {
  let text = '';
  let now = 0;
  const line = new StatusLine({ tty: false, write: (s) => (text += s), pipeEveryMs: 1000, now: () => now });
  line.show('a');
  line.show('b');
  line.show('c', true);
  now = 999;
  line.show('d');
  now = 2000;
  line.show('e');
  t.equal(text, 'a\nc\ne\n');
});
