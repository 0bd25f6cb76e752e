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

t.test('a container being created (runc init holds the namespace) is not a leak', async (t) => {
  const { creatingContainers, isRuncInit } = await import('../../collectors/mounts.js');
  t.ok(isRuncInit({ comm: 'runc:[2:INIT]', cmdline: '' }));
  t.ok(isRuncInit({ comm: 'runc', cmdline: '/usr/sbin/runc init' }));
  t.notOk(isRuncInit({ comm: 'sleep', cmdline: 'sleep 600' }));
  t.notOk(isRuncInit({ comm: 'sh', cmdline: 'sh -c runc initialize' }));
  const leaked = [
    { namespace: 'mnt:[7]', pids: [70], mount: parseMountinfo('1 0 0:5 / /var/lib/docker/overlay2/x/merged/proc rw - proc proc rw')[0]!, reason: 'runtime-storage' as const },
    { namespace: 'mnt:[8]', pids: [80], mount: parseMountinfo('1 0 0:5 / /var/lib/docker/overlay2/y/merged rw - overlay overlay rw')[0]!, reason: 'runtime-storage' as const },
  ];
  const holders = new Map([[70, { pid: 70, comm: 'runc:[2:INIT]', cmdline: 'runc init' }], [80, { pid: 80, comm: 'sleep', cmdline: 'sleep 600' }]]) as never;
  t.same([...creatingContainers(leaked, holders)], ['mnt:[7]']);
});

