// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { evaluateImmutable, immutable, ownerOf, type ImmutableData } from '../../collectors/immutable.js';
import type { RuntimeContainer, RuntimeSnapshot, RuntimeState } from '../../collectors/types.js';
import { contextFor, envFor, settingsFor } from '../helpers/context.js';
import { dockerTry, ensureTestImage, makeImmutableContainer, requireRuntime } from '../helpers/runtime.js';
import { requireLive } from '../helpers/live.js';

const config = settingsFor(immutable) as never;
const L = '/var/lib/docker/overlay2';
const container = (over: Partial<RuntimeContainer> = {}): RuntimeContainer => ({
  id: 'c'.repeat(64), name: 'web', manager: 'docker', namespace: 'moby', image: 'img', labels: {},
  workload: { containerId: 'c'.repeat(64), containerName: 'web', pod: 'web-1', namespace: 'shop' },
  storage: { upperDir: `${L}/aaa/diff`, mergedDir: `${L}/aaa/merged`, lowerDirs: [`${L}/bbb/diff`], containerDir: `/var/lib/docker/containers/${'c'.repeat(64)}` },
  docker: { status: 'running', running: true, pid: 5, dead: false, removing: false, error: '', exitCode: 0 },
  ...over,
});

t.test('files map to the container whose writable layer, image layer or directory holds them', async (t) => {
  t.equal(ownerOf(`${L}/aaa/diff/etc/x`, [container()])?.where, 'writable');
  t.equal(ownerOf(`${L}/aaa/work/x`, [container()])?.where, 'writable', 'the whole layer dir belongs to it');
  t.equal(ownerOf(`${L}/bbb/diff/bin/sh`, [container()])?.where, 'image');
  t.equal(ownerOf(`/var/lib/docker/containers/${'c'.repeat(64)}/hostname`, [container()])?.where, 'container-dir');
  t.equal(ownerOf(`${L}/zzz/diff/x`, [container()]), undefined);
});

