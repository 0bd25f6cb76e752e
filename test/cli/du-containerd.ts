// @live shared: real containerd (scoped to its own labelled images, so it may run beside the other shared files) (k8s.io: an image in use by a running container, one held by a stopped one, one unused, a pause image), through `nodewarden du` as a process and prune's dry run
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Fillers } from '../../collectors/common/fillers.js';
import { parseImageConfig, parseManifest } from '../../agent/actions/containerd-images.js';
import { chainIds } from '../../agent/actions/images.js';
import { prune } from '../../agent/actions/prune.js';
import { createHostAccess } from '../../agent/host/access.js';
import { exec } from '../../agent/host/exec.js';
import { Runtimes } from '../../agent/runtime/model.js';
import type { PruneProgress } from '../../protocol/wire.js';
import { duOf, runDu } from '../helpers/du.js';
import { requireLive } from '../helpers/live.js';
import { DOCKER, DOCKER_SOCK, CONTAINERD_SOCK, TEST_IMAGE, copyToContainerd, ctrTry, docker, dockerTry, ensureTestImage, removeContainer, requireRuntime, runContainer } from '../helpers/runtime.js';

/** Every name each image of k8s.io has, by target digest (`ctr images ls`: REF TYPE DIGEST ...). */
function k8sImages(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of ctrTry('-n', 'k8s.io', 'images', 'ls').stdout.split('\n').slice(1)) {
    const [ref, , digest] = line.trim().split(/\s+/);
    if (ref && digest) out.set(digest, [...(out.get(digest) ?? []), ref]);
  }
  return out;
}

/** The top layer's snapshot dir of an image, from a short-lived view of it (containerd names no dir for a committed snapshot). */
function topLayerDir(ref: string): string {
  const digest = [...k8sImages()].find(([, names]) => names.includes(ref))?.[0];
  const manifest = parseManifest(execFileSync('ctr', ['-n', 'k8s.io', 'content', 'get', digest!], { encoding: 'utf8' }));
  if (manifest.kind !== 'manifest') throw new Error(`${ref}: not a plain manifest`);
  const chain = chainIds(parseImageConfig(execFileSync('ctr', ['-n', 'k8s.io', 'content', 'get', manifest.config.digest], { encoding: 'utf8' })));
  const key = `nwductrd-view-${process.pid}-${chain.length}-${Date.now()}`;
  // The mounts come back from the one View call (`--mounts`): a view holds no lease, so containerd's
  // garbage collector (scheduled by any removal, ours or a neighbour file's) may drop it before a
  // second `ctr snapshots mounts` could ask (CI: an empty answer).
  const mounts = JSON.parse(execFileSync('ctr', ['-n', 'k8s.io', 'snapshots', 'view', '--mounts', key, chain.at(-1)!], { encoding: 'utf8' })) as Array<{ Type: string; Source: string; Options?: string[] }>;
  ctrTry('-n', 'k8s.io', 'snapshots', 'rm', key);
  // One parent: a bind of DIR/fs; several: overlay's lowerdir=TOP/fs:...
  const text = mounts.map((m) => `${m.Type} ${m.Source} ${(m.Options ?? []).join(',')}`).join('\n');
  const m = /lowerdir=([^:,\s]+)/.exec(text) ?? /^bind (\S+)/m.exec(text);
  if (!m) throw new Error(`${ref}: no snapshot dir in the mounts of a view of ${chain.at(-1)}: ${text}`);
  return m[1]!.replace(/\/fs$/, '');
}

/** Bytes (as `du -b`) of an image's blobs in the content store: its config and top layer's, and its base layer's. */
function blobBytes(ref: string): { own: number; base: number } {
  const digest = [...k8sImages()].find(([, names]) => names.includes(ref))?.[0];
  const manifest = parseManifest(execFileSync('ctr', ['-n', 'k8s.io', 'content', 'get', digest!], { encoding: 'utf8' }));
  if (manifest.kind !== 'manifest') throw new Error(`${ref}: not a plain manifest`);
  const size = (d: { digest: string }) => duOf(`/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/${d.digest.slice(7)}`).apparent;
  return { own: size(manifest.config) + size(manifest.layers.at(-1)!), base: size(manifest.layers[0]!) };
}

