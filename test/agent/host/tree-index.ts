import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, symlinkSync, mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeIndexFs } from '../../../agent/host/attrs.js';
import { OVER_BUDGET_RETRY_MS, createTreeIndex as createIndex, createTreeIndexWorker, jsIndexFs, type IndexFs } from '../../../agent/host/tree-index.js';

const MiB = 1024 * 1024;
const duB1 = (p: string) => Number(execFileSync('du', ['-sx', '-B1', p], { encoding: 'utf8' }).split('\t')[0]);

/** 20 directories of 50 small files written an hour ago, and one large log written now. */
function tree(t: Test): { root: string; log: string } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-index-'));
  t.teardown(() => void spawnSync('rm', ['-rf', root]));
  const old = new Date(Date.now() - 3600_000);
  for (let d = 0; d < 20; d++) {
    const dir = path.join(root, `d${d}`, 'sub');
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 50; f++) {
      writeFileSync(path.join(dir, `f${f}`), 'x'.repeat(5000));
      utimesSync(path.join(dir, `f${f}`), old, old);
    }
  }
  const log = path.join(root, 'd0', 'app.log');
  writeFileSync(log, Buffer.alloc(2 * MiB, 1));
  return { root, log };
}

const native = nativeIndexFs();
if (!native && process.env['CI'] === 'true') t.fail('the native module is not built: the tree index runs on its lstat fallback only');
// The same behaviour from the native calls (one per directory) and from their lstatSync fallback.
for (const [label, fs] of [['native', native], ['lstat fallback', jsIndexFs]] as [string, IndexFs | undefined][]) {
  if (!fs) continue;
  const createTreeIndex = (o: Parameters<typeof createIndex>[0] = {}) => createIndex({ ...o, fs });
  t.test(`${label}: the first refresh indexes a root and counts what du counts; an unchanged tree costs a stat per directory and per watched file`, async (t) => {
    const { root } = tree(t);
    const index = createTreeIndex();
    const first = await index.refresh([root]);
    t.equal(first.bytes[root], duB1(root), 'the same bytes as du -sxB1');
    t.equal(first.indexed, 20 + 20 + 1 + 20 * 50, 'every entry indexed once');
    const again = await index.refresh([root]);
    t.equal(again.bytes[root], first.bytes[root], 'unchanged');
    t.equal(again.indexed, 0, 'nothing listed again');
    // The root, 40 directories and the one large file: 42 stats, against 1,041 entries.
    t.equal(again.calls, 1 + 40 + 1, 'a stat per directory and per watched file');
  });
  
  t.test(`${label}: a refresh sees a file growing, files added and removed, a directory renamed`, async (t) => {
    const { root, log } = tree(t);
    const index = createTreeIndex();
    await index.refresh([root]);
    appendFileSync(log, Buffer.alloc(3 * MiB, 2));
    t.equal((await index.refresh([root])).bytes[root], duB1(root), 'a large file appended to (its directory unchanged) is re-stat\'ed');
    writeFileSync(path.join(root, 'd7', 'sub', 'new'), Buffer.alloc(MiB, 3));
    const added = await index.refresh([root]);
    t.equal(added.bytes[root], duB1(root), 'a new file: its directory changed and is listed again');
    t.equal(added.indexed, 51, 'only that directory');
    rmSync(path.join(root, 'd3'), { recursive: true });
    renameSync(path.join(root, 'd4'), path.join(root, 'd4-renamed'));
    t.equal((await index.refresh([root])).bytes[root], duB1(root), 'removed and renamed directories');
  });
  
  t.test(`${label}: roots that vanish, files as roots, roots over the budget`, async (t) => {
    const { root, log } = tree(t);
    const index = createTreeIndex({ maxEntries: 100 });
    const r = await index.refresh([log, path.join(root, 'gone'), root]);
    t.equal(r.bytes[log], duB1(log), 'a file root');
    t.notOk(path.join(root, 'gone') in r.bytes, 'a missing root is not measured');
    t.notOk(root in r.bytes, 'a root past the entry budget is not measured (the full walk still is)');
    t.same(r.overBudget, [root], 'and is said to be over its budget');
    const again = await index.refresh([log, root]);
    t.equal(again.calls, 1, 'asked again, the root over its budget is not indexed again (it cost a listing per directory at every run): only the file root is stat-ed');
    t.same(again.overBudget, [root]);
    const budgetPerRoot = await createTreeIndex({ maxEntries: 100 }).refresh([path.join(root, 'd1'), path.join(root, 'd2')]);
    t.same(Object.keys(budgetPerRoot.bytes).sort(), [path.join(root, 'd1'), path.join(root, 'd2')], 'the budget is per root: two small roots of 51 entries each are both measured');
    const fewDirs = createTreeIndex({ maxDirs: 10 });
    t.same((await fewDirs.refresh([root])).overBudget, [root], 'a root of more directories than maxDirs (each one stat at every refresh) is over its budget too');
    const shared = await createTreeIndex({ maxDirs: 5 }).refresh([path.join(root, 'd1'), path.join(root, 'd2'), path.join(root, 'd3')]);
    t.same({ measured: Object.keys(shared.bytes), over: shared.overBudget }, { measured: [path.join(root, 'd1'), path.join(root, 'd2')], over: [path.join(root, 'd3')] }, 'the directory budget is shared by all roots, first come first: two roots of 2 directories fit in 5, a third does not');
    let clock = Date.now();
    const later = createTreeIndex({ maxEntries: 100, now: () => clock });
    await later.refresh([root]);
    clock += OVER_BUDGET_RETRY_MS + 1;
    const retried = await later.refresh([root]);
    t.ok(retried.calls > 20, `after ${OVER_BUDGET_RETRY_MS / 60_000} min it is tried again (${retried.calls} calls)`);
    const host = createTreeIndex({ hostPath: (p) => path.join(root, p) });
    const viaHost = await host.refresh(['/d1']);
    t.equal(viaHost.bytes['/d1'], duB1(path.join(root, 'd1')), 'host paths are mapped (--host-root), results keyed by host path');
  });
  
  t.test(`${label}: of a freshly written tree only the 32 most recently written files are watched, and a small one being appended to is seen`, async (t) => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'nw-index-'));
    t.teardown(() => void spawnSync('rm', ['-rf', root]));
    const now = Date.now();
    for (let i = 0; i < 100; i++) {
      writeFileSync(path.join(root, `f${i}`), 'x'.repeat(100));
      const when = new Date(now - (100 - i) * 1000);
      utimesSync(path.join(root, `f${i}`), when, when);
    }
    const index = createTreeIndex();
    await index.refresh([root]);
    t.equal((await index.refresh([root])).calls, 1 + 32, 'the root and 32 files, not 100');
    appendFileSync(path.join(root, 'f99'), Buffer.alloc(100 * 1024, 1));
    t.equal((await index.refresh([root])).bytes[root], duB1(root), 'the most recent file grew: seen without listing');
  });
  
  t.test(`${label}: a mount point under a root is never stat'ed, even one mounted on a directory indexed before`, async (t) => {
    const { root } = tree(t);
    const mounted = path.join(root, 'd5');
    const mounts = new Set<string>();
    const index = createTreeIndex({ mountPoints: async () => mounts });
    const before = (await index.refresh([root])).bytes[root]!;
    mounts.add(mounted);
    t.equal((await index.refresh([root])).bytes[root], before - duB1(mounted), 'the directory now a mount point is left out (another filesystem)');
  });

  t.test(`${label}: a mount point under a directory listed anew is not counted`, async (t) => {
    const { root } = tree(t);
    const index = createTreeIndex({ mountPoints: async () => new Set([path.join(root, 'd5')]) });
    t.equal((await index.refresh([root])).bytes[root], duB1(root) - duB1(path.join(root, 'd5')), 'the directory that is a mount point is left out');
  });

  t.test(`${label}: under --host-root, a mount point right under the host's / is never looked up (the root's host path ends in a slash)`, async (t) => {
    const { root } = tree(t);
    // The worker's mapping: "/" under a host root of R is "R/".
    const index = createTreeIndex({ hostPath: (p) => path.join(root, path.posix.resolve('/', p)), mountPoints: async () => new Set([path.join(root, 'd5')]) });
    const want = duB1(root) - duB1(path.join(root, 'd5'));
    t.equal((await index.refresh(['/'])).bytes['/'], want, 'listed anew: the mount point is left out');
    t.equal((await index.refresh(['/'])).bytes['/'], want, 'unchanged: the same');
  });

  t.test(`${label}: a directory of more entries than the budget is listed, never stat'ed entry by entry`, async (t) => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'nw-index-'));
    t.teardown(() => void spawnSync('rm', ['-rf', root]));
    mkdirSync(path.join(root, 'big'));
    for (let i = 0; i < 500; i++) writeFileSync(path.join(root, 'big', `f${i}`), '');
    const r = await createTreeIndex({ maxEntries: 100 }).refresh([root]);
    t.same(r.overBudget, [root], 'over its budget');
    t.equal(r.calls, 1 + 2 + 1, "the root's stat, its listing with its one entry's, and big's listing alone: none of its 500 entries looked up");
  });

  t.test(`${label}: a tree nested past 4096 bytes of path is measured as far as a path reaches, never thrown on`, async (t) => {
    const { root } = tree(t);
    const name = 'n'.repeat(200);
    // Each directory made relative to the last (no path of 4096 bytes or more is ever passed to the kernel).
    execFileSync(process.execPath, ['-e', `const fs = require('fs'); for (let i = 0; i < 30; i++) { fs.mkdirSync('${name}'); process.chdir('${name}'); }`], { cwd: root });
    const index = createTreeIndex();
    const first = await index.refresh([root]);
    t.ok(first.bytes[root]! > duB1(root) - 30 * 4096 && first.bytes[root]! <= duB1(root), `listed anew (${first.bytes[root]} of du's ${duB1(root)})`);
    t.equal((await index.refresh([root])).bytes[root], first.bytes[root], 'unchanged: the same');
  });
}

