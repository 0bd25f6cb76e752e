import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { classifyImages, fillFilesystems, imageFrees, layerDirOf, measureFillers, otherRoots, parsePodLogDir, refreshRoots, REFRESH_MAX_ENTRIES, type InventoryImage } from '../../../collectors/common/fillers.js';
import { disk as diskCollector, type DiskConfig, type DiskRow } from '../../../collectors/disk.js';
import { settingsFor } from '../../helpers/context.js';
import type { RuntimeAccess, RuntimeContainer } from '../../../collectors/types.js';
import { createHostAccess } from '../../../agent/host/access.js';
import { createTreeWalker } from '../../../agent/host/attrs.js';
import { exec } from '../../../agent/host/exec.js';

const layer = (id: string, bytes: number) => ({ id, bytes });
const img = (id: string, layers: [string, number][], extra: Partial<InventoryImage> = {}): InventoryImage => ({ id, name: id, layers: layers.map(([l, b]) => layer(l, b)), containers: [], ...extra });

t.test('imageFrees: each layer once, none a staying image uses, to the first image removed that has it', async (t) => {
  const base: [string, number] = ['base', 100];
  const images = [img('a', [base, ['a1', 10]]), img('b', [base, ['a1', 10], ['b1', 5]]), img('c', [base, ['c1', 7]])];
  t.same(imageFrees(images, ['a', 'b']), { perImage: new Map([['a', 10], ['b', 5]]), total: 15 }, 'base stays for c: only their own layers');
  t.same(imageFrees(images, ['b', 'a']).total, 15, 'the order moves bytes between images, never the total');
  t.same(imageFrees(images, ['b', 'a']).perImage, new Map([['b', 15], ['a', 0]]));
  t.same(imageFrees(images, ['a', 'b', 'c']).total, 122, 'all of them: base once');
  t.same(imageFrees(images, []).total, 0);
  t.same(imageFrees(images, ['nope']).perImage, new Map([['nope', 0]]), 'an unknown image frees nothing');
});

t.test('classifyImages: a layer goes to its strongest use, once; reclaimable is what a prune of all of them frees', async (t) => {
  const images = [
    img('run', [['base', 100], ['r', 1]]),
    img('held', [['base', 100], ['h', 2]]),
    img('pause', [['p', 3]], { pinned: 'sandbox (pause) image' }),
    img('old1', [['base', 100], ['o', 4]]),
    img('old2', [['base', 100], ['o', 4], ['o2', 8]]),
  ];
  const rows = classifyImages(images, new Set(['run']), new Set(['held']));
  t.same(rows.map((r) => [r.image.id, r.class, r.bytes]), [
    ['run', 'in-use', 101],
    ['held', 'held', 2],
    ['pause', 'pinned', 3],
    ['old1', 'reclaimable', 4],
    ['old2', 'reclaimable', 8],
  ]);
  t.equal(rows.reduce((n, r) => n + r.bytes, 0), 118, 'the images add up to their distinct layers');
  t.equal(classifyImages(images, new Set(['run']), new Set(['run']))[0]!.class, 'in-use', 'running wins over stopped');
});

t.test('names and paths', async (t) => {
  t.same(parsePodLogDir('kube-system_coredns-5d78c9869d-abcde_7c6b5a49-3829-4170-8f6e-5d4c3b2a1908'), { namespace: 'kube-system', pod: 'coredns-5d78c9869d-abcde', uid: '7c6b5a49-3829-4170-8f6e-5d4c3b2a1908' });
  t.same(parsePodLogDir('ns_name_with_underscores_7c6b5a49-3829-4170-8f6e-5d4c3b2a1908'), { namespace: 'ns', pod: 'name_with_underscores', uid: '7c6b5a49-3829-4170-8f6e-5d4c3b2a1908' });
  t.equal(parsePodLogDir('not-a-pod-dir'), undefined);
  t.equal(layerDirOf('/var/lib/docker/overlay2/abc/diff'), '/var/lib/docker/overlay2/abc');
  t.equal(layerDirOf('/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/fs'), '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42');
});

t.test('otherRoots: the largest subtrees holding nothing attributed', async (t) => {
  const tree: Record<string, string[]> = {
    '/': ['var', 'usr', 'home'],
    '/var': ['lib', 'log'],
    '/var/lib': ['docker', 'dpkg'],
    '/var/lib/docker': ['overlay2', 'image', 'containers'],
    '/var/lib/docker/overlay2': ['aaa', 'bbb', 'ccc'],
    '/var/log': ['pods', 'journal', 'syslog'],
  };
  const roots = await otherRoots('/', ['/var/lib/docker/overlay2/aaa', '/var/lib/docker/containers', '/var/log/pods/'], async (d) => tree[d]);
  t.same(roots.sort(), ['/home', '/usr', '/var/lib/docker/image', '/var/lib/docker/overlay2/bbb', '/var/lib/docker/overlay2/ccc', '/var/lib/dpkg', '/var/log/journal', '/var/log/syslog']);
  t.same(await otherRoots('/mnt/data', [], async (d) => (d === '/mnt/data' ? ['a', 'b'] : undefined)), ['/mnt/data/a', '/mnt/data/b'], 'a mount point other than /');
});