t.test('severity: critical when it blocks a removal; capped per container', async (t) => {
  const dead = container({ docker: { status: 'dead', running: false, pid: 0, dead: true, removing: false, error: '', exitCode: 0 } });
  const [f] = evaluateImmutable([{ path: `${L}/aaa/diff/data/f`, bits: 1 }], [dead], config);
  t.equal(f?.severity, 'critical');
  t.match(f?.message, /blocks the removal of container web .*pod shop\/web-1.*dead/);
  t.match(f?.remedy, /^chattr -i \/var\/lib\/docker\/overlay2\/aaa\/diff\/data\/f {2}# then retry the removal: docker rm -f cccccccccccc/);
  t.same(f?.workload, dead.workload);
  const [w] = evaluateImmutable([{ path: `${L}/aaa/diff/data/f`, bits: 2 }], [container()], config);
  t.equal(w?.severity, 'warning');
  t.match(w?.remedy, /^chattr -a /);
  const many = Array.from({ length: 15 }, (_, i) => ({ path: `${L}/aaa/diff/f${String(i).padStart(2, '0')}`, bits: 1 }));
  const capped = evaluateImmutable(many, [container()], config);
  t.equal(capped.length, 10, 'maxPerContainer');
  t.equal(capped[0]?.evidence['flaggedInSameOwner'], 15);
  const pod = evaluateImmutable([{ path: '/var/lib/kubelet/pods/3f1c5a2e-7b4d-4c8e-9a1f-2b3c4d5e6f70/volumes/x/f', bits: 1 }], [], config);
  t.same(pod[0]?.workload, { podUid: '3f1c5a2e-7b4d-4c8e-9a1f-2b3c4d5e6f70' });
});

t.test('live: a background sweep under a budget finds an immutable file over several cycles, and chattr -i resolves it', async (t) => {
  if (!requireLive(t, { root: true, commands: ['chattr'] })) return;
  const env = envFor('/');
  if (!env.attrs) return void t.fail('the native attrs module is not built');
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-sweep-'));
  const locked = path.join(root, 'unit-9', 'deep', 'locked');
  t.teardown(() => {
    spawnSync('chattr', ['-i', locked]);
    rmSync(root, { recursive: true, force: true });
  });
  for (let u = 0; u < 10; u++) {
    mkdirSync(path.join(root, `unit-${u}`, 'deep'), { recursive: true });
    for (let f = 0; f < 50; f++) writeFileSync(path.join(root, `unit-${u}`, 'deep', `f${f}`), '');
  }
  writeFileSync(locked, 'x');
  execFileSync('chattr', ['+i', locked]);
  // 10 units of ~52 entries at 200 files/s: about 0.26 s per unit; a 300 ms slice covers one or two.
  const sets = [`collectors.immutable.roots=[${root}]`, 'collectors.immutable.filesPerSecond=200', 'collectors.immutable.sweepSlice=300ms'];
  let previous: ImmutableData | undefined;
  let cycles = 0;
  let hit;
  while (cycles < 15 && !hit) {
    // Back to back, as if the interval were no longer than the pause a unit cut off by the slice owes.
    const owed = (previous?.restUntil ?? 0) - Date.now();
    if (owed > 0) await new Promise((r) => setTimeout(r, owed));
    const r = await immutable.collect(contextFor(immutable, '/', { env, sets, previous }));
    if (r.kind !== 'ok') return void t.fail(`collect: ${r.kind}`);
    previous = r.data;
    cycles++;
    if (cycles === 1) t.ok(r.data.pending.length >= 7, `the first cycle stops at its slice (${10 - r.data.pending.length} of 10 units swept)`);
    hit = r.observations.find((o) => o.subject === locked);
  }
  t.ok(hit, `found after ${cycles} cycles`);
  t.equal(hit?.evidence['attributes'], 'i-');
  execFileSync('chattr', ['-i', locked]);
  const after = await immutable.collect(contextFor(immutable, '/', { env, sets, previous }));
  t.notOk(after.kind === 'ok' && after.observations.some((o) => o.subject === locked), 'resolved after chattr -i');
});

t.test('live: a unit larger than a slice\'s budget ends the run at the slice (no collector.timeout for a layer of 50,000 files); the pause it still owes is carried, and later runs sweep nothing until it is paid', async (t) => {
  if (!requireLive(t, { root: true })) return;
  const env = envFor('/');
  if (!env.attrs) return void t.fail('the native attrs module is not built');
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-bigunit-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  // One unit of 2,000 files at 200 files/s owes 10 s; the slice is 500 ms (as a 50,000-file layer at
  // the default 1,000 a second owes 50 s, against a 10 s slice and a 45 s timeout).
  mkdirSync(path.join(root, 'big'));
  for (let f = 0; f < 2000; f++) writeFileSync(path.join(root, 'big', `f${f}`), '');
  const sets = [`collectors.immutable.roots=[${root}]`, 'collectors.immutable.filesPerSecond=200', 'collectors.immutable.sweepSlice=500ms'];
  const started = Date.now();
  const first = await immutable.collect(contextFor(immutable, '/', { env, sets }));
  const took = Date.now() - started;
  if (first.kind !== 'ok') return void t.fail(`collect: ${first.kind}`);
  t.ok(took < 5000, `the run ends with its slice, not after the 10 s the unit owes (${took} ms)`);
  t.equal(first.data.lastCycle.units, 1, 'it swept the big unit');
  t.ok((first.data.restUntil ?? 0) > Date.now() + 3000, `the rest of the pause is carried (${((first.data.restUntil ?? 0) - Date.now()) / 1000} s)`);
  const second = await immutable.collect(contextFor(immutable, '/', { env, sets, previous: first.data }));
  if (second.kind !== 'ok') return void t.fail(`collect: ${second.kind}`);
  t.equal(second.data.lastCycle.units, 0, 'the next run sweeps nothing while the pause is owed');
  t.equal(second.data.round, first.data.round, 'and starts no new round');
  t.equal(second.data.restUntil, first.data.restUntil, 'still owing');
  const stepped = await immutable.collect(contextFor(immutable, '/', { env, sets, previous: { ...second.data, restUntil: Date.now() + 5 * 3_600_000 } }));
  t.equal(stepped.kind === 'ok' ? stepped.data.lastCycle.units : -1, 1, 'a debt hours ahead is a clock stepped back: the sweep goes on');
  const paid = { ...second.data, restUntil: Date.now() - 1 };
  const third = await immutable.collect(contextFor(immutable, '/', { env, sets, previous: paid }));
  if (third.kind !== 'ok') return void t.fail(`collect: ${third.kind}`);
  t.equal(third.data.lastCycle.units, 1, 'once paid, the sweep goes on (a new round, the big unit again)');
  t.equal(third.data.round, first.data.round + 1);
});

t.test('live: an immutable file in a container\'s writable layer makes docker rm -f fail; the finding names it, and clears after chattr -i', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const stuck = await makeImmutableContainer('nw-immutable', ['--label', 'io.kubernetes.pod.name=stuck-1', '--label', 'io.kubernetes.pod.namespace=shop']);
  t.teardown(() => stuck.cleanup());
  const { id, locked } = stuck;
  const rm = stuck.remove();
  t.not(rm.code, 0, 'docker rm -f fails');
  t.match(rm.stderr, /operation not permitted/);
  const env = envFor('/');
  const sets = ['collectors.immutable.roots=[]'];
  const r = await immutable.collect(contextFor(immutable, '/', { env, sets }));
  t.equal(r.kind, 'ok');
  if (r.kind !== 'ok') return;
  const f = r.observations.find((o) => o.subject === locked);
  t.equal(f?.severity, 'critical', 'scanned at once because the container is being removed');
  t.equal(f?.workload?.containerId, id);
  t.equal(f?.workload?.pod, 'stuck-1');
  t.match(f?.remedy, new RegExp(`^chattr -i ${locked.replace(/[/.]/g, '\\$&')}`));
  execFileSync('chattr', ['-i', locked]);
  t.equal(dockerTry('rm', '-f', 'nw-immutable').code, 0, 'removal succeeds after chattr -i');
  const after = await immutable.collect(contextFor(immutable, '/', { env: envFor('/'), sets, previous: r.data }));
  t.notOk(after.kind === 'ok' && after.observations.some((o) => o.subject === locked), 'resolved');
});

