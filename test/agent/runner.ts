import t from 'tap';
import { s } from '../../protocol/schema.js';
import { Runner } from '../../agent/runner.js';
import { configSpec, loadConfig } from '../../agent/config.js';
import type { AnyCollector } from '../../collectors/types.js';
import { envFor, quietLog } from '../helpers/context.js';
import { eventually } from '../helpers/processes.js';

const spec = s.object({});
const make = (name: string, collect: AnyCollector['collect']): AnyCollector => ({
  name, description: name, checks: [`${name}.x`], conditions: { [`${name}.x`]: null }, defaultIntervalMs: 1000, defaultTimeoutMs: 500, configSpec: spec, collect,
});

function runnerFor(collectors: AnyCollector[]) {
  const config = configSpec(collectors).check({ collectors: Object.fromEntries(collectors.map((c) => [c.name, { interval: '1s', timeout: '300ms' }])) }, '', []) as ReturnType<typeof loadConfig>;
  config.node = 'n1';
  return new Runner({ collectors, config, env: envFor('/'), log: quietLog });
}

t.test('a collector that never settles is reported while the others keep their cadence', async (t) => {
  let fastRuns = 0;
  const fast = make('fast', async () => {
    fastRuns++;
    return { kind: 'ok', observations: [], data: fastRuns };
  });
  const stuck = make('stuck', () => new Promise(() => {}));
  const runner = runnerFor([fast, stuck]);
  const statuses: string[] = [];
  runner.on('status', (st: { name: string; status: string }) => statuses.push(`${st.name}:${st.status}`));
  const started = Date.now();
  runner.start();
  // Wait for what is asserted below (it took 3.4 s of a fixed sleep; a loaded machine can take longer):
  // a stuck collector that held the others back would keep fast from its three runs.
  const timeouts = () => statuses.filter((x) => x === 'stuck:timeout').length;
  await eventually(() => fastRuns >= 3 && timeouts() >= 2 && runner.active().some((x) => x.check === 'collector.timeout'));
  runner.stop();
  t.ok(fastRuns >= 3, `fast ran ${fastRuns} times in ${((Date.now() - started) / 1000).toFixed(1)} s with a 1 s interval`);
  const f = runner.active().find((x) => x.check === 'collector.timeout');
  t.equal(f?.subject, 'stuck');
  t.match(f?.message, /has not finished/);
  t.ok(timeouts() >= 2, 'still reported on later cycles, without piling up runs');
});

t.test('runs that events ask for do not push the scheduled run away: on a busy node the scheduled work still happens', async (t) => {
  // Like immutable: a triggered run does only the urgent part; the scheduled one also sweeps.
  const runs: boolean[] = [];
  const sweeper = make('sweeper', async (ctx) => {
    runs.push(ctx.triggered === true);
    return { kind: 'ok', observations: [], data: runs.length };
  });
  const runner = runnerFor([sweeper]); // interval 1 s
  runner.start(0);
  // Containers dying all the time: an event every 100 ms asks for a run.
  const events = setInterval(() => runner.trigger(['sweeper']), 100);
  t.teardown(() => {
    clearInterval(events);
    runner.stop();
  });
  const scheduled = () => runs.filter((triggered) => !triggered).length;
  await eventually(() => scheduled() >= 3 && runs.length >= 10);
  clearInterval(events);
  runner.stop();
  t.ok(scheduled() >= 3, `${scheduled()} scheduled runs among ${runs.length}: the schedule held under a stream of events (it was 1: every event pushed it an interval away)`);
  t.ok(runs.filter((triggered) => triggered).length >= 5, 'and the events still got their runs at once');
});

t.test('a collector that throws becomes collector.failed, and resolves when it recovers', async (t) => {
  let fail = true;
  const flaky = make('flaky', async () => {
    if (fail) throw new Error('EACCES reading /proc/net/sockstat');
    return { kind: 'ok', observations: [], data: null };
  });
  const runner = runnerFor([flaky]);
  const c1 = await runner.runOnce();
  t.equal(c1.statuses[0]?.status, 'failed');
  t.match(runner.active()[0]?.message, /The flaky collector failed: EACCES/);
  fail = false;
  const c2 = await runner.runOnce();
  t.equal(c2.statuses[0]?.status, 'ok');
  t.same(c2.transitions.map((x) => [x.type, x.finding.check]), [['resolved', 'collector.failed']]);
});

