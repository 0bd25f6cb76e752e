import t from 'tap';
import { readlinkSync } from 'node:fs';
import { mountLine, readMountNamespaces } from '../../../collectors/common/namespaces.js';
import { parseMountinfo } from '../../../collectors/common/mountinfo.js';
import { envFor } from '../../helpers/context.js';

t.test('mountLine writes a mount back as its mountinfo line', async (t) => {
  const line = '36 25 0:32 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/tls rw,relatime shared:5 - tmpfs tmpfs rw,size=1024k';
  const [m] = parseMountinfo(`${line}\n`);
  t.equal(mountLine(m!), '36 25 0:32 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/tls rw,relatime - tmpfs tmpfs rw,size=1024k');
});

t.test('live: the host namespace comes first and holds this process and pid 1; each namespace read once', async (t) => {
  const env = envFor('/');
  const nss = await readMountNamespaces(env.host);
  t.ok(nss.length >= 1);
  t.equal(nss[0]?.host, true, 'the host namespace is first');
  t.equal(nss.filter((n) => n.host).length, 1, 'exactly one host namespace');
  const mine = readlinkSync('/proc/self/ns/mnt');
  const ownNs = nss.find((n) => n.pids.includes(process.pid));
  t.equal(ownNs?.id, mine, 'this process is filed under its own namespace');
  t.equal(new Set(nss.map((n) => n.id)).size, nss.length, 'no namespace twice');
  t.ok(nss[0]?.mounts.some((m) => m.mountPoint === '/'), 'the host namespace has its mount table');
  const all = nss.flatMap((n) => n.pids);
  t.equal(new Set(all).size, all.length, 'each pid in one namespace');
});
