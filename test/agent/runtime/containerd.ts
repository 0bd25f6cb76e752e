// The containerd gRPC client against the real containerd (live), and against sockets that do not answer.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ContainerdClient } from '../../../agent/runtime/containerd.js';
import { requireLive } from '../../helpers/live.js';
import { until } from '../../helpers/processes.js';
import { CONTAINERD_SOCK, copyToContainerd, ctrTry, ensureTestImage, inspectField, removeContainer, requireRuntime, runContainer, TEST_IMAGE } from '../../helpers/runtime.js';

t.test('a socket that does not exist: NW_ERR_RUNTIME naming it; one that never answers: NW_ERR_TIMEOUT', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-ctrd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const absent = new ContainerdClient(path.join(dir, 'absent.sock'), 2000);
  t.teardown(() => absent.close());
  await t.rejects(absent.tasks('moby'), { code: 'NW_ERR_RUNTIME', message: new RegExp(`${dir}/absent.sock`) });
  const held: net.Socket[] = [];
  const mute = net.createServer((s) => void held.push(s));
  await new Promise<void>((r) => mute.listen(path.join(dir, 'mute.sock'), r));
  t.teardown(() => {
    for (const s of held) s.destroy();
    mute.close();
  });
  const silent = new ContainerdClient(path.join(dir, 'mute.sock'), 300);
  t.teardown(() => silent.close());
  await t.rejects(silent.containers('moby'), { code: 'NW_ERR_TIMEOUT', message: /mute\.sock/ });
});

t.test('live: containers and tasks in the moby and k8s.io namespaces, as docker and ctr made them', async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { commands: ['ctr'] })) return;
  ensureTestImage();
  const client = new ContainerdClient(CONTAINERD_SOCK, 10_000);
  t.teardown(() => client.close());

  t.match(await client.version(), /^v?\d+\.\d+/, 'the daemon answers its version');

  // A docker container: containerd's moby namespace holds it under docker's full id, its task RUNNING with the same pid.
  const name = 'nw-test-containerd-client';
  t.teardown(() => removeContainer(name));
  const id = runContainer(name, ['sleep', '300']).trim();
  const pid = Number(inspectField(name, '{{.State.Pid}}'));
  const mobyTasks = await client.tasks('moby');
  t.match(mobyTasks.find((x) => x.containerId === id), { containerId: id, pid, status: 'RUNNING' });
  t.ok((await client.containers('moby')).some((c) => c.id === id), 'the container is listed in moby');
  t.ok((await client.namespaces()).includes('moby'));

  // A CRI-style container through ctr in k8s.io, labelled as kubelet labels them.
  // Its own label: the default one (nodewarden-test=prune) would offer the shared test image to the prune test's label filter.
  const ref = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=containerd-client']);
  const cid = 'nw-test-containerd-client-k8s';
  const cleanup = () => {
    ctrTry('-n', 'k8s.io', 'tasks', 'kill', '-s', 'KILL', cid);
    ctrTry('-n', 'k8s.io', 'tasks', 'rm', '-f', cid);
    ctrTry('-n', 'k8s.io', 'containers', 'rm', cid);
  };
  cleanup();
  t.teardown(cleanup);
  const run = ctrTry('-n', 'k8s.io', 'run', '-d', '--label', 'io.kubernetes.pod.name=web-0', '--label', 'io.kubernetes.pod.namespace=shop', ref, cid, 'sleep', '300');
  t.equal(run.code, 0, 'ctr run');
  t.ok((await client.namespaces()).includes('k8s.io'));
  const c = (await client.containers('k8s.io')).find((x) => x.id === cid);
  t.match(c, { id: cid, image: ref, snapshotKey: cid, labels: { 'io.kubernetes.pod.name': 'web-0', 'io.kubernetes.pod.namespace': 'shop' } });
  t.notOk((await client.containers('moby')).some((x) => x.id === cid), 'namespaces are kept apart');
  const task = (await client.tasks('k8s.io')).find((x) => x.containerId === cid);
  t.match(task, { containerId: cid, status: 'RUNNING' });
  t.ok(task!.pid > 1);
  t.ok((await client.images('k8s.io')).some((i) => i.name === ref && i.labels['nodewarden-test'] === 'containerd-client' && i.target.digest.startsWith('sha256:')), 'the image with its labels and digest');
  const mounts = await client.snapshotMounts('k8s.io', c!.snapshotter, c!.snapshotKey);
  t.ok(mounts.length > 0 && mounts[0]!.options.some((o) => o.startsWith('upperdir=') || o === 'rbind' || o === 'rw'), 'the rootfs snapshot mounts');

  // The process dies: the task says STOPPED with its exit status.
  ctrTry('-n', 'k8s.io', 'tasks', 'kill', '-s', 'KILL', cid);
  await until(async () => (await client.tasks('k8s.io')).find((x) => x.containerId === cid)?.status === 'STOPPED', 15_000, 'the task to stop');
  t.match((await client.tasks('k8s.io')).find((x) => x.containerId === cid), { status: 'STOPPED', exitStatus: 137 });
});
