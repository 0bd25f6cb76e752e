// The pure runtime join: over the docker JSON and containerd replies captured on a Kubernetes-like node
// (test/fixtures/runtime/k8s-node, with its host tree in test/fixtures/host/k8s-node), and odd cases.
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { RuntimeState } from '../../../collectors/types.js';
import { parseMountinfo } from '../../../collectors/common/mountinfo.js';
import type { ContainerdContainer, ContainerdTask } from '../../../agent/runtime/containerd.js';
import type { DockerContainerInspect, DockerContainerSummary } from '../../../agent/runtime/docker.js';
import { containerdOwn, joinRuntimes, overlayDirs, snapshotDirsFromMounts, snapshotKeyOf, workloadFromLabels, type ContainerdReplies, type DockerReplies, type SnapshotDirs } from '../../../agent/runtime/join.js';

const RUNTIME = 'test/fixtures/runtime/k8s-node';
const HOST = 'test/fixtures/host/k8s-node';
const json = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;

function capturedDocker(): DockerReplies {
  const list = json<DockerContainerSummary[]>(path.join(RUNTIME, 'docker-containers.json'));
  const inspected = new Map<string, DockerContainerInspect>();
  for (const f of readdirSync(RUNTIME).filter((n) => n.startsWith('docker-inspect-'))) {
    const ins = json<DockerContainerInspect>(path.join(RUNTIME, f));
    inspected.set(ins.Id, ins);
  }
  return { list, inspected };
}

function capturedContainerd(): ContainerdReplies {
  const d = json<{ containers: ContainerdContainer[]; tasks: ContainerdTask[] }>(path.join(RUNTIME, 'containerd-decoded.json'));
  return new Map([['k8s.io', { containers: d.containers, tasks: d.tasks }]]);
}

/** The snapshot dirs as the kernel shows them mounted at each task's rootfs on the captured node. */
function capturedSnapshotDirs(containerd: ContainerdReplies): Map<string, SnapshotDirs> {
  const mounts = parseMountinfo(readFileSync(path.join(HOST, 'proc/1/mountinfo')));
  const out = new Map<string, SnapshotDirs>();
  for (const [ns, { containers }] of containerd) {
    for (const c of containers) {
      const m = mounts.find((x) => x.fsType === 'overlay' && x.mountPoint.endsWith(`/${ns}/${c.id}/rootfs`));
      const key = snapshotKeyOf(ns, c);
      if (m && key) out.set(key, overlayDirs(m.superOptions));
    }
  }
  return out;
}

const state = (name: RuntimeState['name'], status: RuntimeState['status']): RuntimeState => ({ name, socket: `/run/${name}.sock`, status });

t.test('overlay options, snapshot mounts and Kubernetes labels', async (t) => {
  t.same(overlayDirs(['index=off', 'workdir=/w', 'upperdir=/u', 'lowerdir=/l1:/l2']), { upperDir: '/u', lowerDirs: ['/l1', '/l2'] });
  t.same(workloadFromLabels('abc', 'k8s_app_web', { 'io.kubernetes.pod.name': 'web-1', 'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.container.name': 'app', 'io.kubernetes.pod.uid': 'u1' }), {
    containerId: 'abc', containerName: 'app', pod: 'web-1', namespace: 'shop', podUid: 'u1',
  });
  t.same(snapshotDirsFromMounts([{ type: 'bind', source: '/s/1/fs', options: ['rbind', 'rw'] }]), { upperDir: '/s/1/fs' }, 'native snapshotter: a bind mount');
  t.same(snapshotDirsFromMounts([{ type: 'tmpfs', source: 'x', options: [] }, { type: 'overlay', source: 'overlay', options: ['upperdir=/u'] }]), { upperDir: '/u' });
  t.same(snapshotDirsFromMounts([]), {});
  t.equal(snapshotKeyOf('k8s.io', { id: 'a', labels: {}, image: 'i', snapshotter: '', snapshotKey: '' }), undefined, 'a container with no snapshot');
});

