import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeInventory } from '../../../agent/actions/du.js';
import { measureLayers } from '../../../agent/actions/images.js';
import type { ImageLayer, TreeWalker, WalkResult } from '../../../collectors/common/fillers.js';
import { createHostAccess } from '../../../agent/host/access.js';
import { exec } from '../../../agent/host/exec.js';
import type { Runtimes } from '../../../agent/runtime/model.js';
import type { RuntimeState } from '../../../collectors/types.js';
import { NodewardenError } from '../../../protocol/errors.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = (name: string) => readFileSync(path.join(here, '../../../../test/fixtures/runtime/containerd-content', name));
const MANIFEST = 'sha256:cde022c0abfacadd25476bae2fb7a0b22f637bfb75ba03f31bc6467dd03349d0';
const CONFIG = 'sha256:69b868e74ded9ab9cd2f9d7bd1455428220130b2bed885d5139c2442e364f5dd';
const BASE = 'sha256:5edb12be378c378a80e8b00678a7ffd74e92c5e47d1a656914cd505cd2185f94';

/** Runtimes answering as told: docker and containerd each ok, down, or failing on their lists. */
function runtimes(docker: RuntimeState['status'] | 'fails', containerd: RuntimeState['status'] | 'fails'): Runtimes {
  const state = (name: 'docker' | 'containerd', s: RuntimeState['status'] | 'fails'): RuntimeState => ({ name, socket: `/run/${name}.sock`, status: s === 'fails' ? 'ok' : s });
  const broken = (what: string) => async () => {
    throw new NodewardenError('NW_ERR_RUNTIME', `${what}: grpc status 14: unavailable`);
  };
  const fake = {
    ping: async () => [state('docker', docker), state('containerd', containerd)],
    docker: {
      images: docker === 'fails' ? broken('/images/json') : async () => [{ Id: 'sha256:dockerimg', RepoTags: ['app:1'], RepoDigests: [], Size: 7_000, Created: 0, Labels: null }],
      containers: async () => [],
      inspectImage: async () => ({ GraphDriver: { Name: 'overlay2' }, RootFS: { Layers: [BASE] } }),
    },
    containerd: {
      images: containerd === 'fails' ? broken('Images/List') : async () => [{ name: 'docker.io/nodewarden-test/busybox:1', labels: {}, target: { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: MANIFEST, size: 528 } }],
      containers: async () => [],
      tasks: async () => [],
      readBlob: async (_ns: string, digest: string) => fixture(digest === MANIFEST ? 'manifest-docker-v2.json' : digest === CONFIG ? 'config-busybox.json' : 'missing'),
      snapshotUsage: async () => ({ size: 1_998_848, inodes: 404 }),
      snapshotMounts: async () => [],
    },
  };
  return fake as unknown as Runtimes;
}

