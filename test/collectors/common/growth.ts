import t from 'tap';
import { formatMinutes, formatRate, growthOf, keepSamples, minutesUntil, ratePerMinute, type Sample } from '../../../collectors/common/growth.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const T0 = Date.parse('2026-12-04T12:00:00Z');
const settings = { minSpanMs: 120_000, minRatePerMinute: MiB };
/** A sample every 30 s, as the disk collector takes them. */
const series = (values: number[]): Sample[] => values.map((v, i) => [T0 + i * 30_000, v]);

t.test('steady growth: the rate, sustained, and the time to a threshold', async (t) => {
  // 40 MiB every 30 s on a filesystem with 50 GiB used, with a few KiB of jitter.
  const steady = series(Array.from({ length: 11 }, (_, i) => 50 * GiB + i * 40 * MiB + (i % 2 ? 12_288 : -4096)));
  const g = growthOf(steady, settings);
  t.ok(g, 'a rate');
  t.ok(Math.abs(g!.ratePerMinute - 80 * MiB) < 0.5 * MiB, `80 MiB/min (got ${formatRate(g!.ratePerMinute)})`);
  t.equal(g!.sustained, true, 'both halves grow');
  t.equal(g!.samples, 11);
  t.equal(g!.spanMs, 300_000);
  const m = minutesUntil(2 * GiB, 0, g!.ratePerMinute, 24 * 3600_000);
  t.ok(m !== undefined && Math.abs(m - 25.6) < 0.3, `2 GiB left at 80 MiB/min: about 25.6 min (got ${m})`);
  t.equal(formatMinutes(m!), 'about 26 min');
});

t.test('a burst is a rate but not sustained: it must not page', async (t) => {
  // Flat, then one 1 GiB jump (an image pull, a core dump), then flat again.
  const bursty = series([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1].map((x) => 10 * GiB + x * GiB));
  const g = growthOf(bursty, settings);
  t.ok(g && g.ratePerMinute > 0, 'the smoothed rate is positive');
  t.equal(g?.sustained, false, 'all of the growth in one step: not sustained');
  const early = growthOf(series([0, 0, 0, 0, 0, 0, 1].map((x) => 10 * GiB + x * GiB)), settings);
  t.equal(early?.sustained, false, 'a burst at the end: not sustained either');
  t.equal(growthOf(series([0, 1, 2, 3, 4].map((x) => x * 100 * MiB)), settings)?.sustained, true, 'five steady samples: sustained');
  t.equal(growthOf(series([0, 1, 2, 3].map((x) => x * 100 * MiB)), { ...settings, minSpanMs: 60_000 })?.sustained, false, 'under 5 samples: never sustained');
});

t.test('shrinking or flat says nothing', async (t) => {
  t.equal(growthOf(series(Array.from({ length: 10 }, (_, i) => 50 * GiB - i * 40 * MiB)), settings), undefined, 'shrinking');
  t.equal(growthOf(series(Array.from({ length: 10 }, (_, i) => 50 * GiB + (i % 2) * 200 * 1024)), settings), undefined, 'flat with 200 KiB of jitter');
  t.equal(growthOf(series(Array.from({ length: 10 }, () => 50 * GiB)), settings), undefined, 'flat');
  t.equal(minutesUntil(GiB, 2 * GiB, 80 * MiB, 24 * 3600_000), undefined, 'already past the threshold: no estimate');
  t.equal(minutesUntil(GiB, 0, -80 * MiB, 24 * 3600_000), undefined, 'not growing: no estimate');
  t.equal(minutesUntil(200 * GiB, 0, MiB, 24 * 3600_000), undefined, '200 GiB at 1 MiB/min is 142 days: past the horizon');
});

t.test('an agent restart has no history: no rate until the samples span minSpan again', async (t) => {
  const now = T0 + 3600_000;
  const first = keepSamples(undefined, now, 50 * GiB, 300_000);
  t.same(first, [[now, 50 * GiB]], 'one sample');
  t.equal(growthOf(first, settings), undefined, 'one sample: no rate');
  const second = keepSamples(first, now + 30_000, 50 * GiB + 40 * MiB, 300_000);
  t.equal(growthOf(second, settings), undefined, 'two samples 30 s apart: one noisy pair is no rate');
  let s = second;
  for (let i = 2; i <= 4; i++) s = keepSamples(s, now + i * 30_000, 50 * GiB + i * 40 * MiB, 300_000);
  t.ok(growthOf(s, settings), 'five samples over 2 minutes: a rate');
  const later = keepSamples(s, now + 20 * 60_000, 50 * GiB, 300_000);
  t.same(later, [[now + 20 * 60_000, 50 * GiB]], 'samples older than the window are dropped');
  t.same(keepSamples(s, now + 150_000, undefined, 300_000), s, 'a run without a sample (statfs failed) keeps the others');
});

t.test('the words', async (t) => {
  t.equal(formatRate(80 * MiB), '80 MiB/min');
  t.equal(formatRate(1.5 * MiB), '1.5 MiB/min');
  t.equal(formatRate(1.25 * GiB), '1.3 GiB/min');
  t.equal(formatMinutes(0.4), 'under a minute');
  t.equal(formatMinutes(210), 'about 3.5 h');
  t.equal(ratePerMinute([[T0, 0]]), undefined);
});
