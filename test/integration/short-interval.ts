// @live quiet: uses the real machine through test/helpers/live.ts or runtime.ts; it asserts a calm node (no false finding under churn, load and timing), so it runs after the unit files
// Short intervals on a busy node (issue 17.1): the agent's runner at 2 s for runtime, drift and mounts,
// its timeouts derived, churn all along. Confirmation is carried across runs, so no run waits out the
// settle windows inside its timeout: the persistent drift, the ghost task, the held mount and the
// frozen containerd are all reported, and not one collector.timeout fires.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { COLLECTORS } from '../../collectors/index.js';
import { loadConfig } from '../../agent/config.js';
import { Runner } from '../../agent/runner.js';
import type { Transition } from '../../agent/tracker.js';
import { envFor, quietLog } from '../helpers/context.js';
import { copyToContainerd, DOCKER, ensureTestImage, makePersistentDrift, ourDaemonPid, removeContainer, removeContainersAsync, requireRuntime, startRuntime, TEST_IMAGE } from '../helpers/runtime.js';
import { heldByContainers, orphanedBefore, startChurn } from '../../bench/churn.js';
import { heldLoopFs, requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

const SHORT = ['runtime', 'drift', 'mounts'];

t.test('live: a 2 s-interval agent on a busy node reports drift, a ghost task, a held mount and a frozen containerd, with no collector.timeout', async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { commands: ['ctr', 'unshare', 'mkfs.ext4', 'losetup'] })) return;
  if ((ourDaemonPid('containerd') === undefined || ourDaemonPid('dockerd') === undefined) && !requireLive(t, { paths: ['/nonexistent: the daemons were not started by scripts/start-test-runtime.sh, so this test will not signal them'] })) return;
  ensureTestImage();
  const criImage = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=churn']);
  const ghostRef = copyToContainerd(TEST_IMAGE, 'moby', ['nodewarden-test=drift-ghost']);
  const config = loadConfig({ node: 'short', sets: SHORT.map((c) => `collectors.${c}.interval=2s`) });
  for (const name of Object.keys(config.collectors)) config.collectors[name]!.enabled = SHORT.includes(name);
  t.equal(config.collectors['drift']!.timeout, 8000, 'the derived drift timeout: the runtime deadline and 3 s for the reads, no room for settle windows');
  const runner = new Runner({ collectors: COLLECTORS, config, env: envFor('/'), log: quietLog });
  // What was active before (other tests' leaks on a shared machine) is set aside, and so are shims leaked
  // before this test began that come of age during it (orphanedBefore).
  const startedAt = Date.now();
  await runner.runOnce(SHORT);
  const baseline = new Set(runner.active().map((f) => f.id));
  const fired: Transition[] = [];
  runner.on('transition', (tr: Transition) => {
    if (tr.type !== 'resolved' && !baseline.has(tr.finding.id) && !orphanedBefore(tr.finding, Date.now(), startedAt)) fired.push(tr);
  });
  const timeouts = () => fired.filter((f) => f.finding.check === 'collector.timeout');
  const churn = startChurn({ docker: DOCKER, image: TEST_IMAGE, criImage, prefix: 'nw-short' });
  const ghost = `nw-short-ghost-${process.pid}`;
  let frozen: number | undefined;
  t.teardown(async () => {
    if (frozen) process.kill(frozen, 'SIGCONT');
    runner.stop();
    await churn.stop();
    removeContainer('nw-short-drift');
    spawnSync('ctr', ['-n', 'moby', 'task', 'kill', '-s', 'SIGKILL', ghost]);
    spawnSync('ctr', ['-n', 'moby', 'task', 'rm', '-f', ghost]);
    spawnSync('ctr', ['-n', 'moby', 'container', 'rm', ghost]);
    startRuntime();
  });
  runner.start();
  const t0 = Date.now();
  const mark = (what: string) => t.comment(`${what} at +${((Date.now() - t0) / 1000).toFixed(1)} s`);

  // 1. Churn alone for 12 s: quiet. Six runs of each collector at 2 s, and a suspect of the first run is
  // confirmed or dismissed within 8 s (2 s settle, then 6 s more): the window holds whole confirmations.
  // It was 20 s; the churn goes on through steps 2 to 5 (about a minute more), where the timeout
  // assertion below still covers every run. The long version is `npm run bench -- soak --interval 2s`
  // (minutes of churn at these intervals, false transitions counted).
  await new Promise((r) => setTimeout(r, 12_000));
  const noise = fired.filter((f) => f.finding.check !== 'mount.holder' || heldByContainers(f.finding.evidence));
  t.same(noise.map((f) => `${f.finding.check} ${f.finding.message.slice(0, 140)}`), [], 'nothing fires while containers churn at 2 s intervals');
  mark('churn quiet');

  // 2. The persistent drift.
  const { id: driftId } = await makePersistentDrift('nw-short-drift');
  t.ok(await eventually(() => runner.active().some((f) => f.check === 'runtime.drift' && f.subject === driftId), 60_000), 'the persistent drift is reported');
  mark('drift reported');
  // Removing a drifted container waits 10 s for an exit that never comes: all at once, in the
  // background, while the next faults are made.
  const removing = removeContainersAsync([...runner.active().filter((x) => x.check === 'runtime.drift' && x.subject !== driftId && !baseline.has(x.id)).map((f) => f.subject), 'nw-short-drift']);
  t.teardown(() => removing);

  // 3. A ghost task: containerd runs it in docker's namespace, docker has no such container.
  mark('ghost started');
  execFileSync('ctr', ['-n', 'moby', 'run', '-d', ghostRef, ghost, 'sleep', '600'], { stdio: 'ignore' });
  t.ok(await eventually(() => runner.active().some((f) => f.check === 'runtime.drift' && f.subject === ghost), 60_000), 'the ghost task is reported');
  mark('ghost reported');

  // 4. A filesystem held in another mount namespace after the host let it go.
  const { fs } = await heldLoopFs(t, 16);
  t.equal(spawnSync('umount', [fs.mountPoint]).status, 0, 'the host unmounts it');
  t.ok(await eventually(() => runner.active().some((f) => f.check === 'mount.holder' && String(f.evidence['mount']).includes(fs.device)), 60_000), 'the held mount is reported');
  mark('held mount reported');

  // 5. containerd frozen.
  frozen = ourDaemonPid('containerd');
  process.kill(frozen!, 'SIGSTOP');
  t.ok(await eventually(() => runner.active().some((f) => f.check === 'runtime.unresponsive' && f.subject === 'containerd'), 60_000), 'the frozen containerd is reported');
  mark('frozen containerd reported');
  process.kill(frozen!, 'SIGCONT');
  frozen = undefined;
  await eventually(() => !runner.active().some((f) => f.check === 'runtime.unresponsive'), 60_000);

  // On this 2-core CI machine, loaded by the churn and the test's own commands, one run of runtime or
  // mounts in about three test runs outlived the 6.3 s it had (a 5 s runtime deadline and a quarter);
  // since then the reads get 3 s (8 s). Before confirmation moved across runs every suspect timed out;
  // more than one is a regression.
  const seen = timeouts().map((f) => `+${((Date.parse(f.finding.firstSeen) - t0) / 1000).toFixed(1)} s ${f.finding.message}`);
  for (const s of seen) t.comment(`collector.timeout: ${s}`);
  t.ok(seen.length <= 1, `at most one collector.timeout in the whole run (${seen.length})`);
  t.notOk(timeouts().some((f) => f.finding.subject === 'drift'), 'none from drift, whose confirmation used to time out on every suspect');
  const statuses = runner.statuses();
  t.comment(`last statuses: ${statuses.map((s) => `${s.name}=${s.status} ${s.durationMs} ms`).join(', ')}`);
});
