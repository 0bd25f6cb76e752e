// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { containerNeedles, holdingNamespaces, whoHolds } from '../../../agent/actions/who-holds.js';
import { createHostAccess } from '../../../agent/host/access.js';
import { exec } from '../../../agent/host/exec.js';
import { parseMountinfo } from '../../../collectors/common/mountinfo.js';
import type { RuntimeAccess, RuntimeContainer } from '../../../collectors/types.js';
import { envFor } from '../../helpers/context.js';
import { heldLoopFs, requireLive } from '../../helpers/live.js';

const K8S = path.resolve('test/fixtures/host/k8s-node');
const C1 = '9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b';
const container = (over: Partial<RuntimeContainer>): RuntimeContainer =>
  ({ id: C1, name: 'web', manager: 'containerd', image: 'nginx', labels: {}, workload: { containerId: C1, containerName: 'web', pod: 'web-0', namespace: 'shop' }, storage: {}, ...over }) as RuntimeContainer;

t.test("a container's needles: its id and its layer directories' names", async (t) => {
  const layer = 'f'.repeat(64);
  t.same(
    containerNeedles(container({ storage: { upperDir: `/var/lib/docker/overlay2/${layer}/diff`, mergedDir: `/var/lib/docker/overlay2/${layer}/merged`, containerDir: `/var/lib/docker/containers/${C1}` } })),
    [C1, layer],
    'the layer once for diff and merged; "containers" (the container dir\'s parent) is too short to be a needle',
  );
  t.same(containerNeedles(container({})), [C1], 'no storage known: the id only');
});

t.test('holders described from the host tree, with their workload; the host namespace shows only a few', async (t) => {
  const host = createHostAccess({ root: K8S, exec });
  const mounts = parseMountinfo('1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 7:0 / /data rw - ext4 /dev/loop0 rw\n');
  const namespaces = [
    { id: 'mnt:[1]', host: true, pids: [2316, 2367, 2418], mounts },
    { id: 'mnt:[2]', host: false, pids: [2316, 2418], mounts },
    { id: 'mnt:[3]', host: false, pids: [2367], mounts: parseMountinfo('1 0 8:1 / / rw - ext4 /dev/sda1 rw\n') },
  ];
  let asked = 0;
  const snapshot = async () => {
    asked++;
    return { containers: [container({})] };
  };
  const r = await holdingNamespaces(namespaces, (m) => m.mountPoint === '/data', host, snapshot);
  t.same(r.map((n) => [n.namespace, n.processes, n.holders.map((h) => h.pid)]), [['mnt:[1]', 3, [2316]], ['mnt:[2]', 2, [2316, 2418]]], 'only namespaces with the mount; the host one shows its first process');
  t.same(r[1]?.mounts, ['2 1 7:0 / /data rw - ext4 /dev/loop0 rw']);
  t.same(r[1]?.holders[0], { pid: 2316, comm: 'sleep', cmdline: 'sleep 600', containerId: C1, workload: { containerId: C1, containerName: 'web', pod: 'web-0', namespace: 'shop' } }, 'a known container gets its workload');
  t.equal(r[1]?.holders[1]?.workload, undefined, 'a container the runtime does not know keeps its id only');
  t.ok(r[1]?.holders[1]?.containerId);
  t.equal(asked, 2, 'the runtime is asked only for namespaces with container holders');
  const few = await holdingNamespaces(namespaces, (m) => m.mountPoint === '/data', host, snapshot, { hostProcesses: 2, maxHolders: 1 });
  t.same(few.map((n) => n.holders.length), [2, 1]);
});

const noRuntime: RuntimeAccess = {
  snapshot: async () => ({ runtimes: [], containers: [], takenAt: Date.now() }),
  ping: async () => [],
  settleMs: 0,
};

t.test('targets that cannot be looked for are usage errors', async (t) => {
  const host = createHostAccess({ root: '/', exec });
  await t.rejects(whoHolds('  ', host, noRuntime), { code: 'NW_ERR_USAGE' });
  await t.rejects(whoHolds('/dev/nw-no-such-device', host, noRuntime), { code: 'NW_ERR_USAGE', message: /no such device/ });
  await t.rejects(whoHolds('/dev/null', host, noRuntime), { code: 'NW_ERR_USAGE', message: /not a block device/ });
});

t.test('live: a loop filesystem held in another mount namespace, by device, path and text', async (t) => {
  if (!requireLive(t, { root: true, commands: ['unshare', 'mkfs.ext4', 'losetup'] })) return;
  const { fs, holder } = await heldLoopFs(t, 16);
  const env = envFor('/');
  t.teardown(() => env.runtime.close?.());

  const before = await whoHolds(fs.device, env.host, env.runtime);
  t.same(before.namespaces.map((n) => n.host), [true, false], 'mounted on the host and in the holder\'s copy');
  t.equal(spawnSync('umount', [fs.mountPoint]).status, 0, 'the host unmounts it');

  const byDevice = await whoHolds(fs.device, env.host, env.runtime);
  t.equal(byDevice.kind, 'device');
  t.match(byDevice.matchedBy[0], /^7:\d+$/, 'matched by major:minor');
  t.same(byDevice.namespaces.map((n) => [n.host, n.processes, n.holders.map((h) => [h.pid, h.comm, h.cmdline])]), [[false, 1, [[holder.pid, 'sleep', 'sleep 600']]]]);
  const byPath = await whoHolds(`${fs.mountPoint}/`, env.host, env.runtime);
  t.same([byPath.kind, byPath.matchedBy, byPath.namespaces.length], ['path', [fs.mountPoint], 1], 'a trailing slash is the same path');
  const byText = await whoHolds(path.basename(path.dirname(fs.mountPoint)), env.host, env.runtime);
  t.same([byText.kind, byText.namespaces.map((n) => n.holders[0]?.pid)], ['text', [holder.pid]], 'any text of the mount line, as grep');
});
