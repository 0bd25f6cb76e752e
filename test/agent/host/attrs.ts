import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createAttrAccess, nativeIndexFs, scanInGroups } from '../../../agent/host/attrs.js';
import type { AttrAccess, AttrScan, ScanProgress } from '../../../collectors/types.js';
import { decodeBytes } from '../../../collectors/common/text.js';

t.test('scanInGroups: every path scanned once, results summed, progress after each group up to all', async (t) => {
  const calls: string[][] = [];
  const scan = async (paths: string[], threads: number): Promise<AttrScan> => {
    t.equal(threads, 3);
    calls.push(paths);
    return { entries: paths.length * 10, errors: 1, flagged: paths.map((p) => [`${p}/f`, 1] as [string, number]) };
  };
  const paths = Array.from({ length: 100 }, (_, i) => `/u${i}`);
  const seen: ScanProgress[] = [];
  const r = await scanInGroups(scan, paths, 3, (p) => seen.push({ ...p }));
  t.same(calls.flat(), paths, 'each path once, in order');
  t.ok(calls.every((c) => c.length >= 3), 'a group keeps every thread busy');
  t.ok(calls.length <= 32 && calls.length > 1);
  t.same({ entries: r.entries, errors: r.errors, flagged: r.flagged.length }, { entries: 1000, errors: calls.length, flagged: 100 });
  t.same(seen[0], { units: 0, total: 100, entries: 0 });
  t.same(seen.at(-1), { units: 100, total: 100, entries: 1000 });
  t.ok(seen.every((p, i) => i === 0 || (p.units > seen[i - 1]!.units && p.entries >= seen[i - 1]!.entries)), 'only forward');
});

/** The native module, or undefined after skipping (failing under CI=true) when it is not built. */
function nativeAttrs(t: Test): AttrAccess | undefined {
  const attrs = createAttrAccess();
  if (attrs) return attrs;
  // npm ci builds it (node-gyp); in CI its absence is a failure, not a skip.
  if (process.env['CI'] === 'true') t.fail('the native attrs module is not built');
  else t.skip('the native module is not built', () => {});
  return undefined;
}

t.test('live: the native walk with progress finds what the walk without it finds', async (t) => {
  const attrs = nativeAttrs(t);
  if (!attrs) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-attrs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const units = Array.from({ length: 9 }, (_, i) => path.join(dir, `u${i}`));
  for (const u of units) {
    mkdirSync(path.join(u, 'a/b'), { recursive: true });
    writeFileSync(path.join(u, 'a/b/f'), 'x');
  }
  const seen: ScanProgress[] = [];
  const grouped = await attrs.scanTree(units, 2, (p) => seen.push(p));
  const whole = await attrs.scanTree(units, 2);
  t.same({ entries: grouped.entries, errors: grouped.errors, flagged: grouped.flagged }, { entries: whole.entries, errors: whole.errors, flagged: whole.flagged });
  t.equal(whole.entries, 27);
  t.same(seen.at(-1), { units: 9, total: 9, entries: 27 });
  t.ok(seen.length > 2, 'reports before the end');
});

t.test('an error about a path of any length names the end of the path, within a bounded message', async (t) => {
  const attrs = nativeAttrs(t);
  if (!attrs) return;
  const messageOf = (p: string): string => {
    try {
      attrs.attrsOf(p);
    } catch (e) {
      return (e as Error).message;
    }
    return '(no error)';
  };
  // Components over NAME_MAX: statx fails with ENAMETOOLONG, which attrsOf throws. The components are
  // two-byte characters, so a cut at a fixed byte count lands inside one.
  const component = 'é'.repeat(150);
  const long = '/' + Array.from({ length: 12 }, () => component).join('/') + '/the-file';
  t.ok(Buffer.byteLength(long) > 3600, 'a path far longer than the message');
  const message = messageOf(long);
  t.match(message, /^statx \.\.\.é+\/the-file: File name too long$/, 'the cut is marked and the file name ends it');
  t.notMatch(message, /\uFFFD/, 'no character is cut in half');
  t.ok(Buffer.byteLength(message) <= 32 + 3 + 256 + 128, `the message is bounded (${Buffer.byteLength(message)} bytes)`);
  t.equal(messageOf(`/${'x'.repeat(300)}`), `statx ...${'x'.repeat(256)}: File name too long`, 'a path over 256 bytes keeps its last 256');
  t.equal(messageOf('y'.repeat(256)), `statx ${'y'.repeat(256)}: File name too long`, 'a path of 256 bytes is whole');
});

t.test("the tree index's native calls: hostile and broken input is refused or reported gone, never crashes", async (t) => {
  const fs = nativeIndexFs();
  if (!fs) {
    if (process.env['CI'] === 'true') t.fail('the native module is not built');
    else t.comment('skipped: the native module is not built');
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-indexfs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'f'), 'x'.repeat(10_000));
  mkdirSync(path.join(dir, 'd'));
  t.equal(fs.list(path.join(dir, 'missing'), []), undefined, 'a missing directory: no listing');
  t.equal(fs.list(path.join(dir, 'f'), []), undefined, 'a file is not listed');
  t.equal(fs.statAt(path.join(dir, 'missing'), ['f']), undefined, 'names under a missing directory: none');
  const listed = fs.list(dir, ['d'])!;
  t.same([...listed.names].sort(), ['d', 'f']);
  const at = (name: string) => Array.from(listed.stats.subarray(listed.names.indexOf(name) * 6, listed.names.indexOf(name) * 6 + 6));
  t.equal(at('d')[0], 0, 'a name to skip (a mount point) is never looked up');
  t.equal(at('f')[0], 2, 'a regular file');
  t.ok(at('f')[5]! >= 10_000, 'its allocated bytes');
  const s = fs.statAt(dir, ['f', 'gone', '../' + path.basename(dir), 'a/b'.repeat(1000)])!;
  t.same([s[0], s[6], s[12], s[18]], [2, 0, 1, 0], 'a file, a vanished name, a relative path, a name longer than NAME_MAX');
  t.same(Array.from(fs.statAt(dir, ['f', 'x'.repeat(5000)])!), [...Array.from(fs.statAt(dir, ['f'])!), 0, 0, 0, 0, 0, 0], 'a name of 4095 bytes or more cannot be looked up (ENAMETOOLONG): gone, the others still are');
  t.same(Array.from(fs.statAt(`${dir}/${'x/'.repeat(2500)}`, ['f'])!), [0, 0, 0, 0, 0, 0], 'nor a name in such a directory');
  t.equal(fs.list('x'.repeat(5000), []), undefined, 'such a directory has no listing');
  // A mount point whose name is not UTF-8, as /proc/self/mountinfo's parser names it ("\\xff" for the byte).
  const oddBytes = Buffer.from([0x6f, 0x64, 0x64, 0x2d, 0xff, 0xfe]);
  mkdirSync(Buffer.concat([Buffer.from(`${dir}/`), oddBytes]));
  const withOdd = fs.list(dir, [decodeBytes(oddBytes)])!;
  const oddAt = withOdd.names.findIndex((n) => n.startsWith('odd-'));
  t.equal(withOdd.stats[oddAt * 6], 0, 'a mount point whose name is not UTF-8 is never looked up either');
  t.equal(withOdd.stats[withOdd.names.indexOf('d') * 6], 1, 'the other names still are');
  t.throws(() => fs.statAt(dir, 'f' as unknown as string[]), TypeError, 'names must be an array');
  t.throws(() => fs.statAt(dir, [42 as unknown as string]), TypeError, 'of strings');
});
