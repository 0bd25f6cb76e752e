// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { canonicalRepository, configuredSandboxes, hasLabel, isSandbox, parseContainerdSandbox, parseKubeletSandbox, prune, repository, sandboxReason } from '../../../agent/actions/prune.js';
import { createHostAccess } from '../../../agent/host/access.js';
import { exec } from '../../../agent/host/exec.js';
import type { Runtimes } from '../../../agent/runtime/model.js';
import type { PruneProgress } from '../../../protocol/wire.js';
import { envFor } from '../../helpers/context.js';
import { copyToContainerd, ctrTry, dockerTry, makeLabelledImage, requireRuntime } from '../../helpers/runtime.js';

t.test('the pause image under any registry and naming is a sandbox image; look-alikes are not', async (t) => {
  for (const ref of ['pause:3.9', 'registry.k8s.io/pause:3.10', 'k8s.gcr.io/pause-amd64:3.1', 'rancher/mirrored-pause:3.6', 'docker.io/rancher/mirrored-pause:3.6', 'gcr.io/google_containers/pause-arm64:3.0', 'mcr.microsoft.com/oss/kubernetes/pause:3.9', '602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.5', 'localhost:5000/pause', 'registry.k8s.io/pause@sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097']) {
    t.ok(isSandbox([ref], []), ref);
  }
  for (const ref of ['example.com/paused-app:1', 'nginx:1.25', 'pauser:1', 'team/pause-menu-game/server:1']) t.notOk(isSandbox([ref], []), `${ref} is not`);
  const configured = [{ ref: 'registry.example.com/infra/sandbox:1.0', source: 'sandbox image in /etc/containerd/config.toml' }];
  t.equal(sandboxReason(['registry.example.com/infra/sandbox:2.0'], [], configured), "the node's sandbox image (sandbox image in /etc/containerd/config.toml)", 'the configured one, whatever its name, every tag');
});

t.test("containerd's sandbox_image and kubelet's --pod-infra-container-image are read under --host-root", async (t) => {
  t.same(parseContainerdSandbox('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.8"\n'), ['registry.k8s.io/pause:3.8']);
  t.same(parseContainerdSandbox("version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'registry.k8s.io/pause:3.10'\n"), ['registry.k8s.io/pause:3.10'], 'containerd 2.x');
  t.same(parseContainerdSandbox('# sandbox_image = "commented:1"\n'), []);
  t.same(parseKubeletSandbox('KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9"'), ['registry.k8s.io/pause:3.9']);
  t.same(parseKubeletSandbox('/usr/bin/kubelet\0--pod-infra-container-image\0my.registry/infra/pod:1\0'), ['my.registry/infra/pod:1'], 'a command line, flag and value apart');
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-sandbox-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'etc/containerd'), { recursive: true });
  mkdirSync(path.join(root, 'var/lib/kubelet'), { recursive: true });
  writeFileSync(path.join(root, 'etc/containerd/config.toml'), '[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "mirror.example/k8s/infra-sandbox:3.9"\n');
  writeFileSync(path.join(root, 'var/lib/kubelet/kubeadm-flags.env'), 'KUBELET_KUBEADM_ARGS="--pod-infra-container-image=mirror.example/k8s/kubelet-sandbox:3.9"\n');
  const found = await configuredSandboxes(createHostAccess({ root, exec }));
  t.same(found, [
    { ref: 'mirror.example/k8s/infra-sandbox:3.9', source: 'sandbox image in /etc/containerd/config.toml' },
    { ref: 'mirror.example/k8s/kubelet-sandbox:3.9', source: "kubelet's --pod-infra-container-image in /var/lib/kubelet/kubeadm-flags.env" },
  ], 'a host root without /proc: the files still count');
});

