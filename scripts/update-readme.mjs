// Regenerates the generated blocks of docs/ (run after `npm run build`): the config defaults in
// docs/configuration.md from `nodewarden config`, and docs/cli.md's usage lines from the command table.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { usageBlock } from '../dist/cli/commands.js';

const printed = execFileSync(process.execPath, ['dist/cli/main.js', 'config'], { encoding: 'utf8', env: { ...process.env, NODE_NAME: '' } });
const blocks = [
  ['docs/configuration.md', /(<!-- defaults:begin -->\n```yaml\n)[\s\S]*?(```\n<!-- defaults:end -->)/, printed],
  ['docs/cli.md', /(<!-- usage:begin -->\n```\n)[\s\S]*?(```\n<!-- usage:end -->)/, `${usageBlock()}\n`],
];
for (const [file, re, text] of blocks) {
  const before = readFileSync(file, 'utf8');
  const next = before.replace(re, (_, a, b) => `${a}${text}${b}`);
  if (next === before) console.log(`${file}: generated block already up to date`);
  else {
    writeFileSync(file, next);
    console.log(`${file}: generated block updated`);
  }
}
