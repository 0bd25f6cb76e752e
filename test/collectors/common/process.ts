import t from 'tap';
import { readFileSync } from 'node:fs';
import { parseCgroupContainer, parseCmdline, parseComm, parseNofileSoftLimit } from '../../../collectors/common/process.js';

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