t.test('names, sandbox images, label selectors', async (t) => {
  t.equal(repository('registry.k8s.io/pause:3.9'), 'registry.k8s.io/pause');
  t.equal(repository('localhost:5000/app@sha256:abc'), 'localhost:5000/app');
  t.equal(repository('localhost:5000/app'), 'localhost:5000/app', 'a registry port is not a tag');
  t.ok(isSandbox(['registry.k8s.io/pause:3.9'], ['pause']));
  t.ok(isSandbox(['pause:3.1'], ['pause']));
  t.notOk(isSandbox(['example.com/paused-app:1'], ['pause']));
  t.equal(canonicalRepository('docker.io/library/pause:3.9'), 'pause');
  t.equal(canonicalRepository('registry.k8s.io/pause@sha256:abc'), 'registry.k8s.io/pause');
  t.ok(hasLabel({ a: '1' }, 'a'));
  t.ok(hasLabel({ a: '1' }, 'a=1'));
  t.notOk(hasLabel({ a: '1' }, 'a=2'));
  t.ok(hasLabel(null, ''));
});

const DOCKER_IMAGES = ['nwprune/old:1', 'nwprune/used:1', 'nwprune/pause:3.9', 'nwprune/pinned:1', 'k8s.gcr.io/pause-amd64:3.1', 'rancher/mirrored-pause:3.6', 'nwprune/infra-sandbox:1', 'nwprune/new:1'];
const OLD_IMAGES = DOCKER_IMAGES.slice(0, -1);

