import t from 'tap';
import { readFileSync } from 'node:fs';
import { runSync } from '../helpers/processes.js';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };

t.test('--version and -V print the package version', async (t) => {
  for (const flag of ['--version', '-V']) {
    const r = runSync([flag]);
    t.same([r.code, r.stdout, r.stderr], [0, `${pkg.version}\n`, ''], flag);
  }
});

t.test('help: exit 0 when asked for, 3 when no command was given', async (t) => {
  const asked = runSync(['--help']);
  t.equal(asked.code, 0);
  t.match(asked.stdout, /who-holds/);
  t.match(asked.stdout, /find-immutable/);
  const none = runSync([]);
  t.equal(none.code, 3, 'no command: usage, exit 3');
  t.equal(none.stdout, asked.stdout, 'the same help');
  const about = runSync(['help', 'who-holds']);
  t.equal(about.code, 0);
  t.same(about.stdout, runSync(['who-holds', '--help']).stdout, '`help CMD` is `CMD --help`');
  t.match(about.stdout, /--host-root/);
});

t.test('usage errors: one line naming the problem and where help is, exit 3, no stack', async (t) => {
  const unknown = runSync(['frobnicate']);
  t.same([unknown.code, unknown.stdout, unknown.stderr], [3, '', "nodewarden: unknown command 'frobnicate'\nRun 'nodewarden --help' for usage.\n"]);
  const flag = runSync(['check', '--frobnicate']);
  t.equal(flag.code, 3);
  t.match(flag.stderr, /^nodewarden: .*frobnicate.*\nRun 'nodewarden check --help' for usage\.\n$/);
});

t.test('a coded error is one line and exit 3', async (t) => {
  const r = runSync(['check', '--host-root', '/nonexistent-nw-root']);
  t.same([r.code, r.stdout], [3, '']);
  t.equal(r.stderr, 'nodewarden: --host-root /nonexistent-nw-root: no such directory\n');
});