const row = (mountPoint: string, usePercent: number, extra: Partial<DiskRow> = {}): DiskRow => ({ source: 'dev', fsType: 'ext4', mountPoint, alsoAt: [], device: `8:${usePercent}`, readonly: false, kernelReadOnly: false, status: 'ok', usePercent, size: 100, used: usePercent, avail: 100 - usePercent, ...extra });

t.test('fillFilesystems: nodefs, imagefs, and others only when over their warning', async (t) => {
  const rows = [row('/', 40), row('/var/lib/docker', 50), row('/data', 90), row('/boot', 20), row('/nfs', 99, { status: 'unresponsive' })];
  t.same(fillFilesystems(rows, '/var/lib/kubelet', '/var/lib/docker', 85).map((f) => [f.row.mountPoint, f.roles]), [['/', ['nodefs']], ['/var/lib/docker', ['imagefs']], ['/data', ['over-warning']]]);
  t.same(fillFilesystems([row('/', 40)], '/var/lib/kubelet', '/var/lib/containerd', 85).map((f) => f.roles), [['nodefs', 'imagefs']], 'one filesystem for both');
  t.same(fillFilesystems([row('/', 40)], undefined, undefined, 85), [], 'no kubelet, no runtime, nothing full: nothing');
});

/** A temporary host tree for measureFillers, with the native walker; undefined (failed) without the module. */
function hostTree(t: Test, prefix: string) {
  const walker = createTreeWalker();
  if (!walker) {
    t.fail('the native module is not built (npm rebuild)');
    return undefined;
  }
  const root = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const at = (p: string) => path.join(root, p);
  const file = (p: string, kib: number) => {
    mkdirSync(path.dirname(at(p)), { recursive: true });
    writeFileSync(at(p), Buffer.alloc(kib * 1024, 1));
  };
  return { walker, root, at, file };
}

