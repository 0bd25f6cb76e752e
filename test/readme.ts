// The README is part of the product: its defaults block and collector table must match the code.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { COLLECTORS } from '../collectors/index.js';

const readme = readFileSync('README.md', 'utf8');

t.test('the defaults block is what `nodewarden config` prints', async (t) => {
  const block = /<!-- defaults:begin -->\n```yaml\n([\s\S]*?)```\n<!-- defaults:end -->/.exec(readme)?.[1];
  const printed = spawnSync(process.execPath, ['dist/cli/main.js', 'config'], { encoding: 'utf8', env: { ...process.env, NODE_NAME: '' } }).stdout;
  t.equal(block, printed, 'regenerate with: npm run docs');
});

t.test('every collector and every check it raises is in the collector table', async (t) => {
  for (const c of COLLECTORS) {
    t.match(readme, new RegExp(`\\| \`${c.name}\` \\|`), `collector ${c.name}`);
    for (const check of c.checks) t.ok(readme.includes(`\`${check}\``), `check ${check}`);
  }
});

t.test('the two commands a fresh machine needs open the README', async (t) => {
  const head = readme.slice(0, 1200);
  t.match(head, /npm ci && npm start/);
  t.match(head, /npm test/);
});
