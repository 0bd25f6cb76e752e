import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../agent/config.js';
import { NodewardenError } from '../../protocol/errors.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
};

t.test('defaults are documented values', async (t) => {
  const c = loadConfig({ env: { NODE_NAME: 'node-a' } });
  t.equal(c.node, 'node-a', 'node from NODE_NAME');
  t.equal(c.hostRoot, '/');
  t.equal((c.collectors['disk'] as { usage: { warning: number } }).usage.warning, 85);
  t.equal(c.collectors['disk']?.interval, 30_000);
});

t.test('YAML and JSON files, and --set wins over the file', async (t) => {
  const y = loadConfig({ file: file('a.yaml', 'collectors:\n  disk:\n    usage: {warning: 70}\n    interval: 1m\n'), sets: ['collectors.disk.usage.critical=80'] });
  t.same((y.collectors['disk'] as { usage: object }).usage, { warning: 70, critical: 80 });
  t.equal(y.collectors['disk']?.interval, 60_000);
  const j = loadConfig({ file: file('a.json', '{"collectors": {"sockets": {"enabled": false}}}') });
  t.equal(j.collectors['sockets']?.enabled, false);
});

t.test('every problem at once, with key paths', async (t) => {
  const p = file('bad.yaml', 'colectors: {}\ncollectors:\n  disk:\n    usage: {warning: 185}\n    interval: soon\n  sockstat:\n    timeout: 1m\n  nosuch: {}\nlogLevel: loud\n');
  const err = t.throws(() => loadConfig({ file: p })) as NodewardenError;
  t.equal(err.code, 'NW_ERR_CONFIG');
  const paths = err.details.map((d) => d.split(':')[0]);
  t.same(paths.sort(), ['collectors.disk.interval', 'collectors.disk.usage.warning', 'collectors.nosuch', 'collectors.sockstat.timeout', 'colectors', 'logLevel'].sort());
});

t.test('unreadable or malformed files are one clear error', async (t) => {
  const missing = t.throws(() => loadConfig({ file: path.join(dir, 'nope.yaml') })) as NodewardenError;
  t.equal(missing.code, 'NW_ERR_CONFIG');
  t.match(missing.message, /no such file/);
  const broken = t.throws(() => loadConfig({ file: file('broken.yaml', 'a: [1,\n') })) as NodewardenError;
  t.equal(broken.code, 'NW_ERR_CONFIG');
  const list = t.throws(() => loadConfig({ file: file('list.yaml', '- a\n- b\n') })) as NodewardenError;
  t.match(list.message, /mapping/);
  const set = t.throws(() => loadConfig({ sets: ['nonsense'] })) as NodewardenError;
  t.match(set.details.join(), /key\.path=value/);
});
