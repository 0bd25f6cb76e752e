// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  diagnosePod,
  evaluateFinalizers,
  evaluateHeldMounts,
  evaluateImmutableFiles,
  evaluatePodDrift,
  evaluateRuntimeHealth,
  evaluateVolumes,
  immutableScanDirs,
  podContainers,
} from '../../../agent/actions/diagnose.js';
import { parseMountinfo } from '../../../collectors/common/mountinfo.js';
import type { PodInfo, RuntimeContainer } from '../../../collectors/types.js';
import { envFor } from '../../helpers/context.js';
import { finding } from '../../helpers/findings.js';
import { holdMountsInNewNamespace, requireLive } from '../../helpers/live.js';
import { eventually } from '../../helpers/processes.js';
import { ensureTestImage, makeImmutableContainer, removeContainer, requireRuntime, runContainer } from '../../helpers/runtime.js';

const pod = (extra: Partial<PodInfo> = {}): PodInfo => ({ uid: '11111111-2222-3333-4444-555555555555', namespace: 'shop', name: 'web-1', finalizers: [], owners: ['ReplicaSet/web'], containers: [], volumes: [], deletionTimestamp: '2026-11-22T09:58:00Z', ...extra });
const container = (id: string, labels: Record<string, string>, extra: Partial<RuntimeContainer> = {}): RuntimeContainer => ({
  id, name: id, manager: 'docker', namespace: 'moby', image: 'x', labels, workload: { containerId: id }, storage: { upperDir: `/var/lib/docker/overlay2/layer-${id}/diff`, containerDir: `/var/lib/docker/containers/${id}` }, ...extra,
});
const SETTINGS = { kubeletRootDir: '/var/lib/kubelet', runtimeRootDirs: ['/var/lib/docker'], statfsTimeoutMs: 3000 };

t.test('the pod\'s containers and sandbox come from the runtime model by its Kubernetes labels', async (t) => {
  const p = pod();
  const cs = [
    container('app', { 'io.kubernetes.pod.uid': p.uid, 'io.kubernetes.pod.name': 'web-1', 'io.kubernetes.pod.namespace': 'shop' }),
    container('sandbox', { 'io.kubernetes.pod.uid': p.uid, 'io.kubernetes.docker.type': 'podsandbox' }),
    container('same-name-other-uid', { 'io.kubernetes.pod.uid': 'another', 'io.kubernetes.pod.name': 'web-1', 'io.kubernetes.pod.namespace': 'shop' }),
    container('unrelated', {}),
  ];
  t.same(podContainers(p, cs).map((c) => c.id), ['app', 'sandbox'], 'a recreated pod of the same name is not this one');
  t.same(immutableScanDirs(p, podContainers(p, cs), '/var/lib/kubelet'), ['/var/lib/docker/overlay2/layer-app', '/var/lib/docker/containers/app', '/var/lib/docker/overlay2/layer-sandbox', '/var/lib/docker/containers/sandbox', `/var/lib/kubelet/pods/${p.uid}`]);
});

t.test('1. finalizers: named, with the controller and the patch', async (t) => {
  const none = evaluateFinalizers(pod());
  t.same([none.checked, none.found], [true, false]);
  const f = evaluateFinalizers(pod({ finalizers: ['example.com/cleanup', 'example.com/backup'] }));
  t.ok(f.found);
  t.match(f.summary, /finalizers example.com\/cleanup, example.com\/backup are still set.*until example.com removes them \(the pod is owned by ReplicaSet\/web\)/);
  t.match(f.remedy, /kubectl -n shop patch pod web-1 --type=merge -p '\{"metadata":\{"finalizers":null\}\}'/);
  t.notOk(evaluateFinalizers(pod({ deletionTimestamp: undefined, finalizers: ['x/y'] })).found, 'a pod not being deleted is not held by its finalizers');
});

