// @live: the du walk on hostile trees, some of which need root (a tmpfs and a hung FUSE mount under the walked dir)
import t, { type Test } from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTreeWalker } from '../../../agent/host/attrs.js';
import type { TreeWalker } from '../../../collectors/common/fillers.js';
import { buildC } from '../../../bench/util.js';
import { hungFuseMount, requireLive } from '../../helpers/live.js';

const OPTS = { threads: 8, timeoutMs: 60_000, maxEntries: 10_000_000, excludes: [] as string[], devices: [null] };

function walkerOrFail(t: Test): TreeWalker | undefined {
  const w = createTreeWalker();
  if (!w) t.fail('the native module is not built (npm rebuild)');
  return w;
}

const duB1 = (p: string) => Number(execFileSync('du', ['-sx', '-B1', p], { encoding: 'utf8' }).split('\t')[0]);

function tempTree(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-duwalk-'));
  // rm -rf, not rmSync: the 2,000-level tree's paths are past what unlink(2) takes.
  t.teardown(() => void spawnSync('rm', ['-rf', dir]));
  return dir;
}

t.test('30,000 small files (the bench walks 200,000 and a million): every one counted, as du counts them; a 1 ms deadline stops it and says so', async (t) => {
  const walker = walkerOrFail(t);
  if (!walker || !requireLive(t, { commands: ['gcc'] })) return;
  const dir = tempTree(t);
  // 100 directories, each with a subdirectory, 300 files among them, each of one byte (one block each).
  execFileSync(buildC('make-tree.c'), [dir, '100', '300']);
  execFileSync('sh', ['-c', `for f in ${dir}/d0000*/f1?0; do echo x > "$f"; done`]);
  const r = await walker.walk([dir], OPTS);
  t.equal(r.partial, null);
  t.equal(r.entries, 1 + 100 * 2 + 30_000, 'the root, 200 directories, 30,000 files');
  t.equal(r.roots[0]!.bytes, duB1(dir), 'the bytes du -sx -B1 says');
  const cut = await walker.walk([dir], { ...OPTS, threads: 1, timeoutMs: 1 });
  t.equal(cut.partial, 'deadline', 'past its deadline the walk stops and says partial');
  t.ok(cut.entries < 30_201, `with fewer entries (${cut.entries})`);
  const budget = await walker.walk([dir], { ...OPTS, maxEntries: 5_000 });
  t.equal(budget.partial, 'budget');
});

t.test('2,000 levels deep (paths past PATH_MAX): walked to the bottom', async (t) => {
  const walker = walkerOrFail(t);
  if (!walker || !requireLive(t, { commands: ['python3'] })) return;
  const dir = tempTree(t);
  // mkdir relative to the last one: the full path is 10 KiB long, more than open(2) takes.
  execFileSync('python3', ['-c', `
import os
fd = os.open(${JSON.stringify(dir)}, os.O_RDONLY)
for i in range(2000):
    os.mkdir('dd%02d' % (i % 100), dir_fd=fd)
    nfd = os.open('dd%02d' % (i % 100), os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
f = os.open('bottom', os.O_CREAT | os.O_WRONLY, dir_fd=fd)
os.write(f, b'x' * 100000)
os.close(f)
`]);
  const r = await walker.walk([dir], OPTS);
  t.equal(r.partial, null);
  t.equal(r.errors, 0, 'no directory it could not open');
  t.equal(r.entries, 1 + 2000 + 1, 'every level and the file at the bottom');
  t.equal(r.roots[0]!.bytes, duB1(dir), 'as du counts it');
});

t.test('symlink loops are never followed; a hard link is counted once across roots', async (t) => {
  const walker = walkerOrFail(t);
  if (!walker) return;
  const dir = tempTree(t);
  mkdirSync(path.join(dir, 'a/b'), { recursive: true });
  symlinkSync('../..', path.join(dir, 'a/b/up'));
  symlinkSync('loop2', path.join(dir, 'loop1'));
  symlinkSync('loop1', path.join(dir, 'loop2'));
  symlinkSync(dir, path.join(dir, 'a/self'));
  writeFileSync(path.join(dir, 'a/file'), Buffer.alloc(64 * 1024, 1));
  execFileSync('ln', [path.join(dir, 'a/file'), path.join(dir, 'hard')]);
  const r = await walker.walk([dir], OPTS);
  t.equal(r.partial, null, 'the walk ends');
  t.equal(r.roots[0]!.bytes, duB1(dir), 'the whole tree as du counts it, the hard-linked file once');
  const a = path.join(dir, 'a');
  const hard = path.join(dir, 'hard');
  const self = path.join(dir, 'a/self');
  const two = await walker.walk([a, hard, self], { ...OPTS, devices: [null, null, null] });
  t.equal(two.roots[2]!.kind, 'other', 'a root that is a symlink is not followed either');
  const both = Number(execFileSync('du', ['-scx', '-B1', a, hard], { encoding: 'utf8' }).trim().split('\n').pop()!.split('\t')[0]);
  t.equal(two.roots[0]!.bytes + two.roots[1]!.bytes, both, 'the file under two roots counted once, as du -sc counts it');
});

