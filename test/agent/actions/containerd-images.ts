import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  assembleContainerdInventory,
  containerdLayout,
  groupImages,
  layerDirsFromLowerDirs,
  ociArch,
  parseImageConfig,
  parseManifest,
  pickPlatform,
  shownName,
  type ContainerdImageRead,
} from '../../../agent/actions/containerd-images.js';
import { chainIds } from '../../../agent/actions/images.js';
import { sandboxReason } from '../../../agent/actions/prune.js';
import { classifyImages, imageFrees } from '../../../collectors/common/fillers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = (name: string) => readFileSync(path.join(here, '../../../../test/fixtures/runtime/containerd-content', name), 'utf8');
const BASE = 'sha256:5edb12be378c378a80e8b00678a7ffd74e92c5e47d1a656914cd505cd2185f94';
const TOP = 'sha256:f43a8628c688982ef907b82c316f145607df51fe0e4f1e95013efb9fea3fa97b';

t.test("manifests as containerd's content store keeps them: docker v2, an OCI index and its platform", async (t) => {
  const m = parseManifest(fixture('manifest-two-layers.json'));
  t.same(m, {
    kind: 'manifest',
    config: { digest: 'sha256:aa732c3112d069b87faa9446c28a5820ed51cb3ddf4f658699b308a7363ff2b0', size: 1254 },
    layers: [
      { digest: BASE, size: 2129920 },
      { digest: TOP, size: 2048 },
    ],
  });
  const index = parseManifest(fixture('index-oci.json'));
  if (index.kind !== 'index') throw new Error('an index');
  t.equal(index.manifests.length, 3);
  t.equal(pickPlatform(index, 'amd64')?.digest, 'sha256:6e59d043c75dae833af6c46aa599ccf29b5845ea1442ad304aa99360ad62173d', 'linux/amd64, not the windows one of the same architecture');
  t.equal(pickPlatform(index, 'arm64')?.digest, 'sha256:0fb4bbd1ac0d0b1d43b8a9da9dc0a2a4a7f0c8d5b0f0b7cd4bd38f1a8ce1e2f3');
  t.equal(pickPlatform(index, 'riscv64')?.digest, index.manifests[0]!.digest, 'no match: the first, as containerd falls back');
  t.equal(pickPlatform({ kind: 'index', manifests: [] }), undefined);
  t.equal(ociArch('x64'), 'amd64');
  t.equal(ociArch('arm64'), 'arm64');
  for (const bad of ['not json', '[]', '{"layers":[{"digest":"sha256:abc","size":1}],"config":{"digest":"sha256:abc","size":1}}', `{"layers":[],"config":{"digest":"${BASE}","size":-1}}`, '{"schemaVersion":2}', '{"manifests":[{"size":3}]}']) {
    t.throws(() => parseManifest(bad), { code: 'NW_ERR_PARSE' }, `refused: ${bad.slice(0, 40)}`);
  }
});

t.test("an image config's diff ids, and the chain ids containerd keys its snapshots by", async (t) => {
  t.same(parseImageConfig(fixture('config-busybox.json')), [BASE]);
  const diffs = parseImageConfig(fixture('config-two-layers.json'));
  t.same(diffs, [BASE, TOP]);
  const chain = chainIds(diffs);
  t.equal(chain[0], BASE, 'the base layer is its own chain id');
  t.match(chain[1], /^sha256:[0-9a-f]{64}$/);
  t.not(chain[1], TOP, 'the second is not its diff id');
  for (const bad of ['nope', '{}', '{"rootfs":{"diff_ids":["md5:1"]}}', '{"rootfs":{}}']) t.throws(() => parseImageConfig(bad), { code: 'NW_ERR_PARSE' });
});

t.test("a committed layer's dir from the lowerdirs of a container's snapshot on top of it", async (t) => {
  const dir = (n: number) => `/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/${n}/fs`;
  t.same(layerDirsFromLowerDirs(['c0', 'c1', 'c2'], [dir(9), dir(4), dir(1)]), new Map([
    ['c2', '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9'],
    ['c1', '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/4'],
    ['c0', '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1'],
  ]), 'top layer first in overlay, base first in the chain');
  t.equal(layerDirsFromLowerDirs(['c0', 'c1'], [dir(1)]), undefined, 'a count that does not match says nothing');
  t.equal(layerDirsFromLowerDirs([], []), undefined);
});

