// Regenerates the README's config defaults block from `nodewarden config` (run after `npm run build`).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const printed = execFileSync(process.execPath, ['dist/cli/main.js', 'config'], { encoding: 'utf8', env: { ...process.env, NODE_NAME: '' } });
const readme = readFileSync('README.md', 'utf8');
const next = readme.replace(/(<!-- defaults:begin -->\n```yaml\n)[\s\S]*?(```\n<!-- defaults:end -->)/, (_, a, b) => `${a}${printed}${b}`);
if (next === readme) console.log('README defaults already up to date');
else {
  writeFileSync('README.md', next);
  console.log('README defaults updated');
}