t.test('2. immutable files: path, attribute, chattr -i, kubelet retries', async (t) => {
  const app = container('app', {});
  const s = evaluateImmutableFiles([{ path: '/var/lib/docker/overlay2/layer-app/diff/data/locked', bits: 1 }, { path: '/var/lib/docker/overlay2/layer-app/diff/log', bits: 2 }], [app], { dirs: ['/var/lib/docker/overlay2/layer-app'], entries: 42 });
  t.ok(s.found);
  t.match(s.summary, /^\/var\/lib\/docker\/overlay2\/layer-app\/diff\/data\/locked in container app's writable layer is immutable \(i-\), and 1 more file/);
  t.equal(s.remedy, 'chattr -i /var/lib/docker/overlay2/layer-app/diff/data/locked; chattr -a /var/lib/docker/overlay2/layer-app/diff/log  # kubelet retries the removal by itself; without kubelet: docker rm -f app');
  t.same([evaluateImmutableFiles([], [app], undefined).checked, evaluateImmutableFiles([], [app], { dirs: [], entries: 3 }).found], [false, false]);
});

t.test('3. held mounts: another namespace counts, the host and the pod\'s own containers do not', async (t) => {
  const p = pod();
  const line = '900 800 0:50 / /var/lib/docker/overlay2/layer-app/merged rw - overlay overlay rw,upperdir=/var/lib/docker/overlay2/layer-app/diff\n';
  const namespaces = [
    { id: 'mnt:[1]', host: true, pids: [1], mounts: [] },
    { id: 'mnt:[2]', host: false, pids: [4242], mounts: parseMountinfo(line) },
    { id: 'mnt:[3]', host: false, pids: [77], mounts: parseMountinfo(line) },
  ];
  const holding = [
    { namespace: 'mnt:[2]', host: false, processes: 1, mounts: [line.trim()], holders: [{ pid: 4242, comm: 'sleep', cmdline: 'sleep 600' }] },
    { namespace: 'mnt:[3]', host: false, processes: 1, mounts: [line.trim()], holders: [{ pid: 77, comm: 'app', cmdline: 'app', containerId: 'app' }] },
  ];
  const own = new Set(['app']);
  const s = evaluateHeldMounts(holding, namespaces, ['layer-app'], p, own);
  t.ok(s.found);
  t.match(s.summary, /its mount \/var\/lib\/docker\/overlay2\/layer-app\/merged is still held in mount namespace mnt:\[2\] by process 4242 \(sleep\)/);
  t.match(s.remedy, /^ps -f 4242; nsenter -t 4242 -m umount \/var\/lib\/docker\/overlay2\/layer-app\/merged/);
  t.notOk(evaluateHeldMounts([holding[1]!], namespaces, ['layer-app'], p, own).found, 'the pod\'s own container holding its rootfs is not a cause');
});

t.test('4. drift: the runner\'s confirmed runtime.drift findings about its containers', async (t) => {
  const p = pod();
  const d = { ...finding('n1', 'runtime.drift', 'app', 'critical'), message: 'docker says container app is running, but containerd\'s task is STOPPED.', remedy: 'docker inspect app; drain' };
  const s = evaluatePodDrift([d, finding('n1', 'runtime.drift', 'other', 'critical')], p, new Set(['app']), true);
  t.ok(s.found);
  t.equal(s.summary, "docker says container app is running, but containerd's task is STOPPED");
  t.equal(s.remedy, 'docker inspect app; drain');
  t.notOk(evaluatePodDrift([finding('n1', 'runtime.drift', 'other', 'critical')], p, new Set(['app']), true).found, 'another container\'s drift is not this pod\'s');
  t.notOk(evaluatePodDrift([], p, new Set(), false).checked, 'not checked when drift does not run');
});

t.test('5. runtime not answering, filesystems full or read-only', async (t) => {
  const ok = { name: 'docker' as const, socket: '/var/run/docker.sock', status: 'ok' as const };
  const stats = (avail: number) => ({ path: '/var/lib/docker', ok: true as const, stats: { blockSize: 4096, blocks: 1000, blocksFree: avail, blocksAvailable: avail, inodes: 100, inodesFree: 50 } });
  t.notOk(evaluateRuntimeHealth([ok], [{ path: '/var/lib/docker', statfs: stats(500), readonly: false }]).found);
  const hung = evaluateRuntimeHealth([{ ...ok, status: 'unresponsive' }], []);
  t.ok(hung.found);
  t.match(hung.summary, /docker does not answer on \/var\/run\/docker.sock/);
  t.match(evaluateRuntimeHealth([ok], [{ path: '/var/lib/docker', statfs: stats(3), readonly: false }]).summary, /is full \(0.3% space/);
  t.match(evaluateRuntimeHealth([ok], [{ path: '/var/lib/kubelet', statfs: stats(500), readonly: true, mountPoint: '/var' }]).summary, /the filesystem at \/var holding \/var\/lib\/kubelet is read-only/);
});

t.test('6. volumes kubelet has not unmounted', async (t) => {
  const p = pod();
  const mounts = parseMountinfo(`500 1 0:60 / /var/lib/kubelet/pods/${p.uid}/volumes/kubernetes.io~empty-dir/cache rw - tmpfs tmpfs rw\n`);
  const s = evaluateVolumes(mounts, p, '/var/lib/kubelet', false);
  t.ok(s.found);
  t.match(s.remedy, new RegExp(`^umount '/var/lib/kubelet/pods/${p.uid}/volumes/kubernetes.io~empty-dir/cache'`));
  t.notOk(evaluateVolumes(mounts, p, '/var/lib/kubelet', true).found, 'mounted while its containers run is normal');
  t.notOk(evaluateVolumes([], p, '/var/lib/kubelet', false).found);
});

const LABELS = (p: PodInfo, container: string) => ['--label', `io.kubernetes.pod.uid=${p.uid}`, '--label', `io.kubernetes.pod.name=${p.name}`, '--label', `io.kubernetes.pod.namespace=${p.namespace}`, '--label', `io.kubernetes.container.name=${container}`];

t.test('live: a volume of the pod held by a process in another mount namespace after the host unmounted it', async (t) => {
  if (!requireLive(t, { root: true, commands: ['unshare', 'mkfs.ext4', 'losetup'] })) return;
  // Since Linux 3.18 a container's overlay mount held elsewhere is detached when docker removes its
  // directory; a pod volume on a block device is what stays busy ("device or resource busy" on unmap).
  const p = pod({ uid: 'aaaaaaaa-0000-0000-0000-000000000001', name: 'held-1' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-kubelet-'));
  const kubelet = path.join(dir, 'kubelet');
  const vol = `${kubelet}/pods/${p.uid}/volumes/kubernetes.io~csi/pv-1/mount`;
  mkdirSync(vol, { recursive: true });
  execFileSync('truncate', ['-s', '16M', path.join(dir, 'img')]);
  execFileSync('mkfs.ext4', ['-q', '-F', path.join(dir, 'img')]);
  const dev = execFileSync('losetup', ['--find', '--show', path.join(dir, 'img')], { encoding: 'utf8' }).trim();
  execFileSync('mount', [dev, vol]);
  const holder = await holdMountsInNewNamespace().catch((err: unknown) => {
    spawnSync('umount', ['-l', vol]);
    spawnSync('losetup', ['-d', dev]);
    throw err;
  });
  t.teardown(async () => {
    await holder.stop();
    spawnSync('umount', ['-l', vol]);
    spawnSync('losetup', ['-d', dev]);
    rmSync(dir, { recursive: true, force: true });
  });
  t.equal(spawnSync('umount', [vol]).status, 0, 'kubelet (here: the test) unmounts it on the host');
  const env = envFor('/');
  const settings = { ...SETTINGS, kubeletRootDir: kubelet };
  const d = await diagnosePod(p, [], env, settings);
  const held = d.steps.find((s) => s.cause === 'mount-held')!;
  t.ok(held.found, 'found');
  t.match(held.summary, new RegExp(`${vol.replace(/[/.~]/g, '\\$&')}'? is still held in mount namespace mnt:\\[\\d+\\] by process ${holder.pid} \\(sleep\\)`));
  t.match(held.remedy, new RegExp(`^ps -f ${holder.pid}; nsenter -t ${holder.pid} -m umount '?${vol.replace(/[/.~]/g, '\\$&')}`));
  t.same(d.steps.map((s) => s.cause), ['finalizers', 'immutable', 'mount-held', 'drift', 'runtime', 'volumes'], 'the runbooks\' order');
  t.notOk(d.steps.find((s) => s.cause === 'volumes')!.found, 'the host has it unmounted: not a kubelet volume left behind');
  await holder.stop();
  const stillHeld = async () => (await diagnosePod(p, [], envFor('/'), settings)).steps.find((s) => s.cause === 'mount-held')!.found;
  t.ok(await eventually(async () => !(await stillHeld()), 10_000), 'gone when the holder exits');
  (env.runtime as { close?(): void }).close?.();
});

t.test('live: drift of the pod\'s container, as the runner confirmed it, is named with its remedy', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const p = pod({ uid: 'aaaaaaaa-0000-0000-0000-000000000002', name: 'drift-1' });
  const id = runContainer('nw-pod-drift', ['sleep', '600'], LABELS(p, 'app'));
  t.teardown(() => removeContainer('nw-pod-drift'));
  const confirmed = { ...finding('test-node', 'runtime.drift', id, 'critical'), workload: { containerId: id, podUid: p.uid }, message: `docker says container nw-pod-drift (${id.slice(0, 12)}) is running with pid 1, but containerd's task is STOPPED and the process is gone: dockerd and containerd are out of sync.`, remedy: 'docker inspect x; kubectl drain' };
  const env = envFor('/');
  const d = await diagnosePod(p, [confirmed], env, SETTINGS);
  const drift = d.steps.find((s) => s.cause === 'drift')!;
  t.ok(drift.found);
  t.match(drift.summary, /containerd's task is STOPPED/);
  t.same(d.containers.map((c) => c.id), [id], 'its container, by label');
  (env.runtime as { close?(): void }).close?.();
});

t.test('live: an immutable file in the pod container\'s writable layer', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const p = pod({ uid: 'aaaaaaaa-0000-0000-0000-000000000003', name: 'imm-1' });
  const stuck = await makeImmutableContainer('nw-pod-imm', LABELS(p, 'app'));
  t.teardown(() => stuck.cleanup());
  const { locked } = stuck;
  const env = envFor('/');
  const d = await diagnosePod(p, [], env, SETTINGS);
  const imm = d.steps.find((s) => s.cause === 'immutable')!;
  t.ok(imm.found);
  t.match(imm.remedy, new RegExp(`^chattr -i ${locked.replace(/[/.]/g, '\\$&')}`));
  (env.runtime as { close?(): void }).close?.();
});
