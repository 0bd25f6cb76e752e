// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
// Remedies work as printed (issue 17.3): each fault reproduced for real, the remedy taken from the
// finding and run as pasted with `sh -c`, and the fault gone afterwards. The ghost task's and the orphan's
// are in test/collectors/drift.ts and test/integration/runtime-orphan.ts. A remedy whose command is
// `systemctl restart X` (no systemd here) is checked with `sh -n` and its runtime part run through the
// test helpers that restart the daemons.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { immutable } from '../../collectors/immutable.js';
import { mounts } from '../../collectors/mounts.js';
import { drift } from '../../collectors/drift.js';
import { contextFor, envFor } from '../helpers/context.js';
import { dockerTry, ensureTestImage, inspectField, makeImmutableContainer, makePersistentDrift, ourDaemonPid, removeContainer, requireRuntime, startRuntime } from '../helpers/runtime.js';
import { heldLoopFs, requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

t.test('live: the immutable-file remedy, pasted, lets the stuck removal through', async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { root: true, commands: ['chattr'] })) return;
  ensureTestImage();
  const stuck = await makeImmutableContainer('nw-remedy-immutable', ['--label', 'io.kubernetes.pod.name=stuck-r', '--label', 'io.kubernetes.pod.namespace=shop']);
  t.teardown(() => stuck.cleanup());
  t.not(stuck.remove().code, 0, 'docker rm -f fails on the immutable file');
  const sets = ['collectors.immutable.roots=[]'];
  const r = await immutable.collect(contextFor(immutable, '/', { env: envFor('/'), sets }));
  const f = r.kind === 'ok' ? r.observations.find((o) => o.subject === stuck.locked) : undefined;
  t.ok(f, 'immutable.file names the file');
  const run = spawnSync('sh', ['-c', f!.remedy], { encoding: 'utf8', timeout: 30_000 });
  t.equal(run.status, 0, `the remedy runs as pasted: ${f!.remedy} ${run.stderr}`);
  t.equal(dockerTry('rm', '-f', 'nw-remedy-immutable').code, 0, 'and the removal succeeds');
});

t.test('live: the held-mount remedy, pasted, releases the mount in the other namespace', async (t) => {
  if (!requireLive(t, { root: true, commands: ['unshare', 'mkfs.ext4', 'losetup', 'nsenter'] })) return;
  const { fs, holder } = await heldLoopFs(t, 32);
  t.equal(spawnSync('umount', [fs.mountPoint]).status, 0, 'the host unmounts it');
  const env = envFor('/');
  const held = async () => {
    const r = await mounts.collect(contextFor(mounts, '/', { env }));
    return r.kind === 'ok' ? r.observations.find((o) => o.check === 'mount.holder' && String(o.evidence['mount']).includes(fs.mountPoint)) : undefined;
  };
  const f = await held();
  t.ok(f, 'mount.holder fires');
  const run = spawnSync('sh', ['-c', f!.remedy], { encoding: 'utf8', timeout: 30_000 });
  t.equal(run.status, 0, `the remedy runs as pasted: ${f!.remedy} ${run.stderr}`);
  const { readFileSync } = await import('node:fs');
  t.notMatch(readFileSync(`/proc/${holder.pid}/mountinfo`, 'utf8'), new RegExp(` ${fs.device} `), 'the holder no longer has the filesystem mounted');
  t.ok(await eventually(async () => (await held()) === undefined, 30_000), 'and the finding resolves');
});

t.test('live: the persistent-drift remedy parses as pasted, and its runtime part (restarting dockerd) ends the drift', async (t) => {
  if (!requireRuntime(t)) return;
  const dockerd = ourDaemonPid('dockerd');
  if ((dockerd === undefined || ourDaemonPid('containerd') === undefined) && !requireLive(t, { paths: ['/nonexistent: the daemons were not started by scripts/start-test-runtime.sh, so this test will not restart them'] })) return;
  ensureTestImage();
  t.teardown(() => {
    removeContainer('nw-remedy-drift');
    startRuntime();
  });
  const { id } = await makePersistentDrift('nw-remedy-drift');
  const look = async () => {
    // Finding, not quiet under churn: a 1 s settle window (a suspect's look waits 4 s, not 8).
    const r = await drift.collect(contextFor(drift, '/', { env: envFor('/', ['runtime.settle=1s']) }));
    return r.kind === 'ok' ? r.observations.find((o) => o.check === 'runtime.drift' && o.subject === id) : undefined;
  };
  const f = await look();
  t.ok(f, 'runtime.drift fires');
  t.equal(spawnSync('sh', ['-n', '-c', f!.remedy]).status, 0, `sh -n accepts: ${f!.remedy}`);
  t.match(f!.remedy, /^systemctl restart docker {2}#/, 'the command is the restart; the drain advice is a comment');
  // systemctl restart docker, as the test helpers do it here.
  process.kill(ourDaemonPid('dockerd')!, 'SIGTERM');
  await eventually(() => ourDaemonPid('dockerd') === undefined, 60_000);
  startRuntime();
  t.not(inspectField('nw-remedy-drift', '{{.State.Running}}'), 'true', 'after the restart docker no longer says running');
  t.ok(await eventually(async () => (await look()) === undefined, 30_000), 'and the drift resolves');
});
