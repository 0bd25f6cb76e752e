import t from 'tap';
import { readFileSync } from 'node:fs';
import { mountFor, parseMountinfo } from '../../../collectors/common/mountinfo.js';

t.test('parses the mountinfo captured on this machine', async (t) => {
  const mounts = parseMountinfo(readFileSync('test/fixtures/host/debian12-vm/proc/1/mountinfo'));
  const root = mounts.find((m) => m.mountPoint === '/');
  t.ok(root, 'has the root mount');
  t.equal(root?.fsType, 'ext4');
  const proc = mounts.find((m) => m.mountPoint === '/proc');
  t.same(proc && { device: proc.device, fsType: proc.fsType, opts: proc.mountOptions }, { device: '0:21', fsType: 'proc', opts: ['rw', 'relatime'] });
});

t.test('escaped spaces, tabs, newlines and backslashes in mount points', async (t) => {
  const text = '100 1 7:3 / /mnt/my\\040disk\\011tab\\012nl\\134bs rw,relatime shared:5 master:2 - ext4 /dev/loop3 rw,errors=remount-ro\n';
  const [m] = parseMountinfo(text);
  t.equal(m?.mountPoint, '/mnt/my disk\ttab\nnl\\bs');
  t.same(m?.optional, ['shared:5', 'master:2']);
  t.same(m?.superOptions, ['rw', 'errors=remount-ro']);
});

t.test('names that are not UTF-8 stay recognisable', async (t) => {
  const line = Buffer.concat([Buffer.from('101 1 7:4 / /mnt/caf'), Buffer.from([0xe9]), Buffer.from(' rw - ext4 /dev/loop4 rw\n')]);
  const [m] = parseMountinfo(line);
  t.equal(m?.mountPoint, '/mnt/caf\\xe9', 'Latin-1 byte shown escaped');
  const utf8 = parseMountinfo(Buffer.from('102 1 7:5 / /mnt/café rw - ext4 /dev/loop5 rw\n'));
  t.equal(utf8[0]?.mountPoint, '/mnt/café');
});

t.test('malformed lines are skipped, not thrown on', async (t) => {
  const mounts = parseMountinfo('garbage\n1 2 3\n22 27 0:21 / /proc rw - proc proc rw\nx y 0:1 / /a rw - tmpfs t rw\n');
  t.same(mounts.map((m) => m.mountPoint), ['/proc']);
});

t.test('mountFor picks the deepest mount holding a path', async (t) => {
  const mounts = [{ mountPoint: '/' }, { mountPoint: '/var' }, { mountPoint: '/var/lib/kubelet' }, { mountPoint: '/var/lib/kube' }];
  t.equal(mountFor(mounts, '/var/lib/kubelet/pods')?.mountPoint, '/var/lib/kubelet');
  t.equal(mountFor(mounts, '/var/lib/kubeletx')?.mountPoint, '/var', 'a prefix that is not a path component does not match');
  t.equal(mountFor(mounts, '/etc')?.mountPoint, '/');
});