t.test('a failed run keeps the collector\'s earlier findings instead of resolving them', async (t) => {
  let n = 0;
  const c = make('c', async () => {
    n++;
    if (n === 2) throw new Error('boom');
    return { kind: 'ok', observations: [{ check: 'c.x', severity: 'warning', subject: 's', message: 'm', evidence: {}, remedy: 'r' }], data: null };
  });
  const runner = runnerFor([c]);
  await runner.runOnce();
  const c2 = await runner.runOnce();
  t.notOk(c2.transitions.some((x) => x.type === 'resolved' && x.finding.check === 'c.x'), 'not knowing is not healthy');
  t.ok(runner.active().some((x) => x.check === 'c.x'));
});

t.test('no-data is not an error', async (t) => {
  const runner = runnerFor([make('nodata', async () => ({ kind: 'no-data', reason: 'no docker socket' }))]);
  const c = await runner.runOnce();
  t.same([c.statuses[0]?.status, c.statuses[0]?.detail], ['no-data', 'no docker socket']);
  t.same(runner.active(), []);
});

t.test("a collector's progress reaches the runner's listeners, named; without one the collector is not asked to report", async (t) => {
  const given: boolean[] = [];
  const long = make('long', async (ctx) => {
    given.push(ctx.progress !== undefined);
    ctx.progress?.({ step: 'scanning storage', done: 1, total: 2, unit: 'units', entries: 10 });
    ctx.progress?.({ step: 'scanning storage', done: 2, total: 2, unit: 'units', entries: 25 });
    return { kind: 'ok', observations: [], data: null };
  });
  const runner = runnerFor([long]);
  await runner.runOnce();
  const seen: unknown[] = [];
  runner.on('progress', (name: string, p: { done: number; entries: number }) => seen.push([name, p.done, p.entries]));
  await runner.runOnce();
  t.same(given, [false, true]);
  t.same(seen, [['long', 1, 10], ['long', 2, 25]]);
});

t.test('log floods: a stuck collector re-asked by a stream of events logs one line per episode and is not re-run at the event rate', async (t) => {
  let release: () => void = () => undefined;
  let calls = 0;
  const stuck = make('stuck', () => {
    calls++;
    return calls === 1 ? new Promise((resolve) => (release = () => resolve({ kind: 'ok', observations: [], data: 0 }))) : Promise.resolve({ kind: 'ok', observations: [], data: 0 });
  });
  const config = configSpec([stuck]).check({ collectors: { stuck: { interval: '1s', timeout: '300ms' } } }, '', []) as ReturnType<typeof loadConfig>;
  config.node = 'n1';
  const lines: { msg: string; obj: Record<string, unknown> }[] = [];
  const capture = { ...quietLog, warn: (obj: Record<string, unknown>, msg: string) => void lines.push({ obj, msg }), child: () => capture } as never;
  const runner = new Runner({ collectors: [stuck], config, env: envFor('/'), log: capture });
  const statuses: string[] = [];
  runner.on('status', (st: { status: string }) => statuses.push(st.status));
  runner.start(0);
  // Events every 5 ms for 2.5 s: about 500 requests while the first run hangs.
  const events = setInterval(() => runner.trigger(['stuck']), 5);
  t.teardown(() => {
    clearInterval(events);
    runner.stop();
  });
  await new Promise((r) => setTimeout(r, 2500)); // scenario time: the stream of events
  const skipped = statuses.filter((s) => s === 'timeout').length;
  t.equal(lines.filter((l) => /still running/.test(l.msg)).length, 1, 'one warn line for the episode');
  t.ok(skipped >= 1 && skipped <= 6, `${skipped} timeout statuses in 2.5 s at a 1 s interval, not one per event`);
  release();
  await eventually(() => lines.some((l) => /finished its stuck run/.test(l.msg)));
  const end = lines.find((l) => /finished its stuck run/.test(l.msg));
  t.ok(Number(end?.obj['skippedRuns']) >= 1, `the episode's end says how many runs were skipped (${String(end?.obj['skippedRuns'])})`);
  clearInterval(events);
  runner.stop();
});

