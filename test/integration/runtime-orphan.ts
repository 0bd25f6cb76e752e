// @live quiet: uses the real machine through test/helpers/live.ts or runtime.ts; it asserts a calm node (no false finding under churn, load and timing), so it runs after the unit files
// Leaked runc init (issue 17.6), reproduced for real: `runc create` of a container whose bundle lives on a
// loop filesystem leaves a real `runc init` (waiting for a start that never comes) with parent 1, in its
// own cgroup, holding the container's mounts and pinning the loop device; no runtime knows it (it is in
// a runc root of its own). drift names it after confirmation, the printed remedy ends it; under churn on
// docker and in k8s.io no new orphan is ever reported.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { drift } from '../../collectors/drift.js';
import { startChurn } from '../../bench/churn.js';
import { contextFor, envFor } from '../helpers/context.js';
import { copyToContainerd, DOCKER, dockerTry, ensureTestImage, requireRuntime, TEST_IMAGE } from '../helpers/runtime.js';
import { makeLoopFs, requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

const SETS = ['collectors.drift.orphanMinAge=1s'];

/** Processes in another mount namespace than ours whose mounts rest on `device`: who pins it. */
function pinnersOf(device: string): number[] {
  const own = readlinkSync('/proc/self/ns/mnt');
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/ns/mnt`) === own) continue;
      if (readFileSync(`/proc/${name}/mountinfo`, 'utf8').includes(` ${device} `)) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
const orphansOf = async (env: ReturnType<typeof envFor>) => {
  const r = await drift.collect(contextFor(drift, '/', { env, sets: SETS }));
  return r.kind === 'ok' ? r.observations.filter((o) => o.check === 'runtime.orphan') : [];
};

t.test('live: a leaked runc init on a loop filesystem is named with its mounts and the device it pins; the printed remedy ends it', async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { root: true, commands: ['runc', 'losetup', 'mkfs.ext4', 'tar'] })) return;
  ensureTestImage();
  const id = `nw-orphan-${process.pid}`;
  const runcRoot = `/run/nw-orphan-runc-${process.pid}`;
  const fs = makeLoopFs(64);
  let initPid = 0;
  t.teardown(() => {
    if (initPid > 0) spawnSync('kill', ['-9', String(initPid)]);
    spawnSync('runc', ['--root', runcRoot, 'delete', '-f', id]);
    spawnSync('rm', ['-rf', runcRoot]);
    dockerTry('rm', '-f', `${id}-src`);
    fs.cleanup();
  });
  // The bundle: the test image's filesystem on the loop device, runc's default spec with no terminal.
  const rootfs = path.join(fs.mountPoint, 'rootfs');
  mkdirSync(rootfs);
  execFileSync(DOCKER, ['create', '--name', `${id}-src`, TEST_IMAGE, 'true'], { stdio: 'ignore' });
  const tar = execFileSync(DOCKER, ['export', `${id}-src`], { maxBuffer: 256 * 1024 * 1024 });
  execFileSync('tar', ['-x', '-C', rootfs], { input: tar });
  execFileSync('runc', ['spec'], { cwd: fs.mountPoint });
  const spec = JSON.parse(readFileSync(path.join(fs.mountPoint, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['sleep', '600'];
  spec.linux.cgroupsPath = `/nw-orphans/${id}`;
  writeFileSync(path.join(fs.mountPoint, 'config.json'), JSON.stringify(spec));
  execFileSync('runc', ['--root', runcRoot, 'create', '--bundle', fs.mountPoint, id], { stdio: 'ignore', timeout: 30_000 });
  initPid = JSON.parse(execFileSync('runc', ['--root', runcRoot, 'state', id], { encoding: 'utf8' })).pid;
  const stat = readFileSync(`/proc/${initPid}/stat`, 'utf8');
  t.match(stat, /\(runc:\[2:INIT\]\) S 1 /, `a real runc init (pid ${initPid}) with parent 1`);

  // Finding, not quiet under churn: a 1 s settle window (a suspect's look waits 4 s, not 8).
  const env = envFor('/', [...SETS, 'runtime.settle=1s']);
  let found: Awaited<ReturnType<typeof orphansOf>>[number] | undefined;
  await eventually(async () => {
    found = (await orphansOf(env)).find((o) => o.subject === id);
    return found !== undefined;
  }, 60_000);
  t.ok(found, 'runtime.orphan fires for it after confirmation');
  t.match(found?.message, new RegExp(`runc init \\(pid ${initPid}, parent 1,.*belongs to no runtime.*pin ${fs.device}`), 'names the process, its parent and the loop device it pins');
  t.match(found?.evidence, { devices: [{ device: fs.device }] });
  t.ok(Number(found?.evidence['mounts']) > 3, `with the container's mounts (${String(found?.evidence['mounts'])})`);

  t.same(pinnersOf(fs.device), [initPid], `only the runc init pins ${fs.device} from another mount namespace`);
  // The printed remedy, as pasted.
  execFileSync('sh', ['-c', found!.remedy], { stdio: 'ignore', timeout: 30_000 });
  t.ok(await eventually(() => spawnSync('kill', ['-0', String(initPid)]).status !== 0, 10_000), 'the runc init is gone after the remedy');
  t.same(pinnersOf(fs.device), [], `nothing pins ${fs.device} from another mount namespace any more`);
  t.notOk((await orphansOf(env)).some((o) => o.subject === id), 'and the finding resolves');
  initPid = 0;
});

t.test('live: under churn on docker and in k8s.io, no runc init or shim of a container being created is called an orphan', async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { commands: ['ctr'] })) return;
  ensureTestImage();
  const criImage = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=orphan-churn']);
  const env = envFor('/', SETS);
  // Orphans leaked on this shared machine before the test are other tests' doing, not churn's.
  const before = new Set((await orphansOf(env)).map((o) => o.subject));
  const churn = startChurn({ docker: DOCKER, image: TEST_IMAGE, criImage, prefix: 'nw-orph' });
  t.teardown(() => churn.stop());
  const t0 = Date.now();
  const end = t0 + 20_000;
  let runs = 0;
  // Each look with a suspect waits out its confirmation (8 s): at least three looks, and 20 s of churn.
  while (Date.now() < end || runs < 3) {
    for (const o of await orphansOf(env)) if (!before.has(o.subject)) t.fail(`orphan under churn: ${o.message}`);
    runs += 1;
    t.comment(`look ${runs} done at +${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  t.ok(runs >= 3, `drift looked ${runs} times during the churn with a 1 s minimum age; ${before.size} orphans were there before`);
});
