import t from 'tap';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { VERSION } from '../../protocol/version.js';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };

t.test('the version is package.json\'s, from source and from the build', async (t) => {
  t.equal(VERSION, pkg.version, 'from source');
  t.equal(spawnSync(process.execPath, ['dist/cli/main.js', '--version'], { encoding: 'utf8' }).stdout, `${pkg.version}\n`, 'nodewarden --version');
});