t.test('live: in the agent a stuck removal is confirmed across two runs, the confirming run asking the runtimes once', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const stuck = await makeImmutableContainer('nw-immutable-across');
  t.teardown(() => stuck.cleanup());
  t.not(stuck.remove().code, 0, 'docker rm -f fails');
  const env = envFor('/');
  const rt = env.runtime as import('../../agent/runtime/model.js').Runtimes;
  let lists = 0;
  const realList = rt.docker.containers.bind(rt.docker);
  rt.docker.containers = () => {
    lists += 1;
    return realList();
  };
  const sets = ['collectors.immutable.roots=[]'];
  const confirmations = new Map();
  let rereadIn: number | undefined;
  const ctx = (previous?: unknown) => ({ ...contextFor(immutable, '/', { env, sets, previous }), confirmations, confirming: previous !== undefined, rerunIn: (ms: number) => void (rereadIn = ms) });
  const first = await immutable.collect(ctx());
  t.equal(first.kind, 'ok');
  if (first.kind !== 'ok') return;
  t.notOk(first.observations.some((o) => o.subject === stuck.locked), 'seen once: a suspect, not yet a finding');
  t.ok(rereadIn !== undefined && rereadIn > 0, `a confirming run is asked for (in ${rereadIn} ms)`);
  await new Promise((r) => setTimeout(r, rereadIn! + 50));
  rt.invalidate('another-container'); // a busy node: some other container's event since
  const before = lists;
  const second = await immutable.collect(ctx(first.data));
  t.equal(second.kind, 'ok');
  if (second.kind !== 'ok') return;
  t.equal(second.observations.find((o) => o.subject === stuck.locked)?.severity, 'critical', 'confirmed by the second run');
  t.equal(lists - before, 1, "the confirming run's urgent scan and its confirming read share one fresh view");
});