t.test('measureFillers over a host tree: every kind attributed, hard links once, symlinks not followed, adding up', async (t) => {
  const tree = hostTree(t, 'nw-fillers-');
  if (!tree) return;
  const { walker, root, at, file } = tree;
  const uid = '11111111-2222-4333-8444-555555555555';
  file('var/lib/docker/overlay2/c1/diff/data', 512);
  file('var/lib/docker/overlay2/c1/work/.keep', 0);
  file('var/lib/docker/overlay2/l1/diff/bin', 2048); // an image layer: counted by its image, not walked
  file('var/lib/docker/containers/c1/c1-json.log', 256);
  file('var/lib/docker/containers/c1/c1-json.log.1', 128);
  file(`var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~empty-dir/scratch/a`, 64);
  linkSync(at(`var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~empty-dir/scratch/a`), at(`var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~empty-dir/scratch/a-again`));
  symlinkSync('/', at(`var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~empty-dir/scratch/root`));
  file(`var/log/pods/shop_web-1_${uid}/web/0.log`, 32);
  file('var/log/journal/system.journal', 300);
  file('srv/data/big', 1024);
  // The tree is its own "filesystem": a mountinfo that says so, with the real device of the temp dir.
  const dev = execFileSync('stat', ['-c', '%Hd:%Ld', root], { encoding: 'utf8' }).trim();
  mkdirSync(at('proc/1'), { recursive: true });
  writeFileSync(at('proc/1/mountinfo'), `1 0 ${dev} / / rw,relatime - ext4 /dev/test rw\n`);
  const container: RuntimeContainer = {
    id: 'c1',
    name: 'web',
    manager: 'docker',
    image: 'shop/web:1',
    labels: {},
    workload: { containerId: 'c1', containerName: 'web', pod: 'web-1', namespace: 'shop', podUid: uid },
    docker: { status: 'running', running: true, pid: 1, dead: false, removing: false, error: '', exitCode: 0 },
    storage: { upperDir: '/var/lib/docker/overlay2/c1/diff', containerDir: '/var/lib/docker/containers/c1' },
  };
  const runtime: RuntimeAccess = { snapshot: async () => ({ runtimes: [], containers: [container], takenAt: 0 }), ping: async () => [], settleMs: 0 };
  const inventory: InventoryImage[] = [
    { id: 'sha256:web', name: 'shop/web:1', layers: [{ id: 'l1', bytes: 2_000_000, dir: '/var/lib/docker/overlay2/l1' }], containers: ['c1'] },
    { id: 'sha256:old', name: 'old:1', layers: [{ id: 'l1', bytes: 2_000_000 }, { id: 'l2', bytes: 3_000 }], containers: [] },
  ];
  const disk = settingsFor(diskCollector) as unknown as DiskConfig;
  const host = createHostAccess({ root, exec });
  const r = await measureFillers({ host, runtime, walker, images: async () => ({ images: inventory, notes: [] }), settings: { kubeletRootDir: '/var/lib/kubelet', podLogsDir: '/var/log/pods', disk, timeoutMs: 30_000, maxEntries: 1_000_000, threads: 4 } });
  const by = (p: string) => r.consumers.find((c) => c.path === p);
  const kib = (c: { bytes: number } | undefined) => Math.round((c?.bytes ?? -1) / 1024);
  t.match(by('/var/lib/docker/overlay2/c1'), { kind: 'writable-layer', pod: 'shop/web-1', container: 'web', image: 'shop/web:1', filesystem: '/' });
  t.ok(kib(by('/var/lib/docker/overlay2/c1')) >= 512 && kib(by('/var/lib/docker/overlay2/c1')) < 540, 'the layer dir, as du counts it');
  t.match(by('/var/lib/docker/containers/c1'), { kind: 'logs', pod: 'shop/web-1', container: 'web' });
  t.ok(kib(by('/var/lib/docker/containers/c1')) >= 384, 'the json log and its rotated file');
  const ed = by(`/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~empty-dir/scratch`);
  t.match(ed, { kind: 'emptydir', pod: 'shop/web-1', volume: 'scratch' });
  t.ok(kib(ed) >= 64 && kib(ed) < 80, `the hard link counted once, the symlink to / not followed (${kib(ed)} KiB)`);
  t.match(by(`/var/log/pods/shop_web-1_${uid}/web`), { kind: 'logs', pod: 'shop/web-1', container: 'web' });
  t.match(r.consumers.filter((c) => c.kind.startsWith('image-')).map((c) => [c.kind, c.image, c.bytes]), [['image-in-use', 'shop/web:1', 2_000_000], ['image-reclaimable', 'old:1', 3_000]], 'the shared layer goes to the image in use');
  t.notOk(r.consumers.some((c) => !c.kind.startsWith('image-') && c.path.startsWith('/var/lib/docker/overlay2/l1')), 'the image layer dir is not walked again');
  t.match(by('/srv'), { kind: 'other' });
  t.match(by('/var/log/journal'), { kind: 'other' }, 'the rest, next to what is attributed');
  t.notOk(r.partial);
  t.equal(r.filesystems.length, 1);
  t.same(r.filesystems[0]!.roles, ['nodefs', 'imagefs']);
  t.equal(r.filesystems[0]!.attributed, r.consumers.reduce((n, c) => n + c.bytes, 0), 'attributed is the sum of the rows');

  const tight = await measureFillers({ host, runtime, walker, settings: { kubeletRootDir: '/var/lib/kubelet', podLogsDir: '/var/log/pods', disk, timeoutMs: 30_000, maxEntries: 3, threads: 1 } });
  t.equal(tight.partial?.reason, 'budget', 'an entry budget stops the walk, and says so');
  const none = await measureFillers({ host, runtime, walker: undefined, settings: { kubeletRootDir: '/var/lib/kubelet', podLogsDir: '/var/log/pods', disk, timeoutMs: 30_000, maxEntries: 3, threads: 1 } });
  t.equal(none.partial?.reason, 'no-walker', 'no native module: partial, with nothing walked');
});