t.test('short intervals: confirmation is carried across runs, so a real suspect at a 1 s interval is confirmed without any collector.timeout', async (t) => {
  // A drift-like collector with a 300 ms timeout: within one run, the 2 s + 6 s confirmation could
  // never finish (it timed out on every suspect at 2 s intervals and never reported the fault).
  const { confirmSuspects } = await import('../../collectors/common/confirm.js');
  const runs: { triggered: boolean; at: number }[] = [];
  const drifty = make('drifty', async (ctx) => {
    runs.push({ triggered: ctx.triggered === true, at: Date.now() });
    const r = await confirmSuspects({ ...ctx, runtime: { ...ctx.runtime, settleMs: 400 } }, async () => [{ observation: { check: 'drifty.x', severity: 'critical', subject: 'c1', message: 'drifted', evidence: {}, remedy: 'x' }, facts: 'same' }], { moreWaitsMs: [1200] });
    return { kind: 'ok', observations: r.observations, data: runs.length };
  });
  const runner = runnerFor([drifty]);
  const statuses: string[] = [];
  runner.on('status', (st: { status: string }) => statuses.push(st.status));
  const started = Date.now();
  runner.start(0);
  t.teardown(() => runner.stop());
  await eventually(() => runner.active().some((f) => f.check === 'drifty.x'));
  runner.stop();
  const tookMs = Date.now() - started;
  t.same(statuses.filter((s) => s !== 'ok'), [], 'every run ok: no timeout');
  t.ok(tookMs >= 1600, `confirmed after the whole window (${tookMs} ms >= 400 + 1200)`);
  t.ok(runs.some((r) => r.triggered), 'a confirming read the collector asked for ran before the schedule (as a light run)');
});

t.test('one-shot (check): a run that waits on purpose has its deadline moved by the wait, not reported as a timeout', async (t) => {
  const waiter = make('waiter', async (ctx) => {
    ctx.pausing?.(600);
    await new Promise((r) => setTimeout(r, 600));
    return { kind: 'ok', observations: [], data: 1 };
  });
  const runner = runnerFor([waiter]); // timeout 300 ms
  const r = await runner.runOnce();
  t.same(r.statuses.map((s) => s.status), ['ok'], 'a 600 ms announced wait under a 300 ms timeout');
  const hang = make('hang', async (ctx) => {
    ctx.pausing?.(100);
    await new Promise((r) => setTimeout(r, 2000));
    return { kind: 'ok', observations: [], data: 1 };
  });
  const r2 = await runnerFor([hang]).runOnce();
  t.same(r2.statuses.map((s) => s.status), ['timeout'], 'but a hang past the timeout and the announced wait still times out');
});

t.test("a run's waits on the runtime do not count against its timeout (the runtime has its own deadline and findings); a hang elsewhere still does, and so does a runtime wait past three runtime deadlines", async (t) => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const snapshotAfter = (ms: number) => async () => {
    await sleep(ms);
    return { takenAt: Date.now(), containers: [], runtimes: [] } as never;
  };
  const build = (collector: AnyCollector, snapshotMs: number, runtimeTimeoutMs: number) => {
    const config = configSpec([collector]).check({ collectors: { [collector.name]: { interval: '1s', timeout: '300ms' } } }, '', []) as ReturnType<typeof loadConfig>;
    config.node = 'n1';
    (config as unknown as { runtime: { timeout: number } }).runtime = { timeout: runtimeTimeoutMs };
    const env = envFor('/');
    env.runtime = { snapshot: snapshotAfter(snapshotMs), ping: async () => [], settleMs: 2000 };
    return new Runner({ collectors: [collector], config, env, log: quietLog });
  };
  let seen: unknown;
  const asker = make('asker', async (ctx) => {
    seen = ctx.runtime;
    await ctx.runtime.snapshot();
    await sleep(100);
    return { kind: 'ok', observations: [], data: 1 };
  });
  const slow = build(asker, 700, 1000);
  const r = await slow.runOnce();
  t.same(r.statuses.map((s) => s.status), ['ok'], 'a 700 ms runtime wait and 100 ms of its own under a 300 ms timeout: ok');
  const first = seen;
  await slow.runOnce();
  t.equal(seen, first, 'each run of a collector sees the same runtime object (the runtime collector keys its episodes by it)');
  const hang = make('hang', async (ctx) => {
    await ctx.runtime.snapshot();
    await sleep(1500);
    return { kind: 'ok', observations: [], data: 1 };
  });
  t.same((await build(hang, 100, 1000).runOnce()).statuses.map((s) => s.status), ['timeout'], 'a 1.5 s hang of its own after a quick runtime answer: timeout');
  t.same((await build(asker, 1500, 100).runOnce()).statuses.map((s) => s.status), ['timeout'], 'a runtime wait longer than three runtime deadlines (3 x 100 ms) counts again: timeout');
});