t.test("du's images: docker's and containerd's together; one runtime down or failing never hides the other's", async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-du-inv-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const env = { host: createHostAccess({ root, exec }) };
  const config = { prune: { enabled: false, sandboxImages: ['pause'], containerdNamespaces: ['k8s.io'], label: '' }, runtime: { dockerRoot: '/var/lib/docker', containerdRoot: '/var/lib/containerd' } } as Parameters<typeof nodeInventory>[2];
  const names = (inv: Awaited<ReturnType<typeof nodeInventory>>) => inv?.images.map((i) => i.name);

  const both = await nodeInventory(runtimes('ok', 'ok'), env, config);
  t.same(names(both), ['app:1', 'docker.io/nodewarden-test/busybox:1'], 'both runtimes: both inventories');
  const ctrd = both?.images[1];
  t.same(ctrd?.layers, [{ id: `containerd/k8s.io/overlayfs/${BASE}`, bytes: 1_998_848, within: '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots' }], "containerd's layer by its chain id and Usage, apart from docker's same chain id");
  t.not(both?.images[0]?.layers[0]?.id, ctrd?.layers[0]?.id);

  const criOnly = await nodeInventory(runtimes('absent', 'ok'), env, config);
  t.same([names(criOnly), criOnly?.notes], [['docker.io/nodewarden-test/busybox:1'], []], 'a CRI-only node (no dockerd): containerd\'s images, nothing to say');
  const dockerDown = await nodeInventory(runtimes('down', 'ok'), env, config);
  t.same(names(dockerDown), ['docker.io/nodewarden-test/busybox:1'], 'docker down: still containerd\'s');

  const dockerFails = await nodeInventory(runtimes('fails', 'ok'), env, config);
  t.same(names(dockerFails), ['docker.io/nodewarden-test/busybox:1'], 'docker failing on its list: containerd\'s images all the same');
  t.match(dockerFails?.notes, [/^docker's images could not be listed \(.*\/images\/json.*\): they are counted with the rest$/], 'and a note says what is missing');

  const ctrdFails = await nodeInventory(runtimes('ok', 'fails'), env, config);
  t.same(names(ctrdFails), ['app:1'], "containerd failing: docker's images all the same");
  t.match(ctrdFails?.notes, [/^containerd namespace k8s\.io: .*Images\/List.*: its images are counted with the rest$/]);

  t.equal(await nodeInventory(runtimes('down', 'absent'), env, config), undefined, 'no runtime answers: no inventory (du says so in its own note)');
  const noNamespaces = await nodeInventory(runtimes('absent', 'ok'), env, { ...config, prune: { ...config.prune, containerdNamespaces: [] } });
  t.equal(noNamespaces, undefined, 'no containerd namespace configured: containerd is not asked');
});

t.test("docker layers are counted by their dirs' allocated bytes, walked once each, the layer store's size kept where a walk cannot tell", async (t) => {
  const host = createHostAccess({ root: '/', exec });
  const walks: string[][] = [];
  let answer: (roots: readonly string[]) => WalkResult = (roots) => ({
    roots: roots.map((r) => (r.endsWith('/gone') ? { bytes: 0, entries: 0, dev: null, kind: 'missing' as const } : r.endsWith('/other-fs') ? { bytes: 0, entries: 0, dev: '8:2', kind: 'elsewhere' as const } : { bytes: 40_960, entries: 10, dev: '8:1', kind: 'dir' as const })),
    entries: 10,
    errors: 0,
    partial: null,
  });
  const walker: TreeWalker = {
    walk: async (roots) => {
      walks.push([...roots]);
      return answer(roots);
    },
  };
  const cache = new Map<string, number>();
  const layers = (): ImageLayer[] => [
    { id: 'sha256:a', bytes: 1_000, dir: '/var/lib/docker/overlay2/a' },
    { id: 'sha256:a', bytes: 1_000, dir: '/var/lib/docker/overlay2/a' }, // the same layer in a second image
    { id: 'sha256:b', bytes: 2_000, dir: '/var/lib/docker/overlay2/gone' },
    { id: 'sha256:c', bytes: 3_000, dir: '/var/lib/docker/overlay2/other-fs' },
    { id: 'image:x', bytes: 7_000 },
  ];
  const first = layers();
  t.equal(await measureLayers(first, host, walker, cache), 3, 'three dirs walked, the shared one once');
  t.same(walks, [['/var/lib/docker/overlay2/a', '/var/lib/docker/overlay2/gone', '/var/lib/docker/overlay2/other-fs']]);
  t.same(first.map((l) => l.bytes), [40_960, 40_960, 2_000, 3_000, 7_000], 'walked dirs take their allocated bytes; a missing dir, one elsewhere and one without a dir keep their sizes');
  const second = layers();
  await measureLayers(second, host, walker, cache);
  t.equal(walks.length, 2, 'the next measurement walks only what could not be measured before');
  t.same(walks[1], ['/var/lib/docker/overlay2/gone', '/var/lib/docker/overlay2/other-fs']);
  t.equal(second[0]!.bytes, 40_960, 'and takes the remembered bytes for the rest');
  answer = (roots) => ({ roots: roots.map(() => ({ bytes: 1, entries: 1, dev: '8:1', kind: 'dir' as const })), entries: 1, errors: 0, partial: 'deadline' });
  const cut = [{ id: 'sha256:d', bytes: 5_000, dir: '/var/lib/docker/overlay2/d' }];
  await measureLayers(cut, host, walker, new Map());
  t.equal(cut[0]!.bytes, 5_000, 'a walk cut short by its deadline changes nothing (its numbers would be low)');
  const none = layers();
  t.equal(await measureLayers(none, host, undefined, new Map()), 0, 'nothing walked');
  t.same(none.map((l) => l.bytes), [1_000, 1_000, 2_000, 3_000, 7_000], 'without the native walker, the layer store says');
});
