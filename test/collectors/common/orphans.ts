import t from 'tap';
import fc from 'fast-check';
import { cgroupIdOf, evaluateOrphan, findOrphans, holdingsOf, isRuncInit, orphanFacts, shimOf, type Known, type ProcessInfo } from '../../../collectors/common/orphans.js';
import { parseMountinfo } from '../../../collectors/common/mountinfo.js';

const ID = 'a'.repeat(64);
const known = (over: Partial<Known> = {}): Known => ({ ids: new Set(), containerdKeys: new Set(), taskPids: new Set(), namespaces: new Set(['moby', 'k8s.io']), ...over });
const p = (over: Partial<ProcessInfo> & { pid: number }): ProcessInfo => ({ ppid: 1, comm: 'sleep', ageS: 3600, startTicks: 1000 + over.pid, ...over });
const init = (pid: number, over: Partial<ProcessInfo> = {}) => p({ pid, comm: 'runc:[2:INIT]', args: ['runc', 'init'], cgroupId: ID, ...over });
const shim = (pid: number, ns = 'moby', id = ID) => p({ pid, comm: 'containerd-shim', args: ['/usr/bin/containerd-shim-runc-v2', '-namespace', ns, '-id', id, '-address', '/run/containerd/containerd.sock'] });

t.test('which processes are runc init and shims', async (t) => {
  t.ok(isRuncInit({ comm: 'runc:[2:INIT]' }), "nsexec's last stage");
  t.ok(isRuncInit({ comm: 'runc', args: ['/usr/sbin/runc', 'init'] }), 'runc init before nsexec renames it');
  t.notOk(isRuncInit({ comm: 'runc', args: ['runc', '--root', '/run/runc', 'create', 'x'] }), 'runc create is not init');
  t.same(shimOf(shim(5)), { namespace: 'moby', id: ID });
  t.equal(shimOf(p({ pid: 6, comm: 'containerd-shim', args: ['containerd-shim-runc-v2', '-namespace', 'moby', '-id', ID, '-address', '/x', 'start'] })), undefined, 'the short-lived start invocation');
  t.equal(cgroupIdOf(`0::/system.slice/docker-${ID}.scope\n`), ID);
  t.equal(cgroupIdOf('4:memory:/nw-orphans/nw-orphan-1\n0::/nw-orphans/nw-orphan-1\n'), 'nw-orphan-1', 'a name that is not hex: the last component');
});

t.test('orphans: parent 1 and unknown to both runtimes, past the minimum age; the normal setup of a container is not', async (t) => {
  t.same(findOrphans([init(100)], known(), 60).map((o) => [o.subject, o.runcInits.map((x) => x.pid)]), [[ID, [100]]], 'the leaked runc init');
  t.same(findOrphans([init(100, { ageS: 5 })], known(), 60), [], 'younger than the minimum age: a container being created');
  t.same(findOrphans([init(100)], known({ ids: new Set([ID]) }), 60), [], 'its container is known (docker create, then start)');
  t.same(findOrphans([init(100)], known({ taskPids: new Set([100]) }), 60), [], 'its task is known (a created task waiting for start)');
  t.same(findOrphans([p({ pid: 50, comm: 'runc' }), init(100, { ppid: 50 })], known(), 60), [], 'its parent is runc create or runc exec');
  t.same(findOrphans([shim(50), init(100, { ppid: 50 })], known({ containerdKeys: new Set([`moby/${ID}`]) }), 60), [], 'under a shim containerd knows');
  const both = findOrphans([shim(50), init(100, { ppid: 50 })], known(), 60);
  t.same(both.map((o) => [o.subject, o.shims.map((x) => x.pid), o.runcInits.map((x) => x.pid)]), [[ID, [50], [100]]], 'an unknown shim and its runc init: one orphan');
  t.same(findOrphans([shim(50, 'buildkit')], known(), 60), [], 'a shim in a namespace we do not read is not judged');
  t.same(findOrphans([p({ pid: 40, comm: 'systemd' }), init(100, { ppid: 40, cgroupId: undefined })], known(), 60).map((o) => o.subject), ['pid-100'], 'under a subreaper that is no runtime, with no container id');
});

t.test('the finding names the processes, their mounts and the device they pin; the remedy kills runc init before the shim', async (t) => {
  const own = parseMountinfo([
    `46 173 0:47 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/var/lib/docker/overlay2/${ID}/diff,workdir=/var/lib/docker/overlay2/${ID}/work`,
    '51 46 0:41 / /proc rw,nosuid - proc proc rw',
    `94 46 7:3 /containers/${ID}/hosts /etc/hosts rw,relatime - ext4 /dev/loop3 rw`,
  ].join('\n'));
  const host = parseMountinfo(['22 1 254:0 / / rw - ext4 /dev/vda rw', '300 22 7:3 / /var/lib/docker rw - ext4 /dev/loop3 rw'].join('\n'));
  const h = holdingsOf(100, own, host);
  t.same(h.devices, [{ device: '/dev/loop3', hostMountPoint: '/var/lib/docker' }], 'the data root loop device, where the host mounts it');
  const o = findOrphans([shim(50), init(100, { ppid: 50 })], known(), 60)[0]!;
  const f = evaluateOrphan(o, h);
  t.match(f, { check: 'runtime.orphan', severity: 'warning', subject: ID });
  t.match(f.message, /runc init \(pid 100, parent 50, 60 min old\) and a containerd shim \(pid 50, namespace moby.*belong to no runtime.*3 mounts and pin \/dev\/loop3 \(mounted at \/var\/lib\/docker\)/);
  t.match(f.remedy, /^kill -9 100 50  #/, 'runc init first, then its shim');
  const sh = (await import('node:child_process')).spawnSync('sh', ['-n', '-c', f.remedy]);
  t.equal(sh.status, 0, 'the remedy parses as pasted');
  t.not(orphanFacts(o), orphanFacts({ ...o, runcInits: [init(100, { ppid: 50, startTicks: 9 })] }), 'a new process with the same pid is a new fact');
});

t.test('hostile /proc text: cgroup and argument parsing never throws', async (t) => {
  fc.assert(fc.property(fc.string({ maxLength: 500 }), (s) => {
    const id = cgroupIdOf(s);
    return id === undefined || id.length <= 256;
  }));
  fc.assert(fc.property(fc.array(fc.string({ maxLength: 50 }), { maxLength: 20 }), fc.string({ maxLength: 20 }), (args, comm) => {
    shimOf({ comm, args });
    isRuncInit({ comm, args });
    return true;
  }));
  t.pass('no throw');
});