t.test('captured Kubernetes node: CRI containers joined to their tasks, pids, pod labels and rootfs mounts', async (t) => {
  const docker = capturedDocker();
  const containerd = capturedContainerd();
  const { containers, stale } = joinRuntimes({ docker, containerd, snapshotDirs: capturedSnapshotDirs(containerd) });
  t.equal(stale, undefined, 'both answered: nothing is stale');
  t.same(
    containers.map((c) => [c.manager, c.namespace, c.id.slice(0, 12)]),
    [
      ...docker.list.map((c) => ['docker', 'moby', c.Id.slice(0, 12)]),
      ['containerd', 'k8s.io', '5b1e0c9d7f3a'],
      ['containerd', 'k8s.io', '9a0b1c2d3e4f'],
      ['containerd', 'k8s.io', 'c7d2e94f0a1b'],
    ],
    "docker's containers in its list's order, then containerd's own",
  );
  const mountinfo = readFileSync(path.join(HOST, 'proc/1/mountinfo'), 'utf8');
  const cri = containers.filter((c) => c.manager === 'containerd');
  for (const c of cri) {
    const pid = c.containerd?.task?.pid;
    t.equal(c.containerd?.task?.status, 'RUNNING', `${c.name}: its task runs`);
    // The pid the join gives is the process whose cgroup kubelet made for this pod and container.
    const cgroup = readFileSync(path.join(HOST, `proc/${pid}/cgroup`), 'utf8');
    t.match(cgroup, `/pod${c.workload.podUid}/${c.id}`, `${c.name}: pid ${pid} is in its pod's cgroup`);
    t.match(mountinfo, ` ${c.storage.mergedDir} `, `${c.name}: its rootfs is mounted where the join says`);
    t.match(c.storage.upperDir, /io\.containerd\.snapshotter\.v1\.overlayfs\/snapshots\/\d+\/fs$/);
  }
  const web = cri.find((c) => c.name === 'web');
  t.same(web?.workload, { containerId: web?.id, containerName: 'web', pod: 'web-7d9f8c6b5-x2k4p', namespace: 'shop', podUid: '3f1c9a52-7d4e-4b8a-9e21-5c6d0f8b1a77' });
  t.same(web?.containerd, { known: true, task: { status: 'RUNNING', pid: 2367, exitStatus: 0 } });
  t.equal(web?.image, 'docker.io/nodewarden-test/busybox:1');
  const coredns = cri.find((c) => c.name === 'coredns');
  t.same([coredns?.workload.pod, coredns?.workload.namespace, coredns?.containerd?.task?.pid], ['coredns-5d78c9869d-qv7fz', 'kube-system', 2418]);
  const sandbox = cri.find((c) => c.labels['io.cri-containerd.kind'] === 'sandbox');
  t.same(
    [sandbox?.name, sandbox?.workload.pod, sandbox?.workload.containerName, sandbox?.containerd?.task?.pid],
    [sandbox?.id, 'web-7d9f8c6b5-x2k4p', sandbox?.id, 2316],
    'the sandbox has no container name: it is named by its id, and belongs to its pod',
  );
  t.not(web?.storage.upperDir, sandbox?.storage.upperDir, 'each container has its own writable layer');

  const held = containers.find((c) => c.name === 'nw-dbg-held');
  t.same(held?.docker && [held.docker.status, held.docker.running, held.docker.pid, held.docker.exitCode], ['exited', false, 0, 137]);
  t.same(held?.workload, { containerId: held?.id, containerName: 'nw-dbg-held', podUid: 'dbg' });
  t.equal(held?.storage.containerDir, `/var/lib/docker/containers/${held?.id}`);
  t.match(held?.storage.upperDir, /^\/var\/lib\/docker\/overlay2\/[0-9a-f]{64}\/diff$/);
  t.same(held?.storage.lowerDirs?.length, 2);
  t.same(held?.containerd, { known: false }, 'an exited docker container has no twin in moby (moby was not read here)');
  const created = containers.find((c) => c.docker?.status === 'created');
  t.same([created?.docker?.startedAt, created?.docker?.finishedAt], [undefined, undefined], "docker's zero time 0001-01-01 is no time");
});