t.test('native: a directory whose name is not UTF-8 is counted by its own size and never entered, the same at every refresh; a symlink to a directory is not followed', { skip: native ? false : 'the native module is not built' }, async (t) => {
  const { root } = tree(t);
  const odd = Buffer.concat([Buffer.from(`${root}/odd-`), Buffer.from([0xff, 0xfe])]);
  mkdirSync(odd);
  writeFileSync(Buffer.concat([odd, Buffer.from('/data')]), Buffer.alloc(MiB, 1));
  symlinkSync(path.join(root, 'd1'), path.join(root, 'link'));
  const index = createIndex({ fs: native! });
  const first = (await index.refresh([root])).bytes[root]!;
  const whole = duB1(root);
  t.ok(first < whole && first >= whole - 1.1 * MiB, `what is inside the odd directory is left to the full walk (${first} of du's ${whole})`);
  const again = await index.refresh([root]);
  t.equal(again.bytes[root], first, 'the unchanged refresh agrees with the index');
  t.equal(again.calls, 1 + 40 + 1, 'and looks up neither the odd directory nor the symlink');
});

t.test("the agent's refresher runs the same index on a worker thread: the same bytes, and an unchanged tree as cheap", async (t) => {
  const { root, log } = tree(t);
  const index = createTreeIndexWorker({ hostRoot: '/', timeoutMs: 30_000, mountPoints: async () => new Set() });
  t.teardown(() => index.close());
  const first = await index.refresh([root]);
  t.equal(first.bytes[root], duB1(root), 'the same bytes as du -sxB1');
  const again = await index.refresh([root]);
  t.equal(again.calls, 1 + 40 + 1, 'the index is kept on the worker between refreshes');
  writeFileSync(log, Buffer.alloc(3 * MiB, 1), { flag: 'a' });
  t.equal((await index.refresh([root])).bytes[root], duB1(root), 'a growing file is seen');
});
