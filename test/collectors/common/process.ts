// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describeHolder, describeProcess, parseCgroupContainer, parseCmdline, parseComm, parseNofileSoftLimit, parseProcess, podUidIn } from '../../../collectors/common/process.js';
import { createHostAccess } from '../../../agent/host/access.js';
import { exec } from '../../../agent/host/exec.js';

const ID = 'a9a1785b81343c3ad2093ad973f4f8e52dbf54823b8bb089886c8356d4036fe0';
const UID = '3f1c5a2e-7b4d-4c8e-9a1f-2b3c4d5e6f70';

t.test('container ids from every cgroup naming scheme', async (t) => {
  const cases: [string, string, string | undefined][] = [
    [`12:memory:/docker/${ID}\n`, 'docker', undefined],
    [`0::/system.slice/docker-${ID}.scope\n`, 'docker', undefined],
    [`4:memory:/kubepods/burstable/pod${UID}/${ID}\n`, 'unknown', UID],
    [`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-${ID}.scope\n`, 'containerd', UID],
    [`0::/kubepods.slice/kubepods-pod${UID.replace(/-/g, '_')}.slice/crio-${ID}.scope\n`, 'cri-o', UID],
    [`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice/docker-${ID}.scope\n`, 'docker', UID],
  ];
  for (const [text, runtime, podUid] of cases) {
    const ref = parseCgroupContainer(text);
    t.equal(ref?.containerId, ID, text.trim());
    t.equal(ref?.runtime, runtime);
    t.equal(ref?.podUid, podUid);
  }
});

t.test('host processes have no container', async (t) => {
  t.equal(parseCgroupContainer(readFileSync('test/fixtures/host/debian12-vm/proc/1/cgroup', 'utf8')), undefined);
  t.equal(parseCgroupContainer('0::/user.slice/user-0.slice/session-1.scope\n'), undefined);
  t.equal(parseCgroupContainer(`0::/system.slice/docker-${ID.slice(0, 60)}.scope\n`), undefined, 'a short id is not an id');
});

t.test('soft nofile limit from /proc/PID/limits', async (t) => {
  t.type(parseNofileSoftLimit(readFileSync('test/fixtures/host/debian12-vm/proc/1/limits', 'utf8')), 'number');
  t.equal(parseNofileSoftLimit('Max open files            350                  4096                 files     \n'), 350);
  t.equal(parseNofileSoftLimit('Max open files            unlimited            unlimited            files     \n'), undefined);
  t.equal(parseNofileSoftLimit(''), undefined);
});

t.test('cmdline and comm, including bytes that are not UTF-8', async (t) => {
  t.equal(parseCmdline(Buffer.from('nginx: worker\0--flag\0\0')), 'nginx: worker --flag');
  t.equal(parseComm(Buffer.from([0x6e, 0x77, 0xff, 0x0a])), 'nw\\xff');
  t.equal(parseComm(Buffer.from('kworker/0:1\n')), 'kworker/0:1');
});

const K8S = path.resolve('test/fixtures/host/k8s-node');
const VM = path.resolve('test/fixtures/host/debian12-vm');
const files = (root: string, pid: number) => {
  const read = (name: string) => {
    try {
      return readFileSync(path.join(root, 'proc', String(pid), name));
    } catch {
      return undefined;
    }
  };
  return { comm: read('comm'), cmdline: read('cmdline'), cgroup: read('cgroup')?.toString('utf8'), limits: read('limits')?.toString('utf8') };
};

t.test('pod UIDs from kubelet cgroup names, cgroupfs and systemd driver alike', async (t) => {
  t.equal(podUidIn(`pod${UID}`), UID);
  t.equal(podUidIn(`kubepods-besteffort-pod${UID.replace(/-/g, '_')}.slice`), UID, 'underscores become dashes');
  t.equal(podUidIn(`/kubepods/burstable/pod${UID}/${ID}`), UID);
  t.equal(podUidIn('kubepods-besteffort.slice'), undefined);
  t.equal(podUidIn(`pod${UID.slice(0, 30)}`), undefined, 'a cut uid is not a uid');
});