t.test('live: a creation stalled in runc\'s setup (runc init with its /proc, /dev and cgroup mounts under the rootfs, a prestart hook that does not return as docker\'s does while dockerd is frozen) raises no mount.holder', async (t) => {
  if (!requireLive(t, { root: true, commands: ['runc'], paths: ['/bin/busybox'] })) return;
  const { mkdirSync, copyFileSync, rmSync, readFileSync, writeFileSync } = await import('node:fs');
  const { spawn } = await import('node:child_process');
  const id = `nw-creating-${process.pid}`;
  const bundle = `/run/docker/${id}`;
  const state = `/run/${id}-runc`;
  mkdirSync(`${bundle}/rootfs/bin`, { recursive: true });
  copyFileSync('/bin/busybox', `${bundle}/rootfs/bin/busybox`);
  t.equal(spawnSync('runc', ['spec', '--bundle', bundle]).status, 0, 'runc spec');
  const spec = JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['/bin/busybox', 'sleep', '600'];
  spec.root.readonly = false;
  // docker's own prestart hook calls back into dockerd: frozen, it never returns, and runc init waits
  // half-way through its setup. A hook that sleeps does the same.
  spec.hooks = { prestart: [{ path: '/bin/sleep', args: ['sleep', '600'] }] };
  writeFileSync(`${bundle}/config.json`, JSON.stringify(spec));
  const create = spawn('runc', ['--root', state, 'create', '--bundle', bundle, id], { stdio: 'ignore', detached: true });
  let init: number | undefined;
  t.teardown(() => {
    try {
      process.kill(-create.pid!, 'SIGKILL');
    } catch {
      // gone
    }
    if (init) spawnSync('kill', ['-9', String(init)]);
    spawnSync('runc', ['--root', state, 'delete', '-f', id]);
    rmSync(bundle, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  });
  const held = () => {
    for (const pid of spawnSync('pgrep', ['-P', String(create.pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('runc:[2:INIT]')) {
          init = pid;
          return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter((l) => l.includes(`${bundle}/rootfs/`)).length;
        }
      } catch {
        // raced
      }
    }
    return 0;
  };
  t.ok(await eventually(() => held() >= 3, 30_000), `runc init waits in its setup holding ${held()} mounts under the rootfs that the host does not have`);
  const r = await mounts.collect(contextFor(mounts, '/', { env: envFor('/') }));
  t.equal(r.kind, 'ok');
  const about = r.kind === 'ok' ? r.observations.filter((o) => o.subject.includes(id)) : [];
  t.same(about.map((o) => o.message.slice(0, 120)), [], 'nothing about the container being created');
});

t.test('live: while a runtime cannot be asked, a mount of runtime storage is not judged: a new one does not fire, one already firing stays as it was', async (t) => {
  if (!requireLive(t, { root: true, commands: ['unshare'] })) return;
  const { mkdirSync, rmSync } = await import('node:fs');
  const { holdMountsInNewNamespace } = await import('../helpers/live.js');
  const dir = `/run/docker/nw-leak-${process.pid}`;
  mkdirSync(dir, { recursive: true });
  t.equal(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', dir]).status, 0, 'a tmpfs under docker\'s run dir');
  const holder = await holdMountsInNewNamespace();
  t.teardown(async () => {
    await holder.stop();
    spawnSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  t.equal(spawnSync('umount', [dir]).status, 0, 'the host lets it go; the other namespace keeps it');
  const env = envFor('/');
  const real = env.runtime;
  const frozen = {
    ...real,
    settleMs: real.settleMs,
    snapshot: async (o?: { since?: number }) => {
      const snap = await real.snapshot(o);
      return { ...snap, runtimes: snap.runtimes.map((r) => (r.name === 'docker' ? { ...r, status: 'unresponsive' as const, error: 'no answer within 5000 ms' } : r)) };
    },
  };
  const ours = <T extends { subject: string }>(obs: T[]): T[] => obs.filter((o) => o.subject.endsWith(` ${dir}`));
  const answering = await mounts.collect(contextFor(mounts, '/', { env }));
  const fired = answering.kind === 'ok' ? ours(answering.observations) : [];
  t.equal(fired.length, 1, 'with the runtime answering, the leaked runtime-storage mount fires');
  const blind = await mounts.collect({ ...contextFor(mounts, '/', { env }), runtime: frozen });
  t.same(blind.kind === 'ok' ? ours(blind.observations) : ['not ok'], [], 'docker unresponsive: a new one is not judged');
  t.match(blind.kind === 'ok' ? blind.data.notJudged : '', /1 mount of runtime storage not judged while docker is unresponsive/);
  const active = fired.map((o) => ({ ...o, id: 'x', node: 'test-node', state: 'firing', firstSeen: '', lastSeen: '' }));
  const kept = await mounts.collect({ ...contextFor(mounts, '/', { env }), runtime: frozen, active: () => active as never });
  t.same(kept.kind === 'ok' ? ours(kept.observations).map((o) => o.message) : [], fired.map((o) => o.message), 'one already firing stays, unchanged (neither resolved nor re-judged)');

  // The agent (a confirmation store): a suspect seen while docker answers is carried as it was through
  // a read that cannot judge it, and is confirmed by the next read once docker answers again.
  const store = new Map();
  const inAgent = (runtime: Pick<typeof real, 'snapshot' | 'ping'>) =>
    mounts.collect({ ...contextFor(mounts, '/', { env }), runtime: { settleMs: 0, snapshot: (o) => runtime.snapshot(o), ping: () => runtime.ping() }, confirmations: store });
  const first = await inAgent(real);
  t.same(first.kind === 'ok' ? ours(first.observations) : ['not ok'], [], 'in the agent, the first sighting is a suspect');
  const carried = [...store.entries()].filter(([k]) => k.endsWith(` ${dir}`));
  t.equal(carried.length, 1, 'carried in the store');
  const blindRun = await inAgent({ snapshot: frozen.snapshot, ping: () => real.ping() });
  t.same(blindRun.kind === 'ok' ? ours(blindRun.observations) : ['not ok'], [], 'not judged while docker does not answer');
  t.same([...store.entries()].filter(([k]) => k.endsWith(` ${dir}`)), carried, 'the suspect is carried as it was, not dropped');
  const after = await inAgent(real);
  t.equal(after.kind === 'ok' ? ours(after.observations).length : 0, 1, 'docker answers: the same facts confirm it');
});
