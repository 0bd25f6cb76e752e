// Parsers and the disk collector over the second captured tree: a Kubernetes node made for real on the
// test VM by test/fixtures/k8s/make-k8s-node.sh (kubelet's root dir with tmpfs-mounted token and secret
// volumes, containerd's k8s.io containers in kubepods cgroups, cgroupfs driver).
import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parseMountinfo } from '../../collectors/common/mountinfo.js';
import { parseCgroupContainer } from '../../collectors/common/process.js';
import { disk } from '../../collectors/disk.js';
import { contextFor } from '../helpers/context.js';

const ROOT = 'test/fixtures/host/k8s-node';
const WEB = { uid: '3f1c9a52-7d4e-4b8a-9e21-5c6d0f8b1a77', name: 'web-7d9f8c6b5-x2k4p' };
const COREDNS = { uid: '8e2b4c10-1a3f-4d5e-8b7c-2f9e6a4d3c11', name: 'coredns-5d78c9869d-qv7fz' };
const WEB_CONTAINER = '5b1e0c9d7f3a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b2c';
const WEB_SANDBOX = '9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b';
const COREDNS_CONTAINER = 'c7d2e94f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d';

t.test("mountinfo: kubelet's volume mounts are tmpfs under pods/UID/volumes, with ~ in the plugin name", async (t) => {
  const mounts = parseMountinfo(readFileSync(path.join(ROOT, 'proc/1/mountinfo')));
  const volumes = mounts.filter((m) => m.mountPoint.startsWith('/var/lib/kubelet/pods/'));
  t.same(
    volumes.map((m) => [m.mountPoint.split('/')[5], m.mountPoint.split('/').slice(7).join('/'), m.fsType]).sort(),
    [
      [WEB.uid, 'kubernetes.io~projected/kube-api-access-h8q2n', 'tmpfs'],
      [COREDNS.uid, 'kubernetes.io~projected/kube-api-access-9w2rs', 'tmpfs'],
      [COREDNS.uid, 'kubernetes.io~secret/coredns-tls', 'tmpfs'],
    ].sort(),
  );
  t.ok(mounts.find((m) => m.mountPoint === '/'), 'the root filesystem is there too');
});

t.test('cgroups: each pod process maps to its 64-hex container id and its pod uid', async (t) => {
  const refs = readdirSync(path.join(ROOT, 'proc'))
    .filter((p) => /^\d+$/.test(p) && existsSync(path.join(ROOT, 'proc', p, 'cgroup')))
    .map((p) => parseCgroupContainer(readFileSync(path.join(ROOT, 'proc', p, 'cgroup'), 'utf8')))
    .map((r) => r && { id: r.containerId, pod: r.podUid })
    .sort((a, b) => String(a?.id).localeCompare(String(b?.id)));
  t.same(refs, [
    { id: WEB_CONTAINER, pod: WEB.uid },
    { id: WEB_SANDBOX, pod: WEB.uid },
    { id: COREDNS_CONTAINER, pod: COREDNS.uid },
  ]);
});

t.test('eviction over the captured node: kubelet is found, and only the BestEffort pod is named, by name', async (t) => {
  // Thresholds no real disk passes, so the finding appears whatever the disk under the fixture holds.
  const sets = ['collectors.disk.eviction.nodefsAvailable=99', 'collectors.disk.eviction.margin=0', 'collectors.disk.eviction.runtimeRootDirs=[/var/lib/containerd]'];
  const r = await disk.collect(contextFor(disk, ROOT, { sets }));
  t.equal(r.kind, 'ok');
  const ev = r.kind === 'ok' ? r.observations.filter((o) => o.check === 'disk.eviction') : [];
  t.equal(ev.length, 1, 'one eviction finding, for the filesystem holding /var/lib/kubelet');
  t.equal(ev[0]?.severity, 'critical');
  t.match(ev[0]?.message, new RegExp(`BestEffort pods go first: ${WEB.name}\\.`));
  t.notMatch(ev[0]?.message, COREDNS.name, 'the Burstable pod is not listed as going first');
  t.same((ev[0]?.evidence as { bestEffortPods: unknown }).bestEffortPods, [{ uid: WEB.uid, name: WEB.name }]);
});

t.test('without the kubepods tree or the kubelet dir, the same thresholds raise no eviction finding', async (t) => {
  const sets = ['collectors.disk.eviction.nodefsAvailable=99', 'collectors.disk.eviction.margin=0', 'collectors.disk.eviction.kubeletRootDir=/var/lib/no-kubelet'];
  const r = await disk.collect(contextFor(disk, 'test/fixtures/host/debian12-vm', { sets }));
  t.equal(r.kind, 'ok');
  t.same(r.kind === 'ok' ? r.observations.filter((o) => o.check === 'disk.eviction') : ['?'], []);
});