// Hand-made replies for the odd cases.
const inspect = (id: string, state: Partial<DockerContainerInspect['State']>, labels: Record<string, string> = {}): DockerContainerInspect => ({
  Id: id,
  Name: `/${id}-name`,
  Image: 'sha256:img',
  HostnamePath: `/var/lib/docker/containers/${id}/hostname`,
  State: { Status: 'running', Running: true, Paused: false, Restarting: false, Dead: false, Pid: 100, ExitCode: 0, Error: '', StartedAt: '2026-12-01T00:00:00Z', FinishedAt: '0001-01-01T00:00:00Z', ...state },
  Config: { Image: 'busybox', Labels: labels },
  GraphDriver: { Name: 'overlay2', Data: { UpperDir: `/var/lib/docker/overlay2/${id}/diff`, MergedDir: `/var/lib/docker/overlay2/${id}/merged` } },
});
const summary = (id: string): DockerContainerSummary => ({ Id: id, Names: [`/${id}-name`], Image: 'busybox', ImageID: 'sha256:img', State: 'running', Status: 'Up', Labels: {}, Created: 0 });
const dockerOf = (...ins: DockerContainerInspect[]): DockerReplies => ({ list: ins.map((i) => summary(i.Id)), inspected: new Map(ins.map((i) => [i.Id, i])) });
const ctr = (id: string, labels: Record<string, string> = {}): ContainerdContainer => ({ id, labels, image: 'busybox', snapshotter: 'overlayfs', snapshotKey: id });
const task = (id: string, pid: number, status: ContainerdTask['status'] = 'RUNNING'): ContainerdTask => ({ containerId: id, pid, status, exitStatus: 0 });

t.test('docker and its moby twins: the task by id, a docker container containerd does not know, one it alone knows', async (t) => {
  const docker = dockerOf(inspect('twin', { Pid: 100 }), inspect('lonely', { Pid: 200 }), inspect('taskonly', { Pid: 300 }));
  const containerd: ContainerdReplies = new Map([
    ['moby', { containers: [ctr('twin'), ctr('mobyonly')], tasks: [task('twin', 100), task('taskonly', 300), task('mobyonly', 400)] }],
    ['k8s.io', { containers: [], tasks: [task('ghost', 500)] }],
  ]);
  const { containers } = joinRuntimes({ docker, containerd, snapshotDirs: new Map() });
  const by = (id: string) => containers.find((c) => c.id === id);
  t.same(by('twin')?.containerd, { known: true, task: { status: 'RUNNING', pid: 100, exitStatus: 0 } });
  t.same(by('lonely')?.containerd, { known: false }, 'docker says running, containerd has neither container nor task: drift will see it');
  t.same(by('taskonly')?.containerd, { known: false, task: { status: 'RUNNING', pid: 300, exitStatus: 0 } }, 'a task with no container record still belongs to its docker container');
  t.same([by('mobyonly')?.manager, by('mobyonly')?.namespace, by('mobyonly')?.containerd?.task?.pid], ['containerd', 'moby', 400], 'a moby container docker does not list is containerd’s own');
  t.equal(by('ghost'), undefined, 'a task whose container containerd does not list is no container');
  t.same(containers.map((c) => c.id), ['twin', 'lonely', 'taskonly', 'mobyonly']);
  t.same(
    containerdOwn(docker, containerd).map((e) => `${e.ns}/${e.container.id}`),
    ['moby/mobyonly'],
    "only containerd's own containers need their snapshot mounts asked (docker's twins have docker's dirs)",
  );
});

t.test('restart back-off: docker says Running with pid 0, and nothing runs', async (t) => {
  const docker = dockerOf(inspect('crashloop', { Status: 'restarting', Running: true, Restarting: true, Pid: 0, ExitCode: 1, FinishedAt: '2026-12-01T00:01:00Z' }));
  const [c] = joinRuntimes({ docker, containerd: new Map([['moby', { containers: [ctr('crashloop')], tasks: [task('crashloop', 0, 'STOPPED')] }]]), snapshotDirs: new Map() }).containers;
  t.same(c?.docker, { status: 'restarting', running: false, pid: 0, dead: false, removing: false, restarting: true, error: '', exitCode: 1, startedAt: '2026-12-01T00:00:00Z', finishedAt: '2026-12-01T00:01:00Z' });
  t.equal(c?.containerd?.task?.status, 'STOPPED');
});

t.test('a container removed between list and inspect is left out', async (t) => {
  const docker: DockerReplies = { list: [summary('gone'), summary('here')], inspected: new Map([['here', inspect('here', {})]]) };
  const { containers } = joinRuntimes({ docker, containerd: state('containerd', 'absent'), snapshotDirs: new Map() });
  t.same(containers.map((c) => c.id), ['here']);
  t.equal(containers[0]?.containerd, undefined, 'containerd absent: no containerd view at all (not "unknown to containerd")');
});

