// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t, { type Test } from 'tap';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { buildRows, consumerSeries, disk, evaluateDisk, growthView, selectFilesystems, usageOf, withGrowth, type DiskConfig, type DiskRow } from '../../collectors/disk.js';
import { withTopConsumers } from '../../collectors/common/image-gc.js';
import { parseMountinfo } from '../../collectors/common/mountinfo.js';
import { loadConfig } from '../../agent/config.js';
import { createFillersAccess, measureNode } from '../../agent/actions/du.js';
import { createTreeIndex } from '../../agent/host/tree-index.js';
import { Runner } from '../../agent/runner.js';
import { COLLECTORS } from '../../collectors/index.js';
import { contextFor, envFor, quietLog, settingsFor } from '../helpers/context.js';
import { fillTo, hungFuseMount, makeLoopFs, requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

const config = settingsFor(disk) as never;
const MiB = 1024 * 1024;

const row = (over: Partial<DiskRow>): DiskRow => ({
  source: '/dev/sda1', fsType: 'ext4', mountPoint: '/', alsoAt: [], device: '8:1', readonly: false, kernelReadOnly: false, status: 'ok',
  ...usageOf({ blockSize: 4096, blocks: 1000, blocksFree: 500, blocksAvailable: 500, inodes: 1000, inodesFree: 900 }),
  ...over,
});

t.test('real filesystems only: pseudo, tmpfs and container overlay mounts are skipped, bind mounts folded by device', async (t) => {
  const mounts = parseMountinfo(readFileSync('test/fixtures/host/debian12-vm/proc/1/mountinfo'));
  const selected = selectFilesystems(mounts, config).map((x) => x.mount.mountPoint);
  t.same(selected, ['/'], 'this VM has one real filesystem');
  const extra = parseMountinfo(
    [
      '30 1 8:1 / / rw - ext4 /dev/sda1 rw',
      '31 30 8:1 /var/lib/kubelet /var/lib/kubelet rw - ext4 /dev/sda1 rw',
      '32 30 8:1 / /mnt/again rw - ext4 /dev/sda1 rw',
      '33 30 0:50 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw,lowerdir=/x',
      '34 30 0:51 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw',
      '35 30 0:52 / /run rw - tmpfs tmpfs rw',
      '36 30 0:53 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw',
      '37 30 7:0 / /snap/core/1 ro - squashfs /dev/loop0 ro',
      '38 30 0:54 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/tok rw - tmpfs tmpfs rw',
    ].join('\n'),
  );
  const sel = selectFilesystems(extra, config);
  t.same(sel.map((x) => [x.mount.mountPoint, x.alsoAt]), [['/', ['/var/lib/kubelet', '/mnt/again']]], 'one row per device: the same numbers must not fire twice');
  const withTmpfs = selectFilesystems(extra, settingsFor(disk, ['collectors.disk.includeTmpfs=true']) as never);
  t.ok(withTmpfs.some((x) => x.mount.mountPoint === '/run'), 'includeTmpfs brings tmpfs back');
});

t.test("df's arithmetic", async (t) => {
  const u = usageOf({ blockSize: 4096, blocks: 100, blocksFree: 14, blocksAvailable: 10, inodes: 0, inodesFree: 0 });
  t.equal(u.usePercent, 90, 'used / (used + available), rounded up, as df does');
  t.equal(u.inodes, undefined, 'filesystems without inode counts have no inode figures');
});

t.test('usage and inode thresholds', async (t) => {
  const at = (usePercent: number, inodesUsePercent = 10) => evaluateDisk([row({ usePercent, inodesUsePercent })], config, { bestEffortPods: [] });
  t.same(at(85), [], '85% is not over 85%');
  t.same(at(86).map((f) => [f.check, f.severity]), [['disk.usage', 'warning']]);
  t.same(at(95).map((f) => [f.check, f.severity]), [['disk.usage', 'critical']]);
  t.same(at(10, 96).map((f) => [f.check, f.severity]), [['disk.inodes', 'critical']]);
  t.match(at(96)[0]?.remedy, /^du -xh/);
  const reserved = evaluateDisk([row({ ...usageOf({ blockSize: 4096, blocks: 1000, blocksFree: 80, blocksAvailable: 30, inodes: 0, inodesFree: 0 }) })], config, { bestEffortPods: [] });
  t.match(reserved[0]?.message, /97% full \(120K of 3\.9M left\)\. At 100% writes fail for every process but root, which can still use the 200K reserved for it/, 'says when writes really fail');
  t.notMatch(at(96)[0]?.message, /above 9\d% writes/, 'not at the warning threshold');
  const noReserve = evaluateDisk([row({ ...usageOf({ blockSize: 4096, blocks: 1000, blocksFree: 40, blocksAvailable: 40, inodes: 0, inodesFree: 0 }) })], config, { bestEffortPods: [] });
  t.match(noReserve[0]?.message, /96% full .* At 100% every write fails\./, 'no reserved blocks (xfs, or tune2fs -m 0): everyone fails at 100%');
});

t.test('eviction: within the margin warns, past the threshold is critical, names BestEffort pods', async (t) => {
  const fsAt = (availPct: number) => row({ mountPoint: '/var', size: 1000, avail: availPct * 10, used: 1000 - availPct * 10, usePercent: 100 - availPct, inodes: 1000, inodesUsed: 10 });
  const pods = [{ uid: 'u1', name: 'web-1' }, { uid: 'u2' }];
  t.same(evaluateDisk([fsAt(30)], config, { nodefs: fsAt(30), bestEffortPods: pods }).filter((f) => f.check === 'disk.eviction'), []);
  const soon = evaluateDisk([fsAt(14)], config, { nodefs: fsAt(14), bestEffortPods: pods }).filter((f) => f.check === 'disk.eviction');
  t.equal(soon.length, 1);
  t.equal(soon[0]?.severity, 'warning');
  t.match(soon[0]?.message, /evicted soon.*nodefs\.available 14\.0%.*web-1, u2/);
  const shared = evaluateDisk([fsAt(12)], config, { nodefs: fsAt(12), imagefs: fsAt(12), runtimeRoot: '/var/lib/docker', bestEffortPods: [] }).filter((f) => f.check === 'disk.eviction');
  t.equal(shared.length, 1, 'one finding per filesystem even when it is both nodefs and imagefs');
  t.equal(shared[0]?.severity, 'critical', 'imagefs.available 12% < 15%: kubelet is evicting');
  t.match(shared[0]?.remedy, /docker image prune -a --filter until=72h/);
  const containerd = evaluateDisk([fsAt(12)], config, { nodefs: fsAt(12), imagefs: fsAt(12), runtimeRoot: '/var/lib/containerd', bestEffortPods: [] });
  t.match(containerd.find((f) => f.check === 'disk.eviction')?.remedy, /crictl rmi --prune/);
});

t.test('read-only: kernel remount after an error, or a flip since the last cycle', async (t) => {
  const kernel = evaluateDisk([row({ readonly: true, kernelReadOnly: true })], config, { bestEffortPods: [] });
  t.same(kernel.map((f) => [f.check, f.severity]), [['disk.readonly', 'critical']]);
  const flipped = evaluateDisk([row({ readonly: true })], config, { bestEffortPods: [] }, { rows: [], writable: ['/'] });
  t.equal(flipped[0]?.check, 'disk.readonly');
  t.same(evaluateDisk([row({ readonly: true })], config, { bestEffortPods: [] }), [], 'a filesystem that was always read-only is fine');
});

t.test('an unresponsive mount is reported and not counted', async (t) => {
  const selected = selectFilesystems(parseMountinfo('40 1 0:60 / /mnt/nfs rw - nfs4 srv:/export rw\n'), config);
  const rows = buildRows(selected, [{ path: '/mnt/nfs', ok: false, reason: 'timeout', error: 'statfs did not answer within 3000 ms' }]);
  const [f] = evaluateDisk(rows, config, { bestEffortPods: [] });
  t.equal(f?.check, 'disk.unresponsive');
  t.equal(f?.severity, 'critical');
  t.match(f?.message, /srv:\/export/);
});

t.test('growth: the rate and the time to the eviction threshold, the consumer that grows, and when it pages', async (t) => {
  const GiB = 1024 ** 3;
  const MiB = 1024 ** 2;
  const T0 = Date.parse('2026-12-04T12:00:00Z');
  // A 100 GiB nodefs with 12 GiB left: within 5 points of nodefs.available 10%.
  const nodefs = (availGiB: number) => row({ mountPoint: '/var/lib/kubelet', size: 100 * GiB, used: 100 * GiB - availGiB * GiB, avail: availGiB * GiB, usePercent: 100 - availGiB, inodes: 1000, inodesUsed: 10 });
  const now = nodefs(12);
  const base = evaluateDisk([now], config, { nodefs: now, bestEffortPods: [] });
  t.same(base.map((o) => [o.check, o.severity]), [['disk.usage', 'warning'], ['disk.eviction', 'warning']]);
  const used = (perSample: number[]) => ({ '/var/lib/kubelet': perSample.map((x, i): [number, number] => [T0 + i * 30_000, now.used! + x]) });
  // 40 MiB every 30 s for 5 minutes, ending at the row's used bytes.
  const steady = used(Array.from({ length: 11 }, (_, i) => (i - 10) * 40 * MiB));
  const emptyDir = { kind: 'emptydir' as const, bytes: 30 * GiB, path: '/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/data', filesystem: '/var/lib/kubelet', pod: 'data/ingest-3', volume: 'data' };
  const logs = { kind: 'logs' as const, bytes: 40 * GiB, path: '/var/log/pods/a_b_u2/main', filesystem: '/var/lib/kubelet', pod: 'a/b', container: 'main' };
  const fillers = { filesystems: [{ mountPoint: '/var/lib/kubelet', device: '8:1', fsType: 'ext4', source: '/dev/sda1', roles: ['nodefs' as const], size: 100 * GiB, used: 88 * GiB, avail: 12 * GiB, usePercent: 88, attributed: 0, unattributed: 0, margin: 0 }], consumers: [logs, emptyDir], entries: 1, errors: 0, notes: [] };
  // The emptyDir grew 75 MiB/min over the refreshes, the logs not at all.
  let series = consumerSeries(undefined, undefined, T0, 900_000);
  for (let i = 0; i <= 10; i++) {
    const measured = { fillers, takenAt: T0 - 60_000, refreshed: { takenAt: T0 - 300_000 + i * 30_000, bytes: { [emptyDir.path]: emptyDir.bytes - (10 - i) * 37.5 * MiB, [logs.path]: logs.bytes } } };
    series = consumerSeries(series, measured, T0 - 300_000 + i * 30_000 + 5, 900_000);
  }
  t.equal(series[emptyDir.path]?.samples.length, 11, 'one sample per refresh');
  t.equal(series[emptyDir.path]?.source, 'refresh');
  const g = (config as DiskConfig).growth;
  const view = growthView(steady, series, g);
  const out = withTopConsumers(withGrowth(base, [now], view, config, fillers), fillers, view.consumers);
  const ev = out.find((o) => o.check === 'disk.eviction')!;
  t.equal(ev.severity, 'critical', 'steady for 5 min and 25 min from the threshold: it pages before kubelet evicts');
  t.match(ev.message, /nodefs reaches kubelet's 10% eviction threshold in about 26 min at the current 80 MiB\/min, mostly emptyDir data of data\/ingest-3 \(30G, \+75 MiB\/min\)/);
  t.match(ev.evidence['growth'], { ratePerMinute: 80 * MiB, sustained: true, signal: 'nodefs.available', forecastCritical: true });
  t.ok(Math.abs(Number((ev.evidence['growth'] as Record<string, number>)['minutesToThreshold']) - 25.6) < 0.05, 'the estimate in the evidence');
  t.match(ev.evidence['topConsumers'], [{ path: logs.path, ratePerMinute: null }, { path: emptyDir.path, ratePerMinute: 75 * MiB }], 'each top consumer with its rate, null when flat');
  const usage = out.find((o) => o.check === 'disk.usage')!;
  t.equal(usage.severity, 'warning', "the forecast never changes disk.usage's severity");
  t.match(usage.message, /It grows 80 MiB\/min: 95% \(critical\) in about 90 min, full in about 2\.6 h, mostly emptyDir data/);

  const burst = used([-1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0].map((x) => x * 2 * GiB));
  const b = withGrowth(base, [now], growthView(burst, {}, g), config).find((o) => o.check === 'disk.eviction')!;
  t.equal(b.severity, 'warning', 'one 2 GiB burst: the estimate is said, it does not page');
  t.match(b.message, /nodefs reaches kubelet's 10% eviction threshold in about \d+ min at the current/);
  t.notMatch(b.message, /mostly/, 'no consumer measured: none named');

  const shrinking = used(Array.from({ length: 11 }, (_, i) => (10 - i) * 40 * MiB));
  t.same(withGrowth(base, [now], growthView(shrinking, {}, g), config), base, 'shrinking: nothing said');
  const slow = used(Array.from({ length: 11 }, (_, i) => (i - 10) * 0.6 * MiB));
  const far = withGrowth(base, [now], growthView(slow, {}, g), config).find((o) => o.check === 'disk.eviction')!;
  t.match(far.message, /It grows 1\.2 MiB\/min\.$/, '2 GiB at 1.2 MiB/min is 28 h: past the 24 h horizon, the rate and no estimate');
  t.equal(far.evidence['growth'] && (far.evidence['growth'] as Record<string, unknown>)['minutesToThreshold'], null);
  const young = used([-1, 0].map((x) => x * 40 * MiB));
  t.same(withGrowth(base, [now], growthView(young, {}, g), config), base, 'a restarted agent with two samples 30 s apart: no rate yet');
});

// ---- live, on this machine ----

/** A loop ext4 standing in for a node's disk: kubelet's root dir, the runtime root and the pod logs on it. */
function nodeOnLoopFs(t: Test, sizeMiB: number): { fs: ReturnType<typeof makeLoopFs>; kubelet: string; runtimeRoot: string; podLogs: string; sets: string[] } | undefined {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup', 'fallocate'] })) return undefined;
  const fs = makeLoopFs(sizeMiB);
  t.teardown(() => fs.cleanup());
  const kubelet = path.join(fs.mountPoint, 'kubelet');
  const runtimeRoot = path.join(fs.mountPoint, 'docker');
  const podLogs = path.join(fs.mountPoint, 'pod-logs');
  mkdirSync(kubelet);
  return { fs, kubelet, runtimeRoot, podLogs, sets: [`collectors.disk.eviction.kubeletRootDir=${kubelet}`, `collectors.disk.eviction.runtimeRootDirs=[${runtimeRoot}]`, `collectors.pods.podLogsDir=${podLogs}`] };
}


t.test('live: a loop-mounted ext4 filled past 85% fires disk.usage, past 95% critical, and resolves when emptied', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup', 'fallocate'] })) return;
  const fs = makeLoopFs(64);
  t.teardown(() => fs.cleanup());
  const cfg = loadConfig({ node: 'live', sets: ['collectors.disk.includeTmpfs=false'] });
  const runner = new Runner({ collectors: COLLECTORS, config: cfg, env: envFor('/'), log: quietLog });
  const ours = () => runner.active().filter((f) => f.check === 'disk.usage' && f.subject === fs.mountPoint);

  await runner.runOnce(['disk']);
  t.same(ours(), [], 'empty filesystem: no finding');

  fillTo(fs, 90);
  const c1 = await runner.runOnce(['disk']);
  t.same(ours().map((f) => f.severity), ['warning'], '90% full: warning');
  t.ok(c1.transitions.some((x) => x.type === 'firing' && x.finding.subject === fs.mountPoint));
  const id = ours()[0]?.id;

  fillTo(fs, 97, 'more');
  const c2 = await runner.runOnce(['disk']);
  t.same(ours().map((f) => f.severity), ['critical'], '97% full: critical');
  t.equal(ours()[0]?.id, id, 'same problem, same id');
  t.ok(c2.transitions.some((x) => x.type === 'updated' && x.finding.subject === fs.mountPoint));

  unlinkSync(path.join(fs.mountPoint, 'fill'));
  unlinkSync(path.join(fs.mountPoint, 'more'));
  const c3 = await runner.runOnce(['disk']);
  t.same(ours(), [], 'emptied: no longer firing');
  const resolved = c3.transitions.find((x) => x.finding.subject === fs.mountPoint);
  t.equal(resolved?.type, 'resolved', 'resolution is explicit');
  t.equal(resolved?.finding.id, id);
});

t.test('live: an ext4 the kernel turns read-only after an error fires disk.readonly', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup'] })) return;
  const fs = makeLoopFs(32, ['errors=remount-ro']);
  t.teardown(() => fs.cleanup());
  const trigger = `/sys/fs/ext4/${path.basename(fs.device)}/trigger_fs_error`;
  if (!requireLive(t, { paths: [trigger] })) return;
  const env = envFor('/');
  const first = await disk.collect(contextFor(disk, '/', { env }));
  t.equal(first.kind, 'ok');
  if (first.kind !== 'ok') return;
  t.notOk(first.observations.some((f) => f.subject === fs.mountPoint), 'healthy at first');
  writeFileSync(trigger, '1');
  const second = await disk.collect(contextFor(disk, '/', { env, previous: first.data }));
  const f = second.kind === 'ok' ? second.observations.find((x) => x.check === 'disk.readonly' && x.subject === fs.mountPoint) : undefined;
  t.equal(f?.severity, 'critical');
  t.match(f?.message, /kernel made it read-only/);
  t.equal(f?.evidence['kernelRemounted'], true);

  // Joined with the kernel's own line about the device (issue 18.2): the kernel collector reads the real
  // log, and disk's finding quotes it.
  const { kernel } = await import('../../collectors/kernel.js');
  const { KmsgReader } = await import('../../agent/host/kmsg.js');
  const kctx = { ...contextFor(kernel, '/', { env }), kmsg: new KmsgReader({ host: env.host }) };
  const k = await kernel.collect(kctx as never);
  const dev = path.basename(fs.device);
  const said = k.kind === 'ok' ? k.observations.filter((o) => o.subject === dev) : [];
  t.ok(said.some((o) => o.check === 'kernel.fsReadonly'), `the kernel logged the remount of ${dev}`);
  const active = said.map((o) => ({ ...o, firstSeen: new Date().toISOString() }));
  const joined = await disk.collect({ ...contextFor(disk, '/', { env, previous: first.data }), active: () => active as never });
  const j = joined.kind === 'ok' ? joined.observations.find((x) => x.check === 'disk.readonly' && x.subject === fs.mountPoint) : undefined;
  t.match(j?.message, new RegExp(`kernel made it read-only.*The kernel logged: .*${dev}`));
  t.ok(Array.isArray(j?.evidence['kernel']), 'the kernel findings are in the evidence');
});

t.test('live: an ext4 corrupted with debugfs (a file inode cleared) logs a real EXT4-fs error on first lookup and is remounted read-only: kernel.fsError, kernel.fsReadonly and disk.readonly, joined', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup', 'debugfs'] })) return;
  const fs = makeLoopFs(16);
  t.teardown(() => fs.cleanup());
  mkdirSync(path.join(fs.mountPoint, 'data'));
  writeFileSync(path.join(fs.mountPoint, 'data', 'f'), 'hi\n');
  const ino = statSync(path.join(fs.mountPoint, 'data', 'f')).ino;
  execFileSync('umount', [fs.mountPoint]);
  execFileSync('debugfs', ['-w', '-R', `clri <${ino}>`, fs.device], { stdio: 'ignore' });
  execFileSync('mount', ['-t', 'ext4', '-o', 'errors=remount-ro', fs.device, fs.mountPoint]);
  const env = envFor('/');
  const { kernel } = await import('../../collectors/kernel.js');
  const { KmsgReader } = await import('../../agent/host/kmsg.js');
  const kmsg = new KmsgReader({ host: env.host });
  t.teardown(() => kmsg.stop());
  const kctx = () => ({ ...contextFor(kernel, '/', { env }), kmsg });
  const dev = path.basename(fs.device);
  const k0 = await kernel.collect(kctx() as never);
  const before = k0.kind === 'ok' ? k0.data : undefined;
  const d0 = await disk.collect(contextFor(disk, '/', { env }));
  t.notOk(d0.kind === 'ok' && d0.observations.some((f) => f.subject === fs.mountPoint), 'mounted read-write, nothing to say yet');
  // The first lookup of the cleared inode: "deleted inode referenced", and errors=remount-ro does the rest.
  t.throws(() => readFileSync(path.join(fs.mountPoint, 'data', 'f')), /-117|EUCLEAN/, 'the file is gone from under its entry (EUCLEAN, 117: Structure needs cleaning)');
  const k = await kernel.collect({ ...kctx(), previous: before } as never);
  const said = k.kind === 'ok' ? k.observations.filter((o) => o.subject === dev) : [];
  const err = said.find((o) => o.check === 'kernel.fsError');
  t.match(err?.message, new RegExp(`^The kernel reports an ext4 error on ${dev}: ext4_lookup:\\d+: inode #\\d+: comm node: deleted inode referenced: ${ino}`), 'the real error line, with the inode debugfs cleared');
  t.equal(err?.severity, 'critical');
  t.ok(said.some((o) => o.check === 'kernel.fsReadonly'), 'and the real remount');
  const active = said.map((o) => ({ ...o, firstSeen: new Date().toISOString() }));
  const d = await disk.collect({ ...contextFor(disk, '/', { env, previous: d0.kind === 'ok' ? d0.data : undefined }), active: () => active as never });
  const ro = d.kind === 'ok' ? d.observations.find((x) => x.check === 'disk.readonly' && x.subject === fs.mountPoint) : undefined;
  t.equal(ro?.severity, 'critical');
  t.match(ro?.message, new RegExp(`kernel made it read-only.*The kernel logged: .*${dev}`));
  t.throws(() => writeFileSync(path.join(fs.mountPoint, 'new'), 'x'), /EROFS/, 'writes fail, as the finding says');
});

