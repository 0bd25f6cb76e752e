// The status line and summary that tell a healthy node from a stuck one.
import t from 'tap';
import { formatFindingCounts, formatStatus, formatSummary, UpStatusLine, type StatusSnapshot } from '../../cli/up-status.js';

const NOW = Date.parse('2026-12-01T12:00:00Z');
const snap = (over: Partial<StatusSnapshot> = {}): StatusSnapshot => ({ runs: 0, failedRuns: 0, failing: [], findings: { critical: 0, warning: 0, info: 0 }, ...over });

t.test('the status line says what ran, when, and what fires', async (t) => {
  t.equal(formatStatus(snap(), NOW), '12:00:00  no collector has finished yet  ·  no findings');
  t.equal(
    formatStatus(snap({ runs: 42, lastRunAt: NOW - 12_000, findings: { critical: 1, warning: 2, info: 0 }, nodes: { connected: 1, total: 1 } }), NOW),
    '12:00:00  42 collector runs, last 12s ago  ·  findings: 1 critical, 2 warning  ·  1/1 node connected',
  );
  t.match(formatStatus(snap({ runs: 3, lastRunAt: NOW - 300_000 }), NOW), /last 5m ago/, 'a stuck agent shows: nothing has run for minutes');
  t.match(formatStatus(snap({ runs: 3, failedRuns: 2, lastRunAt: NOW, failing: ['drift'] }), NOW), /3 collector runs \(2 failed or timed out\), last just now  ·  failing: drift/);
  t.equal(formatFindingCounts({ critical: 0, warning: 0, info: 3 }), 'findings: 3 info');
});

t.test('the summary after the first cycle: healthy only when every collector looked and nothing fires', async (t) => {
  const ok = [{ name: 'disk', status: 'ok', durationMs: 5 }, { name: 'sockstat', status: 'ok', durationMs: 1 }];
  t.match(formatSummary(ok, { critical: 0, warning: 0, info: 0 }, 2345), /^first cycle done in 2\.3s: disk ok, sockstat ok\nthis node is healthy: no findings/);
  const noData = formatSummary([...ok, { name: 'mounts', status: 'no-data', durationMs: 1, detail: 'needs hostPID' }, { name: 'runtime', status: 'unavailable', durationMs: 1, detail: 'dockerd does not answer' }], { critical: 0, warning: 0, info: 0 }, 1000);
  t.match(noData, /mounts no-data \(needs hostPID\), runtime unavailable \(dockerd does not answer\)\nno findings, but 2 collectors could not look \(mounts, runtime\): not known to be healthy/, 'no-data and unavailable did not look either');
  t.notMatch(noData, /is healthy/);
  t.match(formatSummary(ok, { critical: 1, warning: 1, info: 0 }, 1000), /\n2 findings \(1 critical, 1 warning\), listed above/);
  const blind = formatSummary([{ name: 'drift', status: 'timeout', durationMs: 20_000, detail: 'no result within 20000 ms' }], { critical: 0, warning: 0, info: 0 }, 20_000);
  t.match(blind, /no findings, but drift could not look: not known to be healthy/);
  t.notMatch(blind, /is healthy/);
});

t.test('on a terminal the line is redrawn in place, and stream lines print above it', async (t) => {
  const err: string[] = [];
  const out: string[] = [];
  const line = new UpStatusLine({ tty: true, write: (s) => err.push(s), out: (l) => out.push(l), snapshot: () => snap({ runs: 1, lastRunAt: NOW }), now: () => NOW, columns: 40 });
  line.start();
  t.equal(err.at(-1), '\r\x1b[2K12:00:00  1 collector run, last just n…', 'drawn at once, over the line, cut to the width so redraws leave no wrapped remains');
  line.line('a finding');
  t.same(out, ['a finding']);
  t.same(err.slice(-2).map((s) => s.slice(0, 5)), ['\r\x1b[2K', '\r\x1b[2K'], 'cleared before the line, drawn again after it');
  line.stop();
  t.equal(err.at(-1), '\r\x1b[2K', 'and cleared when stopping');
});

t.test('in a pipe it is a plain line, only on its (minutes-long) tick', async (t) => {
  const err: string[] = [];
  const line = new UpStatusLine({ tty: false, write: (s) => err.push(s), out: () => undefined, snapshot: () => snap(), now: () => NOW });
  line.start();
  line.line('x');
  line.note('summary');
  t.same(err, ['summary\n'], 'no control codes and no status until the tick');
  line.tick();
  t.equal(err.at(-1), 'status 12:00:00  no collector has finished yet  ·  no findings\n');
  line.stop();
});