const layout = containerdLayout('/var/lib/containerd/', 'k8s.io');
const snaps = layout.snapshotsDir;

t.test('the inventory of a namespace: containers per image, running or not, layers with their dirs or where they are, blobs, pins', async (t) => {
  t.same(layout, { namespace: 'k8s.io', snapshotter: 'overlayfs', snapshotsDir: '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots', blobsDir: '/var/lib/containerd/io.containerd.content.v1.content/blobs' });
  const two = parseManifest(fixture('manifest-two-layers.json'));
  const one = parseManifest(fixture('manifest-docker-v2.json'));
  if (two.kind !== 'manifest' || one.kind !== 'manifest') throw new Error('manifests');
  const twoChain = chainIds(parseImageConfig(fixture('config-two-layers.json')));
  const grouped = groupImages([
    { name: 'docker.io/shop/app:2', labels: { 'io.cri-containerd.image': 'managed' }, target: { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: 'sha256:two', size: 592 }, createdAt: '2026-12-01T10:00:00Z' },
    { name: 'sha256:aa732c3112d069b87faa9446c28a5820ed51cb3ddf4f658699b308a7363ff2b0', labels: {}, target: { mediaType: 'x', digest: 'sha256:two', size: 592 }, createdAt: '2026-11-30T10:00:00Z' },
    { name: 'docker.io/library/busybox:1', labels: {}, target: { mediaType: 'x', digest: 'sha256:one', size: 528 } },
    { name: 'registry.k8s.io/pause:3.9', labels: { 'io.cri-containerd.pinned': 'pinned' }, target: { mediaType: 'x', digest: 'sha256:pause', size: 400 } },
    { name: 'docker.io/shop/pinned:1', labels: { 'io.cri-containerd.pinned': 'pinned' }, target: { mediaType: 'x', digest: 'sha256:pin', size: 400 } },
    { name: 'docker.io/shop/broken:1', labels: {}, target: { mediaType: 'x', digest: 'sha256:broken', size: 777 } },
  ]);
  t.same(grouped.map((g) => [g.digest, g.names.length]), [['sha256:two', 2], ['sha256:one', 1], ['sha256:pause', 1], ['sha256:pin', 1], ['sha256:broken', 1]], 'names grouped by target');
  t.equal(grouped[0]!.createdMs, Date.parse('2026-11-30T10:00:00Z'), 'the earliest creation');
  t.equal(shownName(grouped[0]!.names, 'sha256:two'), 'docker.io/shop/app:2', 'the tag, not the id name');
  const read = (g: (typeof grouped)[number], extra: Partial<ContainerdImageRead>): ContainerdImageRead => ({ digest: g.digest, names: g.names, labels: g.labels, targetSize: g.target.size, ...extra });
  const reads: ContainerdImageRead[] = [
    read(grouped[0]!, { manifest: two, chain: twoChain }),
    read(grouped[1]!, { manifest: one, chain: [BASE] }),
    read(grouped[2]!, { chain: ['sha256:p0'] }),
    read(grouped[3]!, { chain: ['sha256:q0'] }),
    read(grouped[4]!, { error: 'Content/Read: grpc status 5: not found' }),
  ];
  const usage = new Map<string, number | undefined>([
    [BASE, 1_998_848],
    [twoChain[1]!, 8_192],
    ['sha256:p0', 4_096],
    ['sha256:q0', undefined],
  ]);
  const dirs = new Map([
    [BASE, `${snaps}/1`],
    [twoChain[1]!, `${snaps}/7`],
  ]);
  // The CRI discarded the base layer's blob after unpacking; the config blobs and the top layer's stay.
  // Each by its allocated bytes (a 1,254-byte config blob takes a 4 KiB block); one whose size could
  // not be read counts its descriptor's size.
  const blobs = new Map<string, number | undefined>([
    ['sha256:aa732c3112d069b87faa9446c28a5820ed51cb3ddf4f658699b308a7363ff2b0', 4096],
    [TOP, 4096],
    ['sha256:69b868e74ded9ab9cd2f9d7bd1455428220130b2bed885d5139c2442e364f5dd', undefined],
  ]);
  const containers = [
    { id: 'web', image: 'docker.io/shop/app:2' },
    { id: 'job', image: 'sha256:aa732c3112d069b87faa9446c28a5820ed51cb3ddf4f658699b308a7363ff2b0' },
    { id: 'other-ns-image', image: 'docker.io/elsewhere:1' },
  ];
  const tasks = [
    { containerId: 'web', status: 'RUNNING' as const },
    { containerId: 'job', status: 'STOPPED' as const },
  ];
  const inv = assembleContainerdInventory(layout, reads, containers, tasks, usage, dirs, blobs, (refs) => sandboxReason(refs, ['pause']));
  const [app, busybox, pause, pinned, broken] = inv;
  t.match(app, { id: 'containerd/k8s.io/sha256:two', name: 'docker.io/shop/app:2', containers: ['web', 'job'], running: ['web'], namespace: 'k8s.io', refs: grouped[0]!.names }, 'containers by any of its names; the one whose task runs');
  t.same(app!.layers, [
    { id: 'containerd/content/sha256:aa732c3112d069b87faa9446c28a5820ed51cb3ddf4f658699b308a7363ff2b0', bytes: 4096, dir: '/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/aa732c3112d069b87faa9446c28a5820ed51cb3ddf4f658699b308a7363ff2b0' },
    { id: `containerd/content/${TOP}`, bytes: 4096, dir: `/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/${TOP.slice(7)}` },
    { id: `containerd/k8s.io/overlayfs/${BASE}`, bytes: 1_998_848, dir: `${snaps}/1` },
    { id: `containerd/k8s.io/overlayfs/${twoChain[1]}`, bytes: 8_192, dir: `${snaps}/7` },
  ], "blobs that are on disk by their allocated bytes, then snapshots base first with Usage's bytes and their dirs");
  t.same(busybox!.layers.map((l) => l.id), ['containerd/content/sha256:69b868e74ded9ab9cd2f9d7bd1455428220130b2bed885d5139c2442e364f5dd', `containerd/k8s.io/overlayfs/${BASE}`], 'the base snapshot is the same layer as in the app image');
  t.same([busybox!.containers, busybox!.pinned], [[], undefined]);
  t.same(pause!.layers, [{ id: 'containerd/k8s.io/overlayfs/sha256:p0', bytes: 4_096, within: snaps }], "no container on it: its dir is not known, only where it is");
  t.equal(pause!.pinned, 'sandbox (pause) image', 'the sandbox rule first');
  t.equal(pinned!.pinned, 'pinned by the CRI');
  t.same(pinned!.layers, [], 'not unpacked for this snapshotter: nothing of it on disk there');
  t.same(broken!.layers, [{ id: 'image:containerd/k8s.io/sha256:broken', bytes: 777 }], "unreadable content: one layer of the target's size");

  // Through du's classification and prune's function: shared layers once, ids apart from docker's.
  const rows = classifyImages(inv, new Set([app!.id]), new Set());
  t.same(rows.map((r) => [r.image.name, r.class, r.bytes]), [
    ['docker.io/shop/app:2', 'in-use', 4096 + 4096 + 1_998_848 + 8_192],
    ['docker.io/library/busybox:1', 'reclaimable', 895],
    ['registry.k8s.io/pause:3.9', 'pinned', 4_096],
    ['docker.io/shop/pinned:1', 'pinned', 0],
    ['docker.io/shop/broken:1', 'reclaimable', 777],
  ], "busybox frees only its config blob: its layer is the app's base");
  const docker = { id: 'sha256:dockers-busybox', name: 'busybox:1', layers: [{ id: BASE, bytes: 2_000_000 }], containers: [] };
  t.equal(imageFrees([...inv, docker], [docker.id]).total, 2_000_000, "docker's copy of the same chain id is its own bytes: removing it frees them though containerd's stays");
});