t.test('live: prune through the Docker Engine API and containerd: only the old unused image goes', async (t) => {
  if (!requireRuntime(t)) return;
  const cleanup = () => {
    dockerTry('rm', '-f', 'nwprune-c');
    ctrTry('-n', 'k8s.io', 'containers', 'rm', 'nwprune-c');
    for (const img of DOCKER_IMAGES) {
      dockerTry('rmi', '-f', img);
      ctrTry('-n', 'k8s.io', 'images', 'rm', `docker.io/${img}`, img);
    }
  };
  cleanup();
  t.teardown(cleanup);
  const ids: Record<string, string> = {};
  for (const img of OLD_IMAGES) ids[img] = makeLabelledImage(img);
  for (const img of OLD_IMAGES) copyToContainerd(img, 'k8s.io', img === 'nwprune/pinned:1' ? ['nodewarden-test=prune', 'io.cri-containerd.pinned=pinned'] : ['nodewarden-test=prune']);
  // The used image: a stopped docker container, and a containerd container without a task.
  t.equal(dockerTry('create', '--network', 'none', '--name', 'nwprune-c', 'nwprune/used:1', '/id.txt').code, 0);
  t.equal(ctrTry('-n', 'k8s.io', 'containers', 'create', 'docker.io/nwprune/used:1', 'nwprune-c', '/id.txt').code, 0);
  // The old images are made 6 s before the new one, and --until falls halfway between them at each
  // prune (untilMs taken again right before it): 3 s on either side however long the dry run took.
  // A fixed --until of 4 s after the new image failed once here under a loaded full run (the dry run and
  // the copy into containerd took more than 4 s, so the new image was old enough to go).
  const oldMadeBy = Date.now();
  await new Promise((r) => setTimeout(r, 6000));
  const newMadeAt = Date.now();
  ids['nwprune/new:1'] = makeLabelledImage('nwprune/new:1');
  copyToContainerd('nwprune/new:1');
  const cutoff = (oldMadeBy + newMadeAt) / 2;

  const env = envFor('/');
  // The node's configured sandbox image, read from a containerd config.toml as the agent reads it.
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-prune-root-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'etc/containerd'), { recursive: true });
  writeFileSync(path.join(root, 'etc/containerd/config.toml'), '[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "docker.io/nwprune/infra-sandbox:1"\n');
  const configured = await configuredSandboxes(createHostAccess({ root, exec }));
  const opts = { untilMs: 0, sandboxImages: [], configuredSandboxes: configured, containerdNamespaces: ['k8s.io'], label: 'nodewarden-test=prune' };
  const all: PruneProgress[] = [];
  const dryResult = await prune(env.runtime as Runtimes, { ...opts, untilMs: Date.now() - cutoff, dryRun: true }, (p) => all.push(p));
  const dry = all.filter((p) => p.state !== 'kept');
  const kept = new Map(all.filter((p) => p.state === 'kept').map((p) => [p.image, p.reason]));
  for (const [image, reason] of [
    ['k8s.gcr.io/pause-amd64:3.1', /sandbox \(pause\) image/],
    ['rancher/mirrored-pause:3.6', /sandbox \(pause\) image/],
    ['nwprune/pause:3.9', /sandbox \(pause\) image/],
    ['nwprune/infra-sandbox:1', /the node's sandbox image \(sandbox image in \/etc\/containerd\/config.toml\)/],
    ['nwprune/used:1', /used by a container/],
    ['nwprune/new:1', /newer than --until/],
    ['docker.io/nwprune/pinned:1 (containerd/k8s.io)', /pinned by the CRI/],
    ['docker.io/rancher/mirrored-pause:3.6 (containerd/k8s.io)', /sandbox/],
  ] as const) t.match(kept.get(image), reason, `kept ${image}, and says why`);
  t.equal(dryResult.kept, kept.size, 'the result counts what the list shows');
  // Pinning is the CRI's (containerd's) idea: docker has no pinned images, so its old unused copy goes.
  const expected = (state: string) => [['docker.io/nwprune/old:1', state], ['nwprune/old:1', state], ['nwprune/pinned:1', state]];
  t.same(dry.map((p) => [p.image, p.state]).sort(), expected('would-remove'), 'dry run lists the old unused images; not the used, newer, pause, configured sandbox or (in containerd) pinned ones');
  t.equal(dryResult.removed, 0);
  t.ok(dry.every((p) => p.size > 0), 'with sizes');
  // A kept containerd image is sized as a removed one is (config + layers), not by its manifest (422 B).
  const pinned = all.find((p) => p.image === 'docker.io/nwprune/pinned:1 (containerd/k8s.io)');
  t.ok(pinned && pinned.size > 1000, `kept containerd image sized by its config and layers: ${pinned?.size} bytes, not its manifest's few hundred`);
  for (const img of DOCKER_IMAGES) t.equal(dockerTry('image', 'inspect', img).code, 0, `dry run removed nothing: ${img} is still there`);
  t.match(ctrTry('-n', 'k8s.io', 'images', 'ls', '-q').stdout, /nwprune\/old:1/);

  const real: PruneProgress[] = [];
  const result = await prune(env.runtime as Runtimes, { ...opts, untilMs: Date.now() - cutoff, dryRun: false }, (p) => p.state !== 'kept' && real.push(p));
  t.same(real.map((p) => [p.image, p.state]).sort(), expected('removed'));
  t.equal(result.ok, true, result.errors.join('; '));
  t.equal(result.removed, 3);
  t.ok(result.bytes > 0);
  t.match(result.runtime, /docker/);
  t.match(result.runtime, /containerd\/k8s.io/);
  t.not(dockerTry('image', 'inspect', 'nwprune/old:1').code, 0, 'old unused image gone from docker');
  const ctrImages = ctrTry('-n', 'k8s.io', 'images', 'ls', '-q').stdout;
  t.notMatch(ctrImages, /nwprune\/old:1/, 'and from containerd');
  for (const keep of ['nwprune/used:1', 'nwprune/pause:3.9', 'k8s.gcr.io/pause-amd64:3.1', 'rancher/mirrored-pause:3.6', 'nwprune/infra-sandbox:1', 'nwprune/new:1']) {
    t.equal(dockerTry('image', 'inspect', keep).code, 0, `docker kept ${keep}`);
    t.match(ctrImages, new RegExp(keep.replace(/[./]/g, '\\$&')), `containerd kept ${keep}`);
  }
  t.match(ctrImages, /nwprune\/pinned:1/, 'containerd kept the pinned image');
});