t.test("measureFillers on containerd's layout: a layer no container sits on is counted once, by its size, and the snapshots dir's rest is one row", async (t) => {
  const tree = hostTree(t, 'nw-fillers-ctrd-');
  if (!tree) return;
  const { walker, root, at, file } = tree;
  const snaps = '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots';
  const blobs = '/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256';
  file(`${snaps}/1/fs/bin/busybox`, 1024); // the base layer, under the running container (dir known)
  file(`${snaps}/2/fs/tmp/out`, 512); // the container's writable layer
  mkdirSync(at(`${snaps}/2/work`));
  file(`${snaps}/3/fs/opt/app`, 2048); // the unused image's own layer: dir not known
  file(`${snaps}/4/fs/leftover`, 256); // a snapshot nobody lists: the rest
  file(`${blobs}/aaaa`, 300); // the unused image's layer blob
  file(`${blobs}/ffff`, 64); // a blob of no listed image
  file('var/lib/kubelet/config.yaml', 1);
  const dev = execFileSync('stat', ['-c', '%Hd:%Ld', root], { encoding: 'utf8' }).trim();
  mkdirSync(at('proc/1'), { recursive: true });
  writeFileSync(at('proc/1/mountinfo'), `1 0 ${dev} / / rw,relatime - ext4 /dev/test rw\n`);
  const runtime: RuntimeAccess = { snapshot: async () => ({ runtimes: [], containers: [], takenAt: 0 }), ping: async () => [], settleMs: 0 };
  const KiB = 1024;
  const inventory: InventoryImage[] = [
    { id: 'containerd/k8s.io/sha256:base', name: 'busybox:1', layers: [{ id: 'base', bytes: 1028 * KiB, dir: `${snaps}/1` }], containers: ['ctr-1'], running: ['ctr-1'] },
    { id: 'containerd/k8s.io/sha256:app', name: 'app:1', layers: [{ id: 'blob-a', bytes: 300 * KiB, dir: `${blobs}/aaaa` }, { id: 'base', bytes: 1028 * KiB }, { id: 'app', bytes: 2052 * KiB, within: snaps }], containers: [] },
  ];
  const disk = settingsFor(diskCollector) as unknown as DiskConfig;
  const host = createHostAccess({ root, exec });
  const r = await measureFillers({ host, runtime, walker, images: async () => ({ images: inventory, notes: [] }), settings: { kubeletRootDir: '/var/lib/kubelet', podLogsDir: '/var/log/pods', disk, timeoutMs: 30_000, maxEntries: 1_000_000, threads: 4 } });
  const kib = (b: number | undefined) => Math.round((b ?? -1) / KiB);
  t.same(r.consumers.filter((c) => c.kind.startsWith('image-')).map((c) => [c.kind, c.image, kib(c.bytes)]), [['image-reclaimable', 'app:1', 2352], ['image-in-use', 'busybox:1', 1028]], 'the unused image: its blob and its layer, not the base the running container holds (running as the runtime listed it)');
  const rest = r.consumers.find((c) => c.kind === 'other' && c.path === snaps);
  t.match(rest, { kind: 'other', less: 2052 * KiB }, 'the snapshots dir is one row, saying what it leaves out');
  t.notOk(refreshRoots(r).includes(snaps), 'and it is not refreshed incrementally (a refresh would count the layer again)');
  // Snapshots 2 (its container is not in this snapshot, so no writable-layer row) and 4, their dirs: the walk less the unused layer's size.
  t.ok(kib(rest?.bytes) >= 768 && kib(rest?.bytes) < 820, `its rest: snapshots 2 and 4, not 3 again (${kib(rest?.bytes)} KiB)`);
  t.notOk(r.consumers.some((c) => c.kind === 'other' && c.path.startsWith(`${snaps}/`)), 'no snapshot dir of its own among the other rows');
  t.notOk(r.consumers.some((c) => c.kind === 'other' && c.path === `${blobs}/aaaa`), 'the blob is counted by its image');
  t.ok(r.consumers.some((c) => c.kind === 'other' && c.path === `${blobs}/ffff`), 'a blob of no image is the rest');
  t.ok(r.notes.some((n) => n.includes(`1 image layer under ${snaps}`)), `a note says how: ${r.notes.join(' | ')}`);
  const total = r.consumers.reduce((n, c) => n + c.bytes, 0);
  const du = Number(execFileSync('du', ['-sxB1', at('var')], { encoding: 'utf8' }).split('\t')[0]);
  t.ok(Math.abs(total - du) < 64 * KiB, `the rows add up to du of the tree, nothing twice (${kib(total)} vs ${kib(du)} KiB)`);
});

t.test('refreshRoots: the largest of each filesystem, but never one the walk found too large to index', async (t) => {
  const fs = { mountPoint: '/', device: '8:1', fsType: 'ext4', source: '/dev/sda1', roles: ['nodefs' as const], size: 100, used: 50, avail: 50, usePercent: 50, attributed: 50, unattributed: 0, margin: 1 };
  const row = (path: string, bytes: number, entries: number) => ({ kind: 'other' as const, path, filesystem: '/', bytes, entries });
  const fillers = { filesystems: [fs], entries: 0, errors: 0, notes: [], consumers: [row('/srv/millions', 900, REFRESH_MAX_ENTRIES + 1), row('/var/log', 500, 2_000), row('/opt', 400, 10), row('/home', 300, 10), row('/root', 200, 10), row('/etc', 100, 10), row('/tmp', 50, 10)] };
  t.same(refreshRoots(fillers as never), ['/var/log', '/opt', '/home', '/root', '/etc'], 'a root of more entries than REFRESH_MAX_ENTRIES is left to the full walk, and the next largest takes its place');
});
