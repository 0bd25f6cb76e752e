import t from 'tap';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configEndpoint, flagValue, flagWords, kubeletRuntime, runtimeEvidence } from '../../../agent/runtime/expected.js';
import { envFor } from '../../helpers/context.js';

t.test("kubelet's runtime endpoint, from its flags and from its config file", async (t) => {
  t.same(kubeletRuntime(['/usr/bin/kubelet', '--container-runtime-endpoint=unix:///run/containerd/containerd.sock'], undefined), { runtime: 'containerd', endpoint: 'unix:///run/containerd/containerd.sock' });
  t.same(kubeletRuntime(['kubelet', '--container-runtime-endpoint', 'unix:///var/run/cri-dockerd.sock'], undefined)?.runtime, 'docker', 'cri-dockerd, flag and value apart');
  t.same(kubeletRuntime(['kubelet', '--container-runtime=docker'], undefined)?.runtime, 'docker', 'the dockershim of kubelets before 1.24');
  t.same(kubeletRuntime(['kubelet', '--container-runtime=remote'], 'containerRuntimeEndpoint: "unix:///run/containerd/containerd.sock"\n')?.runtime, 'containerd', 'the config file (1.27+)');
  t.same(kubeletRuntime(['kubelet', '--container-runtime-endpoint=unix:///run/containerd/containerd.sock'], 'containerRuntimeEndpoint: unix:///run/cri-dockerd.sock')?.runtime, 'containerd', 'flags win over the config file, as in kubelet');
  t.same(configEndpoint('{"kind":"KubeletConfiguration","containerRuntimeEndpoint":"unix:///run/cri-dockerd.sock"}'), 'unix:///run/cri-dockerd.sock', 'JSON config');
  t.equal(kubeletRuntime(['kubelet'], 'kind: KubeletConfiguration\n'), undefined, 'nothing says: no evidence either way');
  t.equal(kubeletRuntime(['kubelet', '--container-runtime-endpoint=unix:///run/crio/crio.sock'], undefined), undefined, 'CRI-O: neither of ours');
  t.same(flagWords('KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock --pod-infra-container-image=pause:3.9"\n'), ['--container-runtime-endpoint=unix:///run/containerd/containerd.sock', '--pod-infra-container-image=pause:3.9'], 'kubeadm-flags.env');
  t.equal(flagValue(['--config', '/a', '--config=/b'], 'config'), '/b', 'the last flag wins');
});

t.test('hostile kubelet files and command lines: never a throw, bounded work', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.string({ maxLength: 200 }), { maxLength: 40 }), fc.option(fc.string({ maxLength: 2000 })), (args, config) => {
      const r = kubeletRuntime(args, config ?? undefined);
      return r === undefined || r.runtime === 'docker' || r.runtime === 'containerd';
    }),
  );
  // A huge file is read only up to its cap: the endpoint past 256 KiB is not seen, and it returns quickly.
  t.equal(configEndpoint(`${'#'.repeat(300 * 1024)}\ncontainerRuntimeEndpoint: unix:///run/cri-dockerd.sock`), undefined, 'past the cap: not read');
  t.equal(flagWords(`${'-'.repeat(2 * 1024 * 1024)}`).length, 1, 'a 2 MiB flag file is cut to the cap');
});

t.test('evidence on a host tree: an empty docker data root is not evidence; containers in it, or kubelet naming docker, are', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-evidence-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'proc'));
  writeFileSync(path.join(root, 'proc/uptime'), '100.0 50.0\n');
  mkdirSync(path.join(root, 'var/lib/docker/containers'), { recursive: true });
  const { host } = envFor(root);
  t.equal(await runtimeEvidence(host, 'docker', '/var/lib/docker'), undefined, 'docker installed once: an empty data root');
  t.equal(await runtimeEvidence(host, 'containerd', '/var/lib/containerd'), undefined, 'no containerd data root');
  // kubelet's running process names its runtime (a fake /proc entry: comm and cmdline).
  mkdirSync(path.join(root, 'proc/4242'));
  writeFileSync(path.join(root, 'proc/4242/comm'), 'kubelet\n');
  writeFileSync(path.join(root, 'proc/4242/cmdline'), ['/usr/bin/kubelet', '--config=/etc/kubelet.yaml', ''].join('\0'));
  mkdirSync(path.join(root, 'etc'), { recursive: true });
  writeFileSync(path.join(root, 'etc/kubelet.yaml'), 'containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n');
  t.match(await runtimeEvidence(host, 'containerd', '/var/lib/containerd'), /kubelet's runtime endpoint is unix:\/\/\/run\/containerd\/containerd.sock/, "kubelet's --config names containerd");
  t.equal(await runtimeEvidence(host, 'docker', '/var/lib/docker'), undefined, 'and not docker');
  mkdirSync(path.join(root, 'var/lib/docker/containers', 'a'.repeat(64)));
  t.match(await runtimeEvidence(host, 'docker', '/var/lib/docker'), /holds 1 container/, 'a container in the data root is evidence');
});