t.test("live: on containerd's k8s.io, du splits images into in use, held, pinned and reclaimable, and prune --dry-run frees what du says", async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { commands: ['ctr'] })) return;
  copyToContainerd(ensureTestImage(), 'k8s.io', ['nodewarden-test=du']);
  const LABEL = 'nodewarden-test=du-ctrd';
  const own = { inuse: 'nwductrd/inuse:1', held: 'nwductrd/held:1', unused: 'nwductrd/unused:1', pause: 'nwductrd/pause:3.9' };
  const refs = Object.values(own).map((r) => `docker.io/${r}`);
  const run = `nwductrd-run-${process.pid}`;
  const held = `nwductrd-held-${process.pid}`;
  const cleanup = () => {
    ctrTry('-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', run);
    ctrTry('-n', 'k8s.io', 'task', 'rm', '-f', run);
    for (const c of [run, held]) ctrTry('-n', 'k8s.io', 'containers', 'rm', c);
    // Every name of ours, with the sha256:ID names the CRI adds beside them.
    for (const [, names] of k8sImages()) if (names.some((n) => refs.includes(n))) ctrTry('-n', 'k8s.io', 'images', 'rm', ...names);
    for (const r of Object.values(own)) dockerTry('rmi', '-f', r);
    for (const n of ['nwductrd-c']) removeContainer(n);
  };
  cleanup();
  t.teardown(cleanup);
  // Three images on busybox with a layer of their own each (6, 4, 5 MiB); a pause image of its own content (3 MiB).
  for (const [ref, mib] of [[own.inuse, 6], [own.held, 4], [own.unused, 5]] as const) {
    removeContainer('nwductrd-c');
    runContainer('nwductrd-c', ['dd', 'if=/dev/urandom', 'of=/own', 'bs=1M', `count=${mib}`]);
    docker('wait', 'nwductrd-c');
    docker('commit', 'nwductrd-c', ref);
    removeContainer('nwductrd-c');
  }
  const pauseDir = mkdtempSync(path.join(os.tmpdir(), 'nw-pause-'));
  t.teardown(() => rmSync(pauseDir, { recursive: true, force: true }));
  execFileSync('dd', ['if=/dev/urandom', `of=${pauseDir}/pause`, 'bs=1M', 'count=3'], { stdio: 'ignore' });
  execFileSync(DOCKER, ['import', '-', own.pause], { input: execFileSync('tar', ['-C', pauseDir, '-c', '.'], { maxBuffer: 64 * 1024 * 1024 }) });
  for (const r of Object.values(own)) copyToContainerd(r, 'k8s.io', [LABEL]);
  for (const r of Object.values(own)) dockerTry('rmi', '-f', r); // containerd's copies only: docker's would be rows of their own
  // In use by a running k8s.io container; held by one without a task; the others used by none.
  execFileSync('ctr', ['-n', 'k8s.io', 'run', '-d', '--label', 'io.kubernetes.pod.namespace=nwdu', '--label', 'io.kubernetes.pod.name=ctrd-1', '--label', 'io.kubernetes.container.name=app', `docker.io/${own.inuse}`, run, 'sleep', '600'], { stdio: 'ignore', timeout: 30_000 });
  t.equal(ctrTry('-n', 'k8s.io', 'containers', 'create', `docker.io/${own.held}`, held, 'true').code, 0, 'the held container is created (no task)');
  const dirs = Object.fromEntries(Object.entries(own).map(([k, r]) => [k, topLayerDir(`docker.io/${r}`)])) as Record<keyof typeof own, string>;
  const expected = (k: keyof typeof own) => duOf(dirs[k]).apparent + blobBytes(`docker.io/${own[k]}`).own;

  const r = await runDu(['--json', '--set', 'collectors.disk.eviction.runtimeRootDirs=[/var/lib/containerd]']);
  t.equal(r.code, 0, `du exits 0: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as Fillers;
  t.notOk(out.partial, 'the walk finished');
  const row = (k: keyof typeof own) => out.consumers.filter((c) => c.image === `docker.io/${own[k]}` && c.kind.startsWith('image-'));
  const near3 = (a: number, b: number) => Math.abs(a - b) <= b * 0.03 + 64 * 1024;
  const rows = { inuse: row('inuse'), held: row('held'), unused: row('unused'), pause: row('pause') };
  t.same(Object.values(rows).map((rs) => rs.map((c) => c.kind)), [['image-in-use'], ['image-held'], ['image-reclaimable'], ['image-pinned']], 'one row each: in use, held, reclaimable, pinned');
  for (const k of ['held', 'unused', 'pause'] as const) {
    const got = rows[k][0]?.bytes ?? -1;
    t.ok(near3(got, expected(k)), `${k}: its own layer and blobs, the shared busybox layer not again: ${got} vs du -sb ${expected(k)}`);
  }
  // The busybox base goes to one image in use: this one, or busybox itself where another container runs it.
  const base = duOf(topLayerDir(`docker.io/${TEST_IMAGE}`)).apparent + blobBytes(`docker.io/${own.inuse}`).base;
  const inuse = rows.inuse[0]?.bytes ?? -1;
  t.ok(near3(inuse, expected('inuse')) || near3(inuse, expected('inuse') + base), `in use: its own layer and blobs, with or without the base (${inuse} vs ${expected('inuse')}, base ${base})`);
  t.match(rows.inuse[0], { pod: 'nwdu/ctrd-1', container: 'app' }, 'with the pod of the one container using it');
  const ownDirs = Object.values(dirs);
  t.same(out.consumers.filter((c) => c.kind === 'other' && ownDirs.some((d) => c.path.startsWith(d))), [], 'no layer dir counted again among the rest');
  t.ok(out.consumers.some((c) => c.kind === 'writable-layer' && c.container === 'app'), "the running container's snapshot is its writable layer");

  // prune --dry-run on the same images: the one reclaimable goes, freeing what du said; the others stay, sized alike.
  const host = createHostAccess({ root: '/', exec });
  const rt = new Runtimes(host, { dockerSocket: DOCKER_SOCK, containerdSocket: CONTAINERD_SOCK, containerdNamespaces: ['k8s.io'], timeout: 10_000 });
  t.teardown(() => rt.close());
  const seen: PruneProgress[] = [];
  const result = await prune(rt, { untilMs: 0, dryRun: true, sandboxImages: ['pause'], containerdNamespaces: ['k8s.io'], label: LABEL, host }, (p) => seen.push(p));
  const would = seen.filter((p) => p.state === 'would-remove');
  t.same(would.map((p) => p.image), [`docker.io/${own.unused}`], 'only the unused image would go');
  t.equal(would.reduce((n, p) => n + p.size, 0), rows.unused[0]?.bytes, "the dry run's total is du's reclaimable figure for it");
  const kept = new Map(seen.filter((p) => p.state === 'kept').map((p) => [p.image, p]));
  t.match(kept.get(`docker.io/${own.pause} (containerd/k8s.io)`), { reason: /sandbox/, size: rows.pause[0]?.bytes }, 'the pause image is kept, sized as du counts it');
  t.match(kept.get(`docker.io/${own.held} (containerd/k8s.io)`), { reason: /used by a container/ });
  t.equal(result.removed, 0);
  t.match(ctrTry('-n', 'k8s.io', 'images', 'ls', '-q').stdout, /nwductrd\/unused:1/, 'the dry run removed nothing');
});
