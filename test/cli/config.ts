import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { renderConfig } from '../../cli/config.js';
import { loadConfig } from '../../agent/config.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-cli-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('the printed config is itself a config file that loads to the same settings', async (t) => {
  const text = renderConfig({ sets: ['collectors.disk.interval=45s', 'runtime.containerdNamespaces=[k8s.io]'], node: 'n1' });
  const file = path.join(dir, 'roundtrip.yaml');
  writeFileSync(file, text);
  t.same(loadConfig({ file }), loadConfig({ sets: ['collectors.disk.interval=45s', 'runtime.containerdNamespaces=[k8s.io]'], node: 'n1' }));
  const doc = parse(text) as { collectors: { disk: { interval: string } }; runtime: { timeout: string } };
  t.equal(doc.collectors.disk.interval, '45s', 'durations are written as a person writes them');
  t.equal(doc.runtime.timeout, '5s');
});

t.test('each key carries its documentation as a comment', async (t) => {
  const text = renderConfig({ sets: [] });
  t.match(text, /^ {2}timeout: 5s {2}# how long one runtime API call may take/m);
  t.match(text, /^hostRoot: \/ {2}# where the host's root filesystem is seen/m);
});

t.test('an invalid config is NW_ERR_CONFIG listing every problem with its key path', async (t) => {
  const err = (() => {
    try {
      renderConfig({ sets: ['collectors.disk.interval=soon', 'runtime.timeout=-1s', 'nonsense'] });
    } catch (e) {
      return e as { code?: string; details?: string[] };
    }
    return undefined;
  })();
  t.equal(err?.code, 'NW_ERR_CONFIG');
  t.equal(err?.details?.length, 3, String(err?.details));
  t.ok(err?.details?.some((d) => d.startsWith('collectors.disk.interval:')));
  t.ok(err?.details?.some((d) => d.startsWith('runtime.timeout:')));
  t.ok(err?.details?.some((d) => d.startsWith('nonsense:')));
});

t.test('a config file that does not exist is NW_ERR_CONFIG', async (t) => {
  t.throws(() => renderConfig({ config: path.join(dir, 'missing.yaml'), sets: [] }), { code: 'NW_ERR_CONFIG' });
});
