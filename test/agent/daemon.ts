// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import net from 'node:net';
import { configSpec, loadConfig } from '../../agent/config.js';
import { fanOut, startAgent } from '../../agent/daemon.js';
import type { Exporter } from '../../agent/exporters/exporter.js';
import { Runner } from '../../agent/runner.js';
import type { Transition } from '../../agent/tracker.js';
import type { AnyCollector } from '../../collectors/types.js';
import type { Observation } from '../../protocol/finding.js';
import { s } from '../../protocol/schema.js';
import { envFor, quietLog } from '../helpers/context.js';
import { ensureTestImage, makeImmutableContainer, requireRuntime } from '../helpers/runtime.js';

// A runner whose one collector reports, run after run, the observations of the next step.
function scriptedRunner(steps: Observation[][]) {
  let run = 0;
  const collector: AnyCollector = { name: 'fake', description: 'fake', checks: ['fake.x'], conditions: { 'fake.x': null }, defaultIntervalMs: 1000, defaultTimeoutMs: 500, configSpec: s.object({}), collect: async () => ({ kind: 'ok', observations: steps[run++] ?? [], data: null }) };
  const config = configSpec([collector]).check({ collectors: { fake: {} } }, '', []) as ReturnType<typeof loadConfig>;
  config.node = 'n1';
  return new Runner({ collectors: [collector], config, env: envFor('/'), log: quietLog });
}

const obs = (subject: string, severity: Observation['severity'], n: number): Observation => ({ check: 'fake.x', severity, subject, message: `${n} sockets on ${subject}`, evidence: { n }, remedy: 'ss -s' });

/** An exporter that writes down every event it is handed, as "kind subject detail". */
function recorder(name: string): Exporter & { seen: string[] } {
  const seen: string[] = [];
  return {
    name,
    seen,
    onTransition: (tr) => void seen.push(`${tr.type} ${tr.finding.subject} ${tr.finding.severity}`),
    onRefresh: (f) => void seen.push(`refresh ${f.subject} ${f.message}`),
    onStatus: (st) => void seen.push(`status ${st.name} ${st.status}`),
    stop: () => undefined,
  };
}

t.test('fan-out: every exporter gets every transition, refresh and status, in the order the runner made them; one that throws starves no other', async (t) => {
  const runner = scriptedRunner([
    [obs('a', 'warning', 1), obs('b', 'warning', 1)],
    [obs('a', 'warning', 2), obs('b', 'critical', 1)],
    [obs('a', 'warning', 3)],
    [],
  ]);
  // What the runner emitted, in order, as the exporters should see it.
  const emitted = recorder('truth');
  runner.on('transition', emitted.onTransition!);
  runner.on('refresh', emitted.onRefresh!);
  runner.on('status', emitted.onStatus!);
  const first = recorder('first');
  const last = recorder('last');
  const broken: Exporter = {
    name: 'broken',
    onTransition: () => {
      throw new Error('transition boom');
    },
    onRefresh: () => {
      throw new Error('refresh boom');
    },
    onStatus: () => Promise.reject(new Error('status boom')),
    stop: () => undefined,
  };
  const errors: Record<string, unknown>[] = [];
  const log = { ...quietLog, error: (o: object) => void errors.push(o as Record<string, unknown>) };
  const unwire = fanOut(runner, [first, broken, last], log);
  for (let i = 0; i < 4; i++) await runner.runOnce();
  await new Promise((r) => setImmediate(r));

  t.same(emitted.seen, [
    'firing a warning', 'firing b warning', 'status fake ok',
    'refresh a 2 sockets on a', 'updated b critical', 'status fake ok',
    'refresh a 3 sockets on a', 'resolved b critical', 'status fake ok',
    'resolved a warning', 'status fake ok',
  ], 'the runner made firings, a refresh, an update, resolutions and statuses');
  t.same(first.seen, emitted.seen, 'the exporter before the broken one got every event, in order');
  t.same(last.seen, emitted.seen, 'the exporter after the broken one got every event too, in order');
  t.equal(errors.length, emitted.seen.length, 'each failure of the broken exporter is logged');
  t.ok(errors.every((e) => e['code'] === 'NW_ERR_EXPORTER' && e['exporter'] === 'broken'), 'with the code and the exporter named');
  t.same([...new Set(errors.map((e) => `${String(e['hook'])}: ${String(e['err'])}`))].sort(), ['onRefresh: refresh boom', 'onStatus: status boom', 'onTransition: transition boom'], 'a throw and a rejection alike, with the hook and the error');

  unwire();
  await runner.runOnce();
  t.equal(first.seen.length, emitted.seen.length - 1, 'after unwiring the exporters get nothing more');
});

t.test('a taken listen address stops the agent from starting, with the error', async (t) => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const config = loadConfig({ node: 'taken', sets: [`agent.listen=127.0.0.1:${port}`] });
  for (const c of Object.values(config.collectors)) c.enabled = false;
  await t.rejects(startAgent(config, { log: quietLog }), { code: 'NW_ERR_CONFIG', message: new RegExp(`agent.listen \\(--listen\\): 127\\.0\\.0\\.1:${port} is already in use`) });
});

t.test('live: a container stuck in removal is named by the event it causes, not at the next interval', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  // The immutable collector's interval is 10 minutes here: only the docker event can make it look again.
  // Its first run sweeps storage for one slice (10 s by default; 1 s here, the test waits for that run).
  const config = loadConfig({ node: 'events', sets: ["agent.listen=''", 'collectors.immutable.interval=10m', 'collectors.immutable.sweepSlice=1s', 'collectors.mounts.interval=10m'] });
  for (const name of Object.keys(config.collectors)) config.collectors[name]!.enabled = ['runtime', 'immutable', 'mounts'].includes(name);
  const agent = await startAgent(config, { log: quietLog });
  t.teardown(() => agent.stop());
  const runs: number[] = [];
  agent.runner.on('status', (s: { name: string }) => {
    if (s.name === 'immutable') runs.push(Date.now());
  });
  const fired: { at: number; t: Transition }[] = [];
  agent.runner.on('transition', (tr: Transition) => fired.push({ at: Date.now(), t: tr }));
  const began = Date.now();
  for (let i = 0; i < 600 && runs.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.comment(`first immutable run ${((Date.now() - began) / 1000).toFixed(1)} s after the agent started`);
  // Events from containers other tests left behind may already have made it run again: at least once.
  t.ok(runs.length >= 1, 'the first scheduled run is done');

  const made = Date.now();
  const stuck = await makeImmutableContainer('nw-events-stuck');
  t.comment(`the stuck container made in ${((Date.now() - made) / 1000).toFixed(1)} s`);
  t.teardown(() => stuck.cleanup());
  const { locked } = stuck;
  const removedAt = Date.now();
  t.not(stuck.remove().code, 0, 'docker rm -f fails');
  let hit: { at: number; t: Transition } | undefined;
  for (let i = 0; i < 600 && !hit; i++) {
    await new Promise((r) => setTimeout(r, 100));
    hit = fired.find((x) => x.t.type === 'firing' && x.t.finding.check === 'immutable.file' && x.t.finding.subject === locked);
  }
  t.ok(hit, 'immutable.file fires');
  t.equal(hit?.t.finding.severity, 'critical');
  t.ok(runs.some((at) => at >= removedAt), 'because the event made the collector run again after the failed removal (its interval is 10 minutes)');
  t.comment(`named ${hit ? ((hit.at - removedAt) / 1000).toFixed(1) : '?'} s after docker rm -f failed`);
});
