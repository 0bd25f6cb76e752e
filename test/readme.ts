// The README and docs/ are part of the product: the README's collector table, docs/configuration.md's
// defaults block, docs/cli.md's usage and docs/kubernetes.md's NodeConditions must match the code.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { COLLECTORS, nodeConditions } from '../collectors/index.js';

const readme = readFileSync('README.md', 'utf8');
const configuration = readFileSync('docs/configuration.md', 'utf8');
const cli = readFileSync('docs/cli.md', 'utf8');
const kubernetes = readFileSync('docs/kubernetes.md', 'utf8');
const collectorsDoc = readFileSync('docs/collectors.md', 'utf8');

t.test('the defaults block is what `nodewarden config` prints', async (t) => {
  const block = /<!-- defaults:begin -->\n```yaml\n([\s\S]*?)```\n<!-- defaults:end -->/.exec(configuration)?.[1];
  const printed = spawnSync(process.execPath, ['dist/cli/main.js', 'config'], { encoding: 'utf8', env: { ...process.env, NODE_NAME: '' } }).stdout;
  t.equal(block, printed, 'regenerate with: npm run docs');
});

t.test('every collector and every check it raises is in the collector tables (README and docs/collectors.md)', async (t) => {
  for (const [name, text] of [['README', readme], ['docs/collectors.md', collectorsDoc]] as const) {
    for (const c of COLLECTORS) {
      t.match(text, new RegExp(`\\| \`${c.name}\` \\|`), `${name}: collector ${c.name}`);
      for (const check of c.checks) t.ok(text.includes(`\`${check}\``), `${name}: check ${check}`);
    }
  }
});

t.test('every docs/ page the README links to exists, and every relative link in docs/ resolves', async (t) => {
  for (const [file, text] of [['README.md', readme], ...['cli', 'configuration', 'collectors', 'reference', 'kubernetes', 'alerts', 'design', 'benchmarks', 'tests'].map((p) => [`docs/${p}.md`, readFileSync(`docs/${p}.md`, 'utf8')] as const)]) {
    for (const m of text.matchAll(/\]\(([^)#:\s]+)(#[^)]*)?\)/g)) {
      const target = file.startsWith('docs/') ? `docs/${m[1]}` : m[1]!;
      t.ok(existsSync(target.replace(/^docs\/\.\.\//, '')), `${file} links to ${m[1]}`);
    }
  }
  t.ok(readme.split('\n').length < 150, 'the README stays a front page');
  t.notMatch(readme + collectorsDoc, /\bsession \d|\.\.\/shared|HOUSE-STYLE/, 'no work log, no paths outside the clone');
});

t.test("the Kubernetes exporter's list of NodeConditions is the one the collectors declare", async (t) => {
  const listed = /shows them: ([\s\S]*?): True with/.exec(kubernetes)?.[1] ?? '';
  const types = [...listed.matchAll(/`([A-Z][A-Za-z]+)`/g)].map((m) => m[1]);
  t.same(types, nodeConditions().map((c) => c.type), 'the README lists them in the registry order');
});

t.test('the two commands a fresh machine needs open the README', async (t) => {
  const head = readme.slice(0, 1200);
  t.match(head, /npm ci && npm start/);
  t.match(head, /npm test/);
});

t.test("the CLI reference is the command table's usage, and lists every flag each command accepts", async (t) => {
  const { COMMANDS, usageBlock } = await import('../cli/commands.js');
  const block = /<!-- usage:begin -->\n```\n([\s\S]*?)```\n<!-- usage:end -->/.exec(cli)?.[1];
  t.equal(block, `${usageBlock()}\n`, 'regenerate with: npm run docs');
  // Each command's usage (with its continuation lines) in the README, and in its own --help.
  const chunks = new Map<string, string>();
  for (const chunk of (block ?? '').split(/\n(?=nodewarden )/)) chunks.set(chunk.split(/\s+/)[1] ?? '', chunk);
  for (const cmd of COMMANDS) {
    const readmeUsage = chunks.get(cmd.name) ?? '';
    const help = spawnSync(process.execPath, ['dist/cli/main.js', cmd.name, '--help'], { encoding: 'utf8' });
    t.equal(help.status, 0, `${cmd.name} --help exits 0`);
    for (const flag of cmd.flags) {
      t.match(readmeUsage, new RegExp(`--${flag.name}\\b`), `README: ${cmd.name} --${flag.name}`);
      t.match(help.stdout, new RegExp(`--${flag.name}\\b.*\\S`), `${cmd.name} --help explains --${flag.name}`);
    }
  }
  t.match(chunks.get('up'), /--set KEY=VALUE/, 'up takes --set');
  t.match(chunks.get('who-holds'), /--config FILE/, 'who-holds --config is documented');
});
