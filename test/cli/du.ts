// @live: real dockerd (containers with Kubernetes labels, images sharing layers) and a kubelet stand-in on a loop filesystem, through `nodewarden du` as a process
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Consumer, Fillers } from '../../collectors/common/fillers.js';
import { prune } from '../../agent/actions/prune.js';
import { createHostAccess } from '../../agent/host/access.js';
import { exec } from '../../agent/host/exec.js';
import { Runtimes } from '../../agent/runtime/model.js';
import type { PruneProgress } from '../../protocol/wire.js';
import { hungFuseMount, makeLoopFs, requireLive } from '../helpers/live.js';
import { duOf, runDu } from '../helpers/du.js';
import { until } from '../helpers/processes.js';
import { DOCKER_SOCK, CONTAINERD_SOCK, TEST_IMAGE, docker, dockerTry, ensureTestImage, inspectField, removeContainer, requireRuntime, runContainer } from '../helpers/runtime.js';

const MiB = 1024 * 1024;
const UID = '3f0c6a52-8d1e-4b7a-9c2f-5e6d7a8b9c01';
const LABELS = (container: string) => ['--label', 'io.kubernetes.pod.namespace=nwdu', '--label', 'io.kubernetes.pod.name=app-1', '--label', `io.kubernetes.container.name=${container}`, '--label', `io.kubernetes.pod.uid=${UID}`];

const near = (a: number, b: number, frac: number) => Math.abs(a - b) <= Math.max(b * frac, 256 * 1024);