t.test('a side that did not answer: its last known containers, marked stale, never in place of fresh ones', async (t) => {
  const lastDocker = joinRuntimes({ docker: dockerOf(inspect('a', {}), inspect('b', {})), containerd: state('containerd', 'absent'), snapshotDirs: new Map() }).containers;
  const cri = new Map([['k8s.io', { containers: [ctr('pod-c', { 'io.kubernetes.pod.name': 'p' })], tasks: [task('pod-c', 700)] }], ['moby', { containers: [ctr('a')], tasks: [task('a', 100)] }]]);
  const snapshotDirs = new Map([['k8s.io/overlayfs/pod-c', { upperDir: '/snap/9/fs' }]]);

  const frozenDocker = joinRuntimes({ docker: state('docker', 'unresponsive'), containerd: cri, snapshotDirs, lastKnown: { docker: lastDocker } });
  t.same(frozenDocker.stale, ['docker']);
  t.same(frozenDocker.containers.map((c) => [c.id, c.manager]), [['pod-c', 'containerd'], ['a', 'docker'], ['b', 'docker']], "containerd's fresh CRI container, then docker's last known; moby's twin is not claimed while docker cannot tell");
  t.equal(frozenDocker.containers[0]?.storage.upperDir, '/snap/9/fs');
  t.equal(frozenDocker.containers[1], lastDocker[0], 'the last known container as it was (its state is not judged)');

  const lastCri = frozenDocker.containers.filter((c) => c.manager === 'containerd');
  const frozenContainerd = joinRuntimes({ docker: dockerOf(inspect('a', {})), containerd: state('containerd', 'down'), snapshotDirs: new Map(), lastKnown: { docker: lastDocker, containerd: lastCri } });
  t.same(frozenContainerd.stale, ['containerd']);
  t.same(frozenContainerd.containers.map((c) => c.id), ['a', 'pod-c'], 'fresh docker (b is gone), then containerd’s last known');
  t.equal(frozenContainerd.containers[0]?.containerd, undefined, 'no containerd view for a docker container while containerd does not answer');

  const bothFrozen = joinRuntimes({ docker: state('docker', 'unresponsive'), containerd: state('containerd', 'error'), snapshotDirs: new Map(), lastKnown: { docker: [lastDocker[0]!], containerd: [lastDocker[0]!, ...lastCri] } });
  t.same(bothFrozen.stale, ['docker', 'containerd']);
  t.same(bothFrozen.containers.map((c) => c.id), ['a', 'pod-c'], 'each id once');

  const absent = joinRuntimes({ docker: state('docker', 'absent'), containerd: state('containerd', 'unresponsive'), snapshotDirs: new Map(), lastKnown: { docker: lastDocker } });
  t.same([absent.stale, absent.containers], [undefined, []], 'an absent runtime has nothing stale; one never seen answering has no last known');
});

t.test('any replies: each inspected docker container once, a stale side never hides or duplicates a fresh one', async (t) => {
  const fc = (await import('fast-check')).default;
  const id = fc.constantFrom('a', 'b', 'c', 'd', 'e');
  const statuses = fc.constantFrom<RuntimeState['status']>('unresponsive', 'down', 'error', 'absent');
  fc.assert(
    fc.property(
      fc.uniqueArray(id),
      fc.uniqueArray(id),
      fc.uniqueArray(id),
      fc.array(id),
      fc.option(statuses, { nil: undefined }),
      fc.uniqueArray(id),
      (dockerIds, mobyIds, criIds, taskIds, dockerDown, lastIds) => {
        const docker = dockerDown ? state('docker', dockerDown) : dockerOf(...dockerIds.map((i) => inspect(i, {})));
        const containerd: ContainerdReplies = new Map([
          ['moby', { containers: mobyIds.map((i) => ctr(i)), tasks: taskIds.map((i) => task(i, 1)) }],
          ['k8s.io', { containers: criIds.map((i) => ctr(`k-${i}`)), tasks: [] }],
        ]);
        const last = lastIds.map((i) => ({ ...joinRuntimes({ docker: dockerOf(inspect(i, {})), containerd, snapshotDirs: new Map() }).containers[0]! }));
        const { containers, stale } = joinRuntimes({ docker, containerd, snapshotDirs: new Map(), lastKnown: { docker: last } });
        const ids = containers.map((c) => c.id);
        if (new Set(ids).size !== ids.length) return false;
        if (!dockerDown) return dockerIds.every((i) => containers.some((c) => c.id === i && c.manager === 'docker')) && stale === undefined;
        const isStale = dockerDown !== 'absent';
        return criIds.every((i) => ids.includes(`k-${i}`)) && (stale !== undefined) === isStale && lastIds.every((i) => ids.includes(i) === isStale);
      },
    ),
  );
  t.pass('property held');
});