t.test('files and directories vanishing during the walk: no error, no crash', async (t) => {
  const walker = walkerOrFail(t);
  if (!walker || !requireLive(t, { commands: ['gcc'] })) return;
  const dir = tempTree(t);
  execFileSync(buildC('make-tree.c'), [dir, '200', '150']);
  const rm = spawn('rm', ['-rf', dir], { stdio: 'ignore' });
  const exited = new Promise((r) => rm.once('exit', r));
  const r = await walker.walk([dir], OPTS);
  await exited;
  t.equal(r.partial, null, 'the walk finished');
  t.equal(r.errors, 0, 'what vanished is not an error');
  t.ok(r.entries <= 1 + 400 + 30_000, `it counted what was still there (${r.entries})`);
});

t.test('a mount under the walked dir is not crossed, and a hung one never hangs the walk', async (t) => {
  const walker = walkerOrFail(t);
  if (!walker || !requireLive(t, { root: true, paths: ['/dev/fuse'] })) return;
  const dir = tempTree(t);
  writeFileSync(path.join(dir, 'mine'), Buffer.alloc(32 * 1024, 1));
  const tmpfs = path.join(dir, 'tmpfs');
  mkdirSync(tmpfs);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', tmpfs]);
  t.teardown(() => void spawnSync('umount', ['-l', tmpfs]));
  execFileSync('dd', ['if=/dev/zero', `of=${tmpfs}/big`, 'bs=1M', 'count=16'], { stdio: 'ignore' });
  const hungAt = path.join(dir, 'deep/er/hung');
  mkdirSync(hungAt, { recursive: true });
  const hung = hungFuseMount(hungAt);
  t.teardown(() => hung.cleanup());
  // statfs on the hung mount does not answer (the daemon never reads /dev/fuse).
  const probe = spawnSync('stat', ['-f', hungAt], { timeout: 1000 });
  t.ok(probe.error || probe.signal, 'the FUSE mount really hangs');
  const started = Date.now();
  const r = await walker.walk([dir], { ...OPTS, timeoutMs: 10_000 });
  t.ok(Date.now() - started < 5_000, `the walk came back in ${Date.now() - started} ms`);
  t.equal(r.partial, null, 'finished, not cut by its deadline');
  t.ok(r.roots[0]!.bytes < 1024 * 1024, `the tmpfs's 16 MiB are not counted (${r.roots[0]!.bytes})`);
  const onTmpfs = await walker.walk([tmpfs, dir], { ...OPTS, devices: [execFileSync('stat', ['-c', '%Hd:%Ld', dir], { encoding: 'utf8' }).trim(), null] });
  t.equal(onTmpfs.roots[0]!.kind, 'elsewhere', 'a root on another device than the one asked for is not walked');
  t.equal(onTmpfs.roots[0]!.bytes, 0);
});

t.test("the agent's incremental refresh inside a hung FUSE mount: its deadline ends it, the agent's thread never waits, and it stops for good", async (t) => {
  if (!requireLive(t, { root: true, paths: ['/dev/fuse'] })) return;
  const { createTreeIndexWorker } = await import('../../../agent/host/tree-index.js');
  const hung = hungFuseMount();
  t.teardown(() => hung.cleanup());
  const index = createTreeIndexWorker({ hostRoot: '/', timeoutMs: 1500, mountPoints: async () => new Set([hung.mountPoint]) });
  t.teardown(() => index.close());
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 100);
  const started = Date.now();
  const err = await index.refresh([path.join(hung.mountPoint, 'data')]).then(() => undefined, (e: Error) => e);
  clearInterval(ticker);
  t.match(err?.message, /did not come back within 2 s \(a filesystem call stuck in the kernel\): refreshes stopped/);
  t.ok(Date.now() - started < 5000, `failed at its deadline (${Date.now() - started} ms)`);
  t.ok(ticks >= 10, `the agent's own thread kept running meanwhile (${ticks} timer ticks in 1.5 s)`);
  const again = await index.refresh([os.tmpdir()]).then(() => undefined, (e: Error) => e);
  t.match(again?.message, /refreshes stopped/, 'no second refresh is sent to a thread that is stuck');
});

t.test("the agent's incremental refresh of the host's / under --host-root lists it past a hung FUSE mount right under it, never looking the mount point up", async (t) => {
  if (!requireLive(t, { root: true, paths: ['/dev/fuse'] })) return;
  const { createTreeIndexWorker } = await import('../../../agent/host/tree-index.js');
  const hostRoot = mkdtempSync(path.join(os.tmpdir(), 'nw-host-root-'));
  mkdirSync(path.join(hostRoot, 'mnt'));
  writeFileSync(path.join(hostRoot, 'file'), 'x'.repeat(10_000));
  const hung = hungFuseMount(path.join(hostRoot, 'mnt'));
  // "/" maps to hostRoot + "/": its listing must still skip "mnt".
  const index = createTreeIndexWorker({ hostRoot, timeoutMs: 1500, mountPoints: async () => new Set([hung.mountPoint]) });
  t.teardown(async () => {
    hung.cleanup();
    await index.close();
    rmSync(hostRoot, { recursive: true, force: true });
  });
  const r = await index.refresh(['/']).then((x) => x, (e: Error) => e);
  t.notOk(r instanceof Error, `the refresh came back: ${r instanceof Error ? r.message : 'ok'}`);
  if (!(r instanceof Error)) t.ok(r.bytes['/']! >= 10_000, `the host's / measured (${r.bytes['/']} bytes)`);
});
