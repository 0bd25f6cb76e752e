// Regenerates the README's generated blocks (run after `npm run build`): the config defaults from
// `nodewarden config`, and the CLI reference's usage lines from the command table.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { usageBlock } from '../dist/cli/commands.js';

const printed = execFileSync(process.execPath, ['dist/cli/main.js', 'config'], { encoding: 'utf8', env: { ...process.env, NODE_NAME: '' } });
const readme = readFileSync('README.md', 'utf8');
const next = readme
  .replace(/(<!-- defaults:begin -->\n```yaml\n)[\s\S]*?(```\n<!-- defaults:end -->)/, (_, a, b) => `${a}${printed}${b}`)
  .replace(/(<!-- usage:begin -->\n```\n)[\s\S]*?(```\n<!-- usage:end -->)/, (_, a, b) => `${a}${usageBlock()}\n${b}`);
if (next === readme) console.log('README generated blocks already up to date');
else {
  writeFileSync('README.md', next);
  console.log('README generated blocks updated');
}
