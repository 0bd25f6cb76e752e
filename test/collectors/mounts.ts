// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { findLeakedMounts, mounts } from '../../collectors/mounts.js';
import { parseMountinfo } from '../../collectors/common/mountinfo.js';
import { contextFor, envFor, settingsFor } from '../helpers/context.js';
import { heldLoopFs, requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

const config = settingsFor(mounts) as never;
const ns = (id: string, host: boolean, lines: string[]) => ({ id, host, pids: host ? [1] : [42, 43], mounts: parseMountinfo(lines.join('\n')) });

t.test('leaked: runtime storage gone from the host, and block devices mounted only elsewhere', async (t) => {
  const host = ns('mnt:[1]', true, ['1 0 8:1 / / rw - ext4 /dev/sda1 rw', '2 1 0:40 / /var/lib/docker/overlay2/live/merged rw - overlay overlay rw,upperdir=/var/lib/docker/overlay2/live/diff']);
  const other = ns('mnt:[2]', false, [
    '10 9 8:1 / / rw - ext4 /dev/sda1 rw',
    '11 10 0:40 / /var/lib/docker/overlay2/live/merged rw - overlay overlay rw',
    '12 10 0:41 / /var/lib/docker/overlay2/gone/merged rw - overlay overlay rw,upperdir=/var/lib/docker/overlay2/gone/diff',
    '13 10 7:3 / /mnt/data rw - ext4 /dev/loop3 rw',
    '14 10 0:50 / /tmp rw - tmpfs tmpfs rw',
  ]);
  const leaked = findLeakedMounts([host, other], config);
  t.same(leaked.map((l) => [l.mount.mountPoint, l.reason]), [['/var/lib/docker/overlay2/gone/merged', 'runtime-storage'], ['/mnt/data', 'block-device']]);
  t.same(findLeakedMounts([other], config), [], 'without the host namespace there is nothing to compare');
});

t.test('live: a process in another mount namespace keeps a loop filesystem alive after the host unmounted it', async (t) => {
  if (!requireLive(t, { root: true, commands: ['unshare', 'mkfs.ext4', 'losetup'] })) return;
  const { fs, holder } = await heldLoopFs(t, 32);
  t.equal(spawnSync('umount', [fs.mountPoint]).status, 0, 'the host unmounts it');

  const env = envFor('/');
  const r = await mounts.collect(contextFor(mounts, '/', { env }));
  t.equal(r.kind, 'ok');
  const f = r.kind === 'ok' ? r.observations.find((o) => o.check === 'mount.holder' && String(o.evidence['mount']).includes(fs.mountPoint)) : undefined;
  t.ok(f, 'mount.holder fires');
  t.match(f?.message, new RegExp(`held by 1 process \\(${holder.pid} \\(sleep\\)\\)`));
  t.match(f?.remedy, new RegExp(`nsenter -t ${holder.pid} -m umount`));

  const cli = (...args: string[]) => spawnSync(process.execPath, [path.resolve('dist/cli/main.js'), 'who-holds', ...args], { encoding: 'utf8' });
  const byDevice = cli(fs.device);
  t.equal(byDevice.status, 0);
  t.match(byDevice.stdout, new RegExp(`${holder.pid}\\s+sleep`), 'who-holds DEVICE names the holder');
  t.match(byDevice.stdout, new RegExp(`${fs.mountPoint} rw,relatime - ext4 ${fs.device}`), 'and the mount line');
  const byPath = JSON.parse(cli(fs.mountPoint, '--json').stdout) as { namespaces: { host: boolean; holders: { pid: number; comm: string }[] }[] };
  t.same(byPath.namespaces.map((n) => [n.host, n.holders.map((h) => h.pid)]), [[false, [holder.pid]]], 'who-holds PATH: only that namespace');

  await holder.stop();
  const stillHeld = async () => {
    const after = await mounts.collect(contextFor(mounts, '/', { env }));
    return after.kind === 'ok' && after.observations.some((o) => String(o.evidence['mount']).includes(fs.mountPoint));
  };
  t.ok(await eventually(async () => !(await stillHeld()), 10_000), 'resolved when the holder exits');
  t.equal(cli(fs.device).status, 1, 'who-holds exits 1 when nothing holds it');
});
