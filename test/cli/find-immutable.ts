// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeLoopFs, requireLive } from '../helpers/live.js';
import { runSync } from '../helpers/processes.js';

t.test('live: find-immutable on a loop filesystem with chattr +i and +a files', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup', 'chattr', 'lsattr'] })) return;
  const fs = makeLoopFs(16);
  const m = fs.mountPoint;
  t.teardown(() => {
    spawnSync('chattr', ['-R', '-i', '-a', m]);
    fs.cleanup();
  });
  mkdirSync(path.join(m, 'a', 'b'), { recursive: true });
  mkdirSync(path.join(m, 'with space'));
  for (const f of ['a/b/locked', 'a/log', 'a/plain', 'with space/x', 'a/both']) writeFileSync(path.join(m, f), 'x');
  execFileSync('chattr', ['+i', path.join(m, 'a/b/locked'), path.join(m, 'with space/x')]);
  execFileSync('chattr', ['+a', path.join(m, 'a/log')]);
  execFileSync('chattr', ['+i', '+a', path.join(m, 'a/both')]);

  const r = runSync(['find-immutable', m]);
  t.equal(r.code, 0, 'exit 0 when something is found, as grep');
  const lines = r.stdout.trimEnd().split('\n');
  const w = `${m}/with space/x`.length;
  t.same(lines.slice(0, -1), [
    `i-  ${`${m}/a/b/locked`.padEnd(w)}  chattr -i ${m}/a/b/locked`,
    `ia  ${`${m}/a/both`.padEnd(w)}  chattr -ia ${m}/a/both`,
    `-a  ${`${m}/a/log`.padEnd(w)}  chattr -a ${m}/a/log`,
    `i-  ${m}/with space/x  chattr -i '${m}/with space/x'`,
  ], 'every flagged file once, with its attributes and the exact chattr that clears it');
  const entries = execFileSync('find', [m], { encoding: 'utf8' }).trimEnd().split('\n').length - 1;
  t.equal(lines.at(-1), `# ${entries} entries scanned, 4 with i or a; each line ends with the chattr that clears it`, 'the summary counts what find lists below the path');
  t.equal(r.stderr, '');

  const lsattr = execFileSync('lsattr', ['-R', m], { encoding: 'utf8' }).split('\n').filter((l) => /^[-a-zA-Z]+ /.test(l) && /[ia]/.test(l.split(' ')[0]!)).length;
  t.equal(lsattr, 4, 'lsattr -R agrees on how many');

  const json = runSync(['find-immutable', '--json', path.join(m, 'a')]);
  t.equal(json.code, 0);
  t.same(JSON.parse(json.stdout), {
    scanned: 5,
    unreadable: 0,
    found: [
      { path: `${m}/a/b/locked`, attributes: 'i-', chattr: `chattr -i ${m}/a/b/locked` },
      { path: `${m}/a/both`, attributes: 'ia', chattr: `chattr -ia ${m}/a/both` },
      { path: `${m}/a/log`, attributes: '-a', chattr: `chattr -a ${m}/a/log` },
    ],
  }, '--json below a/: b, b/locked, both, log, plain');

  // Every printed command works as printed: after running them, each file can be removed.
  for (const line of lines.slice(0, -1)) execFileSync('sh', ['-c', line.slice(line.indexOf('chattr '))]);
  for (const f of ['a/b/locked', 'a/both', 'a/log', 'with space/x']) {
    t.doesNotThrow(() => rmSync(path.join(m, f)), `${f} can be removed after its chattr`);
  }
  const after = runSync(['find-immutable', path.join(m, 'a')]);
  t.equal(after.code, 1, 'exit 1 when nothing is found');
  t.equal(after.stdout, '# 2 entries scanned, 0 with i or a\n', 'a/b and a/plain are left');
});

t.test('a path that cannot be read is a usage error with one line on stderr', async (t) => {
  const r = runSync(['find-immutable', '/nonexistent-nw-path']);
  t.equal(r.code, 3);
  t.equal(r.stdout, '');
  t.match(r.stderr, /^nodewarden: cannot read \/nonexistent-nw-path\n$/);
});

t.test('find-immutable needs a path', async (t) => {
  const r = runSync(['find-immutable']);
  t.equal(r.code, 3);
  t.match(r.stderr, /find-immutable/);
});