t.test('image layers name the image and the removal that fails; a layer nobody uses is reported as orphaned', async (t) => {
  const layer = `${L}/${'d'.repeat(64)}`;
  const orphanLayer = `${L}/${'e'.repeat(64)}`;
  const used = evaluateImmutable([{ path: `${L}/bbb/diff/bin/sh`, bits: 1 }], [container({ image: 'shop/web:1.2' })], config);
  t.match(used[0]?.message, /in a layer of image shop\/web:1\.2, used by container web .*docker rmi shop\/web:1\.2\) will fail/);
  t.notMatch(used[0]?.message, /Terminating/, 'an image layer does not keep a pod Terminating');
  t.match(used[0]?.remedy, /then the image can go: docker rmi shop\/web:1\.2/);
  const cri = evaluateImmutable([{ path: `${L}/bbb/diff/bin/sh`, bits: 1 }], [container({ manager: 'containerd', image: 'registry.k8s.io/app:3' })], config);
  t.match(cri[0]?.message, /crictl rmi registry\.k8s\.io\/app:3/);
  const images = new Map([[layer, 'cache/builder:7']]);
  const unusedImage = evaluateImmutable([{ path: `${layer}/diff/etc/lock`, bits: 1 }], [], config, images);
  t.match(unusedImage[0]?.message, /in a layer of image cache\/builder:7, which no container uses: removing the image \(docker rmi cache\/builder:7\) will fail/);
  const orphan = evaluateImmutable([{ path: `${orphanLayer}/diff/etc/lock`, bits: 1 }], [], config, images);
  t.match(orphan[0]?.message, /which no image and no container uses: a layer orphaned by a failed image removal/);
  t.equal(orphan[0]?.evidence['orphanedLayer'], orphanLayer);
  t.match(orphan[0]?.remedy, /^chattr -i .*rm -rf/);
  const unknown = evaluateImmutable([{ path: `${orphanLayer}/diff/etc/lock`, bits: 1 }], [], config, undefined);
  t.notMatch(unknown[0]?.message, /orphaned/, 'not called orphaned when docker could not say which images use which layers');
});

t.test('live: after a failed image removal the layer left on disk is reported as orphaned', async (t) => {
  if (!requireRuntime(t)) return;
  const { makeLabelledImage, docker: dockerCli } = await import('../helpers/runtime.js');
  const tag = 'nodewarden-test/orphan:1';
  dockerTry('rmi', '-f', tag);
  makeLabelledImage(tag, 'nodewarden-test=orphan');
  const layerDiff = dockerCli('image', 'inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', tag);
  const locked = path.join(layerDiff, 'id.txt');
  execFileSync('chattr', ['+i', locked]);
  t.teardown(() => {
    spawnSync('chattr', ['-i', locked]);
    dockerTry('rmi', '-f', tag);
    spawnSync('rm', ['-rf', path.dirname(layerDiff)]);
  });
  const rmi = dockerTry('rmi', tag);
  t.comment(`docker rmi: exit ${rmi.code}; ${rmi.stderr.slice(0, 200)}`);
  const stillThere = dockerTry('image', 'inspect', tag).code === 0;
  const env = envFor('/');
  const r = await immutable.collect(contextFor(immutable, '/', { env, sets: ['collectors.immutable.complete=true'] }));
  t.equal(r.kind, 'ok');
  const f = r.kind === 'ok' ? r.observations.find((o) => o.subject === locked) : undefined;
  t.ok(f, 'the immutable file is found');
  if (stillThere) t.match(f?.message, /in a layer of image nodewarden-test\/orphan:1/, 'the image is still listed: named');
  else t.match(f?.message, /orphaned by a failed image removal/, 'the image is gone, its layer stayed: orphaned');
});

