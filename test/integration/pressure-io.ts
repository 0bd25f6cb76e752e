// @live quiet: a loop device, a blkio cgroup and a dd throttled in it on the real kernel; it asserts a calm node (no false finding under churn, load and timing), so it runs after the unit files
// pressure.io from this machine's real /proc/pressure/io (the collector is collectors/pressure.ts; its
// cpu pressure test is in test/collectors/pressure.ts). Its own file: half a minute of stall to fire
// at the defaults and its clearing would not fit in that file's time beside the cpu test.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { parsePsi, pressure } from '../../collectors/pressure.js';
import { contextFor, envFor } from '../helpers/context.js';
import { requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

/** Where this machine's block throttle lives: cgroup v1's blkio or v2's io.max; undefined when neither. */
function ioThrottle(): { dir: (name: string) => string; limit: (majMin: string) => [string, string] } | undefined {
  if (existsSync('/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device')) {
    return { dir: (n) => `/sys/fs/cgroup/blkio/${n}`, limit: (mm) => ['blkio.throttle.write_iops_device', `${mm} 4`] };
  }
  if (existsSync('/sys/fs/cgroup/cgroup.subtree_control') && /\bio\b/.test(readFileSync('/sys/fs/cgroup/cgroup.subtree_control', 'utf8'))) {
    return { dir: (n) => `/sys/fs/cgroup/${n}`, limit: (mm) => ['io.max', `${mm} wiops=4`] };
  }
  return undefined;
}

// Real io pressure: a dd writing O_DIRECT to a loop device from a cgroup whose block throttle allows 4
// writes a second, so it sleeps in D state on every write, as a process does on a slow or throttled
// disk (this kernel has no device-mapper for dm-delay). PSI counts io "full" while it is the only task
// its CPU has: about half of this 2-core machine's time, so the default bar (20 % full over 60 s) is
// crossed after half a minute: no override here. 400 writes: dd ends by itself within 100 s even if
// this process is killed before its teardown.
t.test('live: writes throttled to 4 a second make real io pressure: pressure.io fires at the defaults and clears after', async (t) => {
  if (!requireLive(t, { root: true, commands: ['dd', 'losetup', 'truncate'], paths: ['/proc/pressure/io'] })) return;
  const throttle = ioThrottle();
  if (!requireLive(t, { paths: [throttle ? '/proc/pressure/io' : '/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device (or cgroup v2 io.max)'] })) return;
  const { execFileSync, spawn, spawnSync } = await import('node:child_process');
  const { mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-io-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const image = path.join(dir, 'disk.img');
  execFileSync('truncate', ['-s', '64M', image]);
  const device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  t.teardown(() => void spawnSync('losetup', ['-d', device]));
  const majMin = execFileSync('lsblk', ['-dno', 'MAJ:MIN', device], { encoding: 'utf8' }).trim();
  const cg = throttle!.dir(`nw-io-${process.pid}`);
  mkdirSync(cg);
  const [file, value] = throttle!.limit(majMin);
  writeFileSync(path.join(cg, file), `${value}\n`);

  let previous: unknown;
  const run = async () => {
    const r = await pressure.collect(contextFor(pressure, '/', { env: envFor('/'), previous }));
    if (r.kind !== 'ok') throw new Error(`${r.kind}: ${r.reason}`);
    previous = r.data;
    return r.observations.find((o) => o.check === 'pressure.io');
  };
  const readIo = () => parsePsi(readFileSync('/proc/pressure/io', 'utf8')).full!;
  // Quiet first (an earlier run's stall decays for a minute), so that the crossing is this test's writes.
  t.ok(await eventually(() => readIo().avg60 < 10, 40_000), 'io full avg60 under 10 % before the writes');
  const before = readIo();
  t.comment(`before: io full avg10 ${before.avg10} avg60 ${before.avg60}`);
  t.equal(await run(), undefined, 'nothing before the writes');

  const dd = spawn('sh', ['-c', `echo $$ > ${path.join(cg, 'cgroup.procs')} && exec dd if=/dev/zero of=${device} bs=4k count=400 oflag=direct`], { stdio: 'ignore' });
  const ddExited = new Promise<void>((r) => dd.once('exit', () => r()));
  const stop = async () => {
    if (dd.exitCode === null && dd.signalCode === null) process.kill(dd.pid!, 'SIGKILL');
    await ddExited;
  };
  // The cgroup can only go once dd has; the loop device, if detached first, goes when dd lets go of it.
  t.teardown(async () => {
    await stop();
    rmdirSync(cg);
  });
  const started = Date.now();
  const stalledAtStart = readIo().total;
  let fired: Awaited<ReturnType<typeof run>>;
  t.ok(await eventually(async () => {
    await new Promise((r) => setTimeout(r, 2000));
    fired = await run();
    return fired !== undefined;
  }, 70_000), 'pressure.io fires while dd waits on every write');
  const during = readIo();
  await stop();
  const share = (during.total - stalledAtStart) / ((Date.now() - started) * 1000);
  t.comment(`fired after ${((Date.now() - started) / 1000).toFixed(0)} s: ${fired?.message} io full ${(share * 100).toFixed(1)} % of the time under the writes`);
  t.ok(share > 0.3, 'io full for more than 30 % of the time under the writes, by the stall counter (total, microseconds)');
  t.equal(fired?.severity, 'warning');
  t.ok(Number(fired?.evidence['avg60']) > 20, 'the 60 s full average read from /proc/pressure/io is over the default 20 %');
  t.match(fired?.message, /^io pressure: every non-idle task waited for io/);

  const cleared = Date.now();
  t.ok(await eventually(async () => {
    await new Promise((r) => setTimeout(r, 2000));
    return (await run()) === undefined;
  }, 30_000), 'pressure.io clears once the writes stop');
  t.comment(`cleared ${((Date.now() - cleared) / 1000).toFixed(0)} s after dd was killed: io full avg60 ${readIo().avg60}`);
});
