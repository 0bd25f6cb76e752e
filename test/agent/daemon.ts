import t from 'tap';
import { loadConfig } from '../../agent/config.js';
import { startAgent } from '../../agent/daemon.js';
import type { Transition } from '../../agent/tracker.js';
import { quietLog } from '../helpers/context.js';
import { ensureTestImage, makeImmutableContainer, requireRuntime } from '../helpers/runtime.js';

t.test('live: a container stuck in removal is named by the event it causes, not at the next interval', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  // The immutable collector's interval is 10 minutes here: only the docker event can make it look again.
  const config = loadConfig({ node: 'events', sets: ["agent.listen=''", 'collectors.immutable.interval=10m', 'collectors.mounts.interval=10m'] });
  for (const name of Object.keys(config.collectors)) config.collectors[name]!.enabled = ['runtime', 'immutable', 'mounts'].includes(name);
  const agent = await startAgent(config, { log: quietLog });
  t.teardown(() => agent.stop());
  const runs: number[] = [];
  agent.runner.on('status', (s: { name: string }) => {
    if (s.name === 'immutable') runs.push(Date.now());
  });
  const fired: { at: number; t: Transition }[] = [];
  agent.runner.on('transition', (tr: Transition) => fired.push({ at: Date.now(), t: tr }));
  for (let i = 0; i < 600 && runs.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(runs.length, 1, 'the first scheduled run is done');

  const stuck = await makeImmutableContainer('nw-events-stuck');
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
  t.ok(runs.length >= 2, 'because the event made the collector run again (its interval is 10 minutes)');
  t.comment(`named ${hit ? ((hit.at - removedAt) / 1000).toFixed(1) : '?'} s after docker rm -f failed`);
});