t.test('while docker does not answer, a file its last known containers own is not judged on their stale state: the suspect is carried as it was, what fired keeps firing, the data says how many', async (t) => {
  if (!requireLive(t, { root: true, commands: ['chattr'] })) return;
  const env = envFor('/');
  if (!env.attrs) return void t.fail('the native attrs module is not built');
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-stale-'));
  const locked = path.join(root, 'layer', 'diff', 'data', 'f');
  mkdirSync(path.dirname(locked), { recursive: true });
  writeFileSync(locked, 'x');
  execFileSync('chattr', ['+i', locked]);
  t.teardown(() => {
    spawnSync('chattr', ['-i', locked]);
    rmSync(root, { recursive: true, force: true });
  });
  const storage = { upperDir: path.join(root, 'layer', 'diff'), mergedDir: path.join(root, 'layer', 'merged') };
  const dead = container({ storage, docker: { status: 'dead', running: false, pid: 0, dead: true, removing: false, error: '', exitCode: 0 } });
  const running = container({ storage }); // what docker last said, before it froze and the container died
  const ok: RuntimeState[] = [{ name: 'docker', socket: '/var/run/docker.sock', status: 'ok' }, { name: 'containerd', socket: '/run/containerd/containerd.sock', status: 'ok' }];
  const frozen: RuntimeState[] = [{ ...ok[0]!, status: 'unresponsive', error: 'no answer within 5000 ms' }, ok[1]!];
  let view: Omit<RuntimeSnapshot, 'takenAt'> = { runtimes: ok, containers: [dead] };
  const runtime = { settleMs: 0, snapshot: async () => ({ ...view, takenAt: Date.now() }), ping: async () => view.runtimes };
  const sets = ['collectors.immutable.roots=[]'];
  const previous: ImmutableData = { pending: [], found: [{ path: locked, bits: 1 }], round: 1, sweptThisRound: 0, lastCycle: { urgentScanned: 0, swept: 0, units: 0 } };
  const store = new Map();
  const run = (active: unknown[] = []) => immutable.collect({ ...contextFor(immutable, '/', { env, sets, previous }), runtime, confirmations: store, active: () => active as never });
  const about = (r: Awaited<ReturnType<typeof run>>) => (r.kind === 'ok' ? r.observations.filter((o) => o.subject === locked) : []);

  // check (no store): two reads of the same stale list agree, and confirmed a finding on it.
  view = { runtimes: frozen, containers: [dead], stale: ['docker'] };
  const check = await immutable.collect({ ...contextFor(immutable, '/', { env, sets, previous }), runtime });
  t.same(check.kind === 'ok' ? check.observations.filter((o) => o.subject === locked) : ['not ok'], [], 'check: not judged on a stale view');
  t.match(check.kind === 'ok' ? check.data.notJudged : '', /^1 flagged file not judged while docker is unresponsive$/);

  // The agent: a suspect on a fresh read; then docker freezes, its last known list still says running.
  view = { runtimes: ok, containers: [dead] };
  t.same(about(await run()), [], 'first sighting: a suspect');
  const carried = [...store.values()];
  t.equal(carried.length, 1);
  view = { runtimes: frozen, containers: [running], stale: ['docker'] };
  const blind = await run();
  t.same(about(blind), [], 'nothing confirmed on the stale view');
  t.same([...store.values()], carried, 'the suspect is carried as it was: neither dismissed nor re-based on the stale state');
  t.match(blind.kind === 'ok' ? blind.data.notJudged : '', /^1 flagged file not judged while docker is unresponsive$/);
  // docker answers again: the same facts as before the freeze confirm it.
  view = { runtimes: ok, containers: [dead] };
  const confirmed = about(await run());
  t.same(confirmed.map((o) => o.severity), ['critical'], 'confirmed once docker answers with the same facts');
  // Firing, then docker freezes again: it keeps firing unchanged, not resolved nor re-judged as a warning.
  view = { runtimes: frozen, containers: [running], stale: ['docker'] };
  const active = confirmed.map((o) => ({ ...o, id: 'x', node: 'test-node', state: 'firing', firstSeen: '', lastSeen: '' }));
  const kept = await run(active);
  t.same(about(kept).map((o) => [o.severity, o.message]), confirmed.map((o) => [o.severity, o.message]), 'what fired keeps firing, unchanged');
  t.equal(store.size, 1, 'and its confirmation is kept for when docker answers');
});