t.test('live: du attributes writable layers, logs, emptyDirs and images to their pods, and adds up', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const names = ['nwdu-writer', 'nwdu-logger', 'nwdu-held', 'nwdu-c1', 'nwdu-c2'];
  const images = ['nwdu/held:1', 'nwdu/child:1', 'nwdu/child:2', 'nwdu/small:1'];
  const cleanup = () => {
    for (const n of names) removeContainer(n);
    for (const i of images) dockerTry('rmi', '-f', i);
  };
  cleanup();
  const fs = makeLoopFs(256);
  t.teardown(() => {
    spawnSync('umount', [path.join(fs.mountPoint, 'kubelet/pods', UID, 'volumes/kubernetes.io~empty-dir/mem')]);
    fs.cleanup();
    cleanup();
  });
  // The kubelet stand-in: an emptyDir of 24 MiB, a memory-backed one (tmpfs), kubelet's pod logs.
  const kubelet = path.join(fs.mountPoint, 'kubelet');
  const emptyDir = path.join(kubelet, 'pods', UID, 'volumes/kubernetes.io~empty-dir/cache');
  const memDir = path.join(kubelet, 'pods', UID, 'volumes/kubernetes.io~empty-dir/mem');
  mkdirSync(emptyDir, { recursive: true });
  mkdirSync(memDir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', memDir]);
  execFileSync('dd', ['if=/dev/urandom', `of=${memDir}/x`, 'bs=1M', 'count=4'], { stdio: 'ignore' });
  execFileSync('dd', ['if=/dev/urandom', `of=${emptyDir}/blob`, 'bs=1M', 'count=24'], { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) writeFileSync(path.join(emptyDir, `small-${i}`), 'x'.repeat(100 * i));
  const podLogs = path.join(fs.mountPoint, 'pod-logs');
  const podLogDir = path.join(podLogs, `nwdu_app-1_${UID}`, 'writer');
  mkdirSync(podLogDir, { recursive: true });
  execFileSync('dd', ['if=/dev/urandom', `of=${podLogDir}/0.log`, 'bs=1M', 'count=6'], { stdio: 'ignore' });

  // Images: two that share layers (child:2 is child:1 plus a layer, child:1 is busybox plus one), one
  // held by a stopped container, busybox in use by the running ones.
  runContainer('nwdu-c1', ['dd', 'if=/dev/urandom', 'of=/c1', 'bs=1M', 'count=5']);
  docker('wait', 'nwdu-c1');
  docker('commit', 'nwdu-c1', 'nwdu/child:1');
  dockerTry('rm', '-f', 'nwdu-c2');
  docker('run', '-d', '--network', 'none', '--name', 'nwdu-c2', 'nwdu/child:1', 'dd', 'if=/dev/urandom', 'of=/c2', 'bs=1M', 'count=3');
  docker('wait', 'nwdu-c2');
  docker('commit', 'nwdu-c2', 'nwdu/child:2');
  removeContainer('nwdu-c1');
  removeContainer('nwdu-c2');
  // nwdu/held:1: busybox and a layer of its own, held only by a stopped container.
  runContainer('nwdu-c1', ['dd', 'if=/dev/urandom', 'of=/held', 'bs=1M', 'count=2']);
  docker('wait', 'nwdu-c1');
  docker('commit', 'nwdu-c1', 'nwdu/held:1');
  removeContainer('nwdu-c1');
  docker('create', '--network', 'none', '--name', 'nwdu-held', ...LABELS('held'), 'nwdu/held:1', 'true');
  // nwdu/small:1: a layer of 3,000 files of 6 bytes (as node_modules): 18 KB of files, 12 MB of blocks.
  runContainer('nwdu-c1', ['sh', '-c', 'mkdir /s && cd /s && i=0; while [ $i -lt 3000 ]; do echo hello > f$i; i=$((i+1)); done']);
  docker('wait', 'nwdu-c1');
  docker('commit', 'nwdu-c1', 'nwdu/small:1');
  removeContainer('nwdu-c1');
  const smallLayer = path.dirname(docker('image', 'inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', 'nwdu/small:1').trim());

  // A container writing 120 MiB into its writable layer; one logging ~40 MiB to stdout, rotated at 10 MiB x 3.
  const writer = runContainer('nwdu-writer', ['sh', '-c', 'dd if=/dev/urandom of=/big bs=1M count=120 && touch /done && exec sleep 600'], LABELS('writer'));
  const logger = runContainer('nwdu-logger', ['sh', '-c', 'yes $(printf %0999d 0) | head -c 41943040; touch /done; exec sleep 600'], [...LABELS('logger'), '--log-driver', 'json-file', '--log-opt', 'max-size=10m', '--log-opt', 'max-file=3']);
  await until(() => dockerTry('exec', 'nwdu-writer', 'test', '-e', '/done').code === 0, 120_000, 'the writer wrote 120 MiB');
  await until(() => dockerTry('exec', 'nwdu-logger', 'test', '-e', '/done').code === 0, 120_000, 'the logger logged 40 MiB');
  const writerUpper = inspectField('nwdu-writer', '{{.GraphDriver.Data.UpperDir}}');
  const writerLayer = writerUpper.replace(/\/diff$/, '');
  const loggerDir = path.dirname(inspectField('nwdu-logger', '{{.LogPath}}'));

  const r = await runDu(['--json', '--set', `collectors.disk.eviction.kubeletRootDir=${kubelet}`, '--set', `collectors.pods.podLogsDir=${podLogs}`]);
  t.equal(r.code, 0, `du exits 0: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as Fillers;
  t.notOk(out.partial, 'the walk finished');
  const find = (pred: (c: Consumer) => boolean) => out.consumers.filter(pred);

  const layer = find((c) => c.kind === 'writable-layer' && c.path === writerLayer)[0];
  t.ok(layer, 'the writer has a writable-layer row');
  if (layer) {
    t.match(layer, { pod: 'nwdu/app-1', container: 'writer', image: TEST_IMAGE }, 'with its pod, container and image');
    const ref = duOf(writerLayer);
    t.ok(layer.bytes >= 120 * MiB, `at least the 120 MiB written (${layer.bytes})`);
    t.ok(near(layer.bytes, ref.allocated, 0.02), `within 2 % of du -sx -B1 (${layer.bytes} vs ${ref.allocated})`);
    t.ok(near(layer.bytes, ref.apparent, 0.05), `within 5 % of du -sxb (${layer.bytes} vs ${ref.apparent})`);
  }
  const logs = find((c) => c.kind === 'logs' && c.path === loggerDir)[0];
  t.ok(logs, "the logger's json-file logs have a row");
  if (logs) {
    t.match(logs, { pod: 'nwdu/app-1', container: 'logger' });
    const ref = duOf(loggerDir);
    t.ok(logs.bytes > 19 * MiB && logs.bytes < 32 * MiB, `rotation keeps 20-30 MiB of the 40 (${logs.bytes})`);
    t.ok(near(logs.bytes, ref.apparent, 0.05), `within 5 % of du -sxb (${logs.bytes} vs ${ref.apparent})`);
  }
  const podLog = find((c) => c.kind === 'logs' && c.path === podLogDir)[0];
  t.match(podLog, { pod: 'nwdu/app-1', container: 'writer' }, "kubelet's pod log dir names its pod from the dir's name");
  if (podLog) t.ok(near(podLog.bytes, duOf(podLogDir).apparent, 0.05), 'and measures it');
  const ed = find((c) => c.kind === 'emptydir' && c.path === emptyDir)[0];
  t.ok(ed, 'the emptyDir has a row');
  if (ed) {
    t.match(ed, { pod: 'nwdu/app-1', volume: 'cache' }, 'with its pod (from the containers with that uid) and its volume name');
    t.ok(near(ed.bytes, duOf(emptyDir).allocated, 0.02), `within 2 % of du (${ed.bytes})`);
  }
  t.same(find((c) => c.path === memDir), [], 'the memory-backed emptyDir is not counted on the disk');
  t.ok(out.notes.some((n) => n.includes(memDir)), 'and a note says why');

  const img = (name: string) => find((c) => c.image === name && c.kind.startsWith('image-'));
  t.equal(img(TEST_IMAGE)[0]?.kind, 'image-in-use', 'busybox is in use by the running containers');
  t.equal(img('nwdu/held:1')[0]?.kind, 'image-held', 'the stopped container holds its image');
  const small = img('nwdu/small:1')[0];
  const smallRef = duOf(smallLayer);
  t.ok(smallRef.allocated > 8 * smallRef.apparent, `the small-file layer allocates far more than its files hold (${smallRef.allocated} vs ${smallRef.apparent})`);
  t.ok(small && near(small.bytes, smallRef.allocated, 0.03), `an image layer counts its allocated blocks, within 3 % of du -sx -B1 of its dir, not docker's apparent size (${small?.bytes} vs ${smallRef.allocated})`);
  const children = [...img('nwdu/child:1'), ...img('nwdu/child:2')];
  t.same(children.map((c) => c.kind), ['image-reclaimable', 'image-reclaimable'], 'the unused images are reclaimable');
  const childBytes = children.reduce((n, c) => n + c.bytes, 0);
  t.ok(childBytes >= 8 * MiB && childBytes < 8.5 * MiB, `their layers of 5 and 3 MiB counted once, not busybox's (${childBytes})`);
  const dockerSizes = ['nwdu/child:1', 'nwdu/child:2'].map((i) => Number(docker('image', 'inspect', '-f', '{{.Size}}', i))).reduce((a, b) => a + b, 0);
  t.ok(dockerSizes > childBytes + 5 * MiB, `docker's Size counts the shared layers in both (${dockerSizes})`);

  // prune --dry-run (until 0s) says the same for them, from the same function.
  const host = createHostAccess({ root: '/', exec });
  const rt = new Runtimes(host, { dockerSocket: DOCKER_SOCK, containerdSocket: CONTAINERD_SOCK, containerdNamespaces: [], timeout: 10_000 });
  t.teardown(() => rt.close());
  const seen: PruneProgress[] = [];
  await prune(rt, { untilMs: 0, dryRun: true, sandboxImages: ['pause'], containerdNamespaces: [], host }, (p) => seen.push(p));
  const dry = seen.filter((p) => p.state === 'would-remove' && (p.image === 'nwdu/child:1' || p.image === 'nwdu/child:2'));
  t.equal(dry.length, 2, 'the dry run lists both');
  t.equal(dry.reduce((n, p) => n + p.size, 0), childBytes, "the dry run's sizes add up to du's reclaimable bytes for them");
  t.equal(seen.find((p) => p.state === 'would-remove' && p.image === 'nwdu/small:1')?.size, small?.bytes, 'and for the small-file image, its allocated bytes too');

  for (const f of out.filesystems) {
    t.ok(Math.abs(f.unattributed) <= f.margin, `${f.mountPoint} (${f.roles.join(', ')}): the table adds up to used within the margin (unattributed ${f.unattributed}, margin ${f.margin})`);
  }
  const nodefs = out.filesystems.find((f) => f.mountPoint === fs.mountPoint);
  t.same(nodefs?.roles, ['nodefs'], "the stand-in's loop filesystem is nodefs");
  if (nodefs) t.ok(Math.abs(nodefs.unattributed) < 4 * MiB, `on the quiet loop filesystem it adds up to 4 MiB (${nodefs.unattributed})`);
  t.ok(writer && logger, 'containers ran');

  // The human table: a row per kind, sizes human-readable, the sum and the margin line.
  const human = await runDu(['--set', `collectors.disk.eviction.kubeletRootDir=${kubelet}`, '--set', `collectors.pods.podLogsDir=${podLogs}`]);
  t.equal(human.code, 0);
  t.match(human.stdout, /^nodefs: .*\n\s+KIND\s+SIZE\s+POD\s+CONTAINER\s+IMAGE\s+PATH\n\s+emptydir\s+24M\s+nwdu\/app-1\s+-\s+-\s+\S*empty-dir\/cache/m, 'nodefs first, ranked, human sizes');
  t.match(human.stdout, /attributed; unattributed .* \(within the ±\S+ margin/);
});

t.test('live: a hung FUSE mount under the kubelet stand-in never hangs du', async (t) => {
  if (!requireLive(t, { root: true, paths: ['/dev/fuse'] })) return;
  const fs = makeLoopFs(64);
  t.teardown(() => fs.cleanup());
  const kubelet = path.join(fs.mountPoint, 'kubelet');
  const volume = path.join(kubelet, 'pods', UID, 'volumes/kubernetes.io~empty-dir/hung');
  mkdirSync(volume, { recursive: true });
  mkdirSync(path.join(fs.mountPoint, 'docker'));
  execFileSync('dd', ['if=/dev/urandom', `of=${fs.mountPoint}/docker/blob`, 'bs=1M', 'count=3'], { stdio: 'ignore' });
  const hung = hungFuseMount(volume);
  t.teardown(() => hung.cleanup());
  t.ok(spawnSync('stat', ['-f', volume], { timeout: 1000 }).error, 'statfs on it hangs');
  const started = Date.now();
  const r = await runDu(['--json', '--set', `collectors.disk.eviction.kubeletRootDir=${kubelet}`, '--set', `collectors.disk.eviction.runtimeRootDirs=[${path.join(fs.mountPoint, 'docker')}]`]);
  t.ok(Date.now() - started < 30_000, `du answered in ${Date.now() - started} ms`);
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Fillers;
  t.ok(out.notes.some((n) => n.includes(volume) && n.includes('statfs')) || out.notes.some((n) => n.includes(volume)), `a note names the hung mount: ${out.notes.join(' | ')}`);
  t.same(out.consumers.filter((c) => c.path.startsWith(volume)), [], 'nothing under it is counted');
  t.ok(out.consumers.some((c) => c.path === path.join(fs.mountPoint, 'docker') && c.bytes >= 3 * 1024 * 1024), 'the rest of the filesystem is measured');
});