t.test('live: a mount whose statfs hangs is disk.unresponsive; the other filesystems are still reported', async (t) => {
  if (!requireLive(t, { root: true, paths: ['/dev/fuse'] })) return;
  const fuse = hungFuseMount();
  t.teardown(() => fuse.cleanup());
  const mnt = fuse.mountPoint;
  t.ok(readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `), 'mounted');

  const sets = ['collectors.disk.statfsTimeout=500ms', 'collectors.disk.includeTmpfs=false'];
  const env = envFor('/', sets);
  const r = await disk.collect(contextFor(disk, '/', { env, sets }));
  t.equal(r.kind, 'ok');
  if (r.kind !== 'ok') return;
  // FUSE mounts show as fuse (no subtype).
  const hung = r.data.rows.find((x) => x.mountPoint === mnt);
  t.equal(hung?.status, 'unresponsive');
  t.ok(r.observations.some((f) => f.check === 'disk.unresponsive' && f.subject === mnt), 'finding names the mount');
  t.equal(r.data.rows.find((x) => x.mountPoint === '/')?.status, 'ok', 'the root filesystem is still measured');

  const again = await disk.collect(contextFor(disk, '/', { env, sets }));
  const againRow = again.kind === 'ok' ? again.data.rows.find((x) => x.mountPoint === mnt) : undefined;
  t.equal(againRow?.status, 'unresponsive', 'still unresponsive on the next cycle');
  t.match(againRow?.error, /not answering since/, 'and it says since when');
  t.equal(again.kind === 'ok' && again.data.rows.find((x) => x.mountPoint === '/')?.status, 'ok', 'kept out of the batch: the others are measured');

  fuse.abort();
  // The hung statfs returns once the connection is gone; the next cycles see the mount answer again.
  const stillHung = async () => {
    const after = await disk.collect(contextFor(disk, '/', { env, sets }));
    return after.kind === 'ok' && after.observations.some((f) => f.check === 'disk.unresponsive' && f.subject === mnt);
  };
  t.ok(await eventually(async () => !(await stillHung()), 30_000), 'answers again once the connection is gone');
});

t.test('live: kubelet root dir on a filling filesystem: disk.eviction warns within the margin, then critical', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup', 'fallocate'] })) return;
  const fs = makeLoopFs(64);
  t.teardown(() => fs.cleanup());
  const kubelet = path.join(fs.mountPoint, 'kubelet');
  mkdirSync(kubelet);
  const sets = [`collectors.disk.eviction.kubeletRootDir=${kubelet}`, `collectors.disk.eviction.runtimeRootDirs=[${path.join(fs.mountPoint, 'no-runtime')}]`];
  const env = envFor('/', sets);
  const evictionFor = async () => {
    const r = await disk.collect(contextFor(disk, '/', { env, sets }));
    return r.kind === 'ok' ? r.observations.find((f) => f.check === 'disk.eviction' && f.subject === fs.mountPoint) : undefined;
  };
  t.equal(await evictionFor(), undefined, 'empty: nothing');
  fillTo(fs, 88);
  const soon = await evictionFor();
  t.equal(soon?.severity, 'warning', `about 12% available, within 5 points of nodefs.available 10%: ${soon?.message}`);
  t.match(soon?.message, /Pods will be evicted soon/);
  fillTo(fs, 93, 'more');
  const now = await evictionFor();
  t.equal(now?.severity, 'critical', 'about 7% available: kubelet is evicting');
  t.match(now?.remedy, /crictl rmi --prune|docker image prune/);
});

t.test('imagefs is evaluated on its own: kubelet found by its kubepods cgroup, its root dir elsewhere', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-imagefs-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'proc/1'), { recursive: true });
  mkdirSync(path.join(root, 'var/lib/containerd'), { recursive: true });
  writeFileSync(path.join(root, 'proc/1/mountinfo'), '30 1 8:1 / / rw - ext4 /dev/sda1 rw\n31 30 8:17 / /var/lib/containerd rw - ext4 /dev/sdb1 rw\n');
  // Thresholds every real filesystem is under, so the test does not depend on this machine's disks.
  const sets = ['collectors.disk.eviction.imagefsAvailable=100', 'collectors.disk.eviction.nodefsAvailable=100', 'collectors.disk.eviction.margin=0'];
  const eviction = async () => {
    const r = await disk.collect(contextFor(disk, root, { sets }));
    return r.kind === 'ok' ? r.observations.filter((f) => f.check === 'disk.eviction').map((f) => [f.subject, f.evidence['worstSignal']]) : [];
  };
  t.same(await eviction(), [], 'no kubelet root dir and no kubepods cgroup: no kubelet, nothing to evict');
  mkdirSync(path.join(root, 'sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice'), { recursive: true });
  t.same(await eviction(), [['/var/lib/containerd', 'imagefs.available']], 'kubelet runs (kubepods), its root dir is not the default: imagefs is still watched');
  mkdirSync(path.join(root, 'var/lib/kubelet'), { recursive: true });
  t.same((await eviction()).sort(), [['/', 'nodefs.available'], ['/var/lib/containerd', 'imagefs.available']], 'with the root dir, nodefs too');
});

t.test('live: imagefs over the image GC threshold, filled by what GC cannot remove: disk.imageGc from the background du measurement', async (t) => {
  const node = nodeOnLoopFs(t, 64);
  if (!node) return;
  const { fs, runtimeRoot, sets } = node;
  mkdirSync(path.join(runtimeRoot, 'volumes'), { recursive: true });
  const cfg = loadConfig({ node: 'live', sets });
  const env = envFor('/', sets);
  let measured = 0;
  const fillers = createFillersAccess(() => (measured++, measureNode(env, cfg, { timeoutMs: 60_000, maxEntries: 1_000_000, threads: 2 })));
  const imageGc = async () => {
    const r = await disk.collect({ ...contextFor(disk, '/', { env, sets }), fillers });
    return r.kind === 'ok' ? r.observations.filter((f) => f.check === 'disk.imageGc' && f.subject === fs.mountPoint) : [];
  };
  t.same(await imageGc(), [], 'empty: nothing');
  t.equal(measured, 0, 'under the high threshold: not measured');
  fillTo(fs, 90, 'docker/volumes/big');
  t.same(await imageGc(), [], 'over it: the first run starts the measurement and does not wait on it');
  t.equal(measured, 1);
  await fillers.idle();
  const [found] = await imageGc();
  t.equal(measured, 1, 'paced: not measured again within fillersEvery');
  t.ok(found, 'the next run uses the finished measurement');
  t.equal(found?.severity, 'critical', 'no unused image frees anything');
  t.match(found?.message, /can free at most \S+ \(0 unused images\)/);
  t.match(found?.message, new RegExp(`The space is in: other files in ${runtimeRoot} \\(4\\d(\\.\\d)?M\\)`), 'names where the space is, with its size');
  t.ok(Number(found?.evidence['bytesToFree']) > 0, 'with what GC wants');
  unlinkSync(path.join(runtimeRoot, 'volumes/big'));
  t.same(await imageGc(), [], 'back under the threshold: the live statfs clears it');
});

t.test('live: a writer grows an emptyDir 1 MiB/s on a 200 MiB nodefs: the rate and the time to the nearest eviction threshold are within 25% of the truth', async (t) => {
  const node = nodeOnLoopFs(t, 200);
  if (!node) return;
  const { fs, kubelet, runtimeRoot, podLogs } = node;
  const uid = '3f0c6a52-8d1e-4b7a-9c2f-5e6d7a8b9c01';
  const emptyDir = path.join(kubelet, 'pods', uid, 'volumes/kubernetes.io~empty-dir/data');
  mkdirSync(emptyDir, { recursive: true });
  mkdirSync(runtimeRoot);
  mkdirSync(path.join(podLogs, `ingest_ingest-3_${uid}`, 'main'), { recursive: true });
  // A margin of 45 points: disk.eviction fires from the first run, so every run samples and refreshes.
  const sets = [...node.sets, 'collectors.disk.eviction.margin=45', 'collectors.disk.fillersEvery=10s', 'collectors.disk.growth.window=60s', 'collectors.disk.growth.minSpan=10s'];
  const cfg = loadConfig({ node: 'live', sets });
  const env = envFor('/', sets);
  const index = createTreeIndex();
  const fillers = createFillersAccess(() => measureNode(env, cfg, { timeoutMs: 60_000, maxEntries: 1_000_000, threads: 2 }), { refresh: (roots) => index.refresh(roots) });
  fillTo(fs, 50);
  const file = path.join(emptyDir, 'ingest.bin');
  writeFileSync(file, Buffer.alloc(2 * MiB, 1));

  const eviction = async (previous: unknown) => {
    const r = await disk.collect({ ...contextFor(disk, '/', { env, sets, previous }), fillers });
    if (r.kind !== 'ok') throw new Error('disk: no data');
    return { data: r.data, f: r.observations.find((o) => o.check === 'disk.eviction' && o.subject === fs.mountPoint), row: r.data.rows.find((x) => x.mountPoint === fs.mountPoint)! };
  };
  let run = await eviction(undefined);
  t.ok(run.f, 'disk.eviction fires within the margin');
  t.equal(run.f?.evidence['growth'], undefined, 'the first run of an agent has no history: no rate');

  // The writer: 1 MiB/s, catching up on the schedule so a late timer does not lower the rate.
  const rate = MiB; // bytes per second
  const chunk = Buffer.alloc(64 * 1024, 2);
  const fd = openSync(file, 'a');
  const started = Date.now();
  let written = 0;
  const timer = setInterval(() => {
    while (written < ((Date.now() - started) / 1000) * rate) written += writeSync(fd, chunk);
  }, 50);
  t.teardown(() => {
    clearInterval(timer);
    closeSync(fd);
  });
  const until = started + 24_000;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 3000));
    run = await eviction(run.data);
  }
  clearInterval(timer);
  const growth = run.f?.evidence['growth'] as { ratePerMinute: number; minutesToThreshold: number | null; sustained: boolean } | undefined;
  t.ok(growth, `a rate after ${Math.round((Date.now() - started) / 1000)} s: ${run.f?.message}`);
  if (!growth) return;
  const truth = rate * 60;
  t.ok(Math.abs(growth.ratePerMinute - truth) <= truth / 4, `rate ${(growth.ratePerMinute / MiB).toFixed(1)} MiB/min, truth 60 MiB/min`);
  // nodefs and imagefs are the same filesystem here: the nearest threshold is imagefs.available's 15%.
  // The truth at the last sample: the bytes left above it (of statfs size), at the write rate.
  const left = (run.row.avail ?? 0) - (run.row.size ?? 0) * 0.15;
  const minutes = left / truth;
  t.ok(growth.minutesToThreshold !== null && Math.abs(growth.minutesToThreshold - minutes) <= minutes / 4, `estimate ${growth.minutesToThreshold} min, truth ${minutes.toFixed(2)} min`);
  t.match(run.f?.message, /imagefs reaches kubelet's 15% eviction threshold in (under a minute|about \d+ min) at the current \d+ MiB\/min, mostly emptyDir data of ingest\/ingest-3 \(\S+, \+\d+ MiB\/min\)/, 'says how soon, how fast, and who');
  t.equal(run.f?.severity, 'critical', 'steady growth reaching the threshold within 30 min: critical before kubelet evicts');
  await fillers.idle();
});