t.test('a process described from its captured files', async (t) => {
  t.same(parseProcess(2316, files(K8S, 2316)), {
    pid: 2316,
    comm: 'sleep',
    cmdline: 'sleep 600',
    nofileSoft: 1024,
    containerId: '9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b',
    podUid: '3f1c9a52-7d4e-4b8a-9e21-5c6d0f8b1a77',
  }, 'a container in a kubelet pod: container id and pod uid from its cgroup');
  const py = parseProcess(5038, files(VM, 5038));
  t.equal(py.comm, 'python3');
  t.match(py.cmdline, /^\/root\/\.pyenv\/versions\/3\.11\.7\/bin\/python3 -c /, 'arguments space-joined');
  t.equal(py.nofileSoft, 20000);
  t.notOk('containerId' in py || 'podUid' in py, 'a host process has no container');
  t.same(parseProcess(7, {}), { pid: 7, comm: '?', cmdline: '' }, 'a process that has gone: ? and no command line');
  t.same(parseProcess(7, { limits: 'Max open files            unlimited            unlimited            files     \n' }), { pid: 7, comm: '?', cmdline: '' }, 'no limit when unlimited');
});

t.test('describeProcess reads the files under --host-root, limits only when asked', async (t) => {
  const host = createHostAccess({ root: K8S, exec });
  t.same(await describeProcess(host, 2418, { limits: true }), {
    pid: 2418,
    comm: 'sleep',
    cmdline: 'sleep 600',
    nofileSoft: 1024,
    containerId: 'c7d2e94f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d',
    podUid: '8e2b4c10-1a3f-4d5e-8b7c-2f9e6a4d3c11',
  });
  t.notOk('nofileSoft' in (await describeProcess(host, 2418)), 'no limits read unless asked');
  t.same(await describeProcess(host, 999_999), { pid: 999_999, comm: '?', cmdline: '' }, 'a pid that is not there');
  t.same(await describeProcess(host, 1), { pid: 1, comm: '?', cmdline: '' }, 'pid 1 captured with its mountinfo only');
});

t.test('a mount holder shows pid, name, command line and container, and no pod or limit (what mounts and who-holds print)', async (t) => {
  const host = createHostAccess({ root: K8S, exec });
  const h = await describeHolder(host, 2316);
  t.same(Object.keys(h), ['pid', 'comm', 'cmdline', 'containerId'], 'the keys and their order in who-holds --json');
  t.same(h, { pid: 2316, comm: 'sleep', cmdline: 'sleep 600', containerId: '9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b' });
  t.same(Object.keys(await describeHolder(createHostAccess({ root: VM, exec }), 5038)), ['pid', 'comm', 'cmdline'], 'no containerId key for a host process');
});

t.test('live: a real process on this host, by its pid', async (t) => {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise((r) => child.once('spawn', r));
  const d = await describeProcess(createHostAccess({ root: '/', exec }), child.pid!, { limits: true });
  t.equal(d.comm, 'sleep');
  t.equal(d.cmdline, 'sleep 600');
  t.equal(d.nofileSoft, Number(readFileSync(`/proc/${child.pid}/limits`, 'utf8').match(/Max open files\s+(\d+)/)?.[1]), 'the soft limit /proc shows');
  t.equal(d.containerId, undefined, 'started by the test, outside any container');
});

t.test('live: a process in a docker container names its container', async (t) => {
  const { ensureTestImage, removeContainer, requireRuntime, runContainer, inspectField } = await import('../../helpers/runtime.js');
  if (!requireRuntime(t)) return;
  ensureTestImage();
  runContainer('nw-process', ['sleep', '600']);
  t.teardown(() => removeContainer('nw-process'));
  const pid = Number(inspectField('nw-process', '{{.State.Pid}}'));
  const id = inspectField('nw-process', '{{.Id}}');
  const d = await describeProcess(createHostAccess({ root: '/', exec }), pid);
  t.same(d, { pid, comm: 'sleep', cmdline: 'sleep 600', containerId: id });
});
