import t from 'tap';
import { COLLECTORS, collectorNames } from '../../collectors/index.js';
import { loadConfig } from '../../agent/config.js';

t.test('every collector has a unique name and a description for --help and the README', async (t) => {
  const names = collectorNames();
  t.equal(new Set(names).size, names.length, `names are unique: ${names.join(', ')}`);
  for (const c of COLLECTORS) {
    t.match(c.name, /^[a-z][a-z0-9-]*$/, `${c.name}: a name usable in --only and config keys`);
    t.ok(c.description.trim().length > 10, `${c.name}: has a description`);
    t.notMatch(c.description, /\n/, `${c.name}: description is one line`);
  }
});

t.test('checks are named area.check and no two collectors raise the same check', async (t) => {
  const owner = new Map<string, string>();
  for (const c of COLLECTORS) {
    t.ok(c.checks.length > 0, `${c.name} raises at least one check`);
    for (const check of c.checks) {
      t.match(check, /^[a-z]+\.[a-zA-Z.]+$/, `${c.name}: ${check} is area.check`);
      t.notOk(owner.has(check), `${check} is raised only by ${owner.get(check) ?? c.name}`);
      owner.set(check, c.name);
    }
  }
});

t.test('defaults are sane: the default config loads, and each timeout fits in its interval', async (t) => {
  const config = loadConfig({ node: 'n' });
  for (const c of COLLECTORS) {
    t.ok(c.defaultIntervalMs >= 1000, `${c.name}: interval at least 1 s`);
    t.ok(c.defaultTimeoutMs >= 100, `${c.name}: timeout at least 100 ms`);
    const s = config.collectors[c.name];
    t.ok(s, `${c.name} has a config section`);
    t.equal(s?.enabled, true, `${c.name} is on by default`);
    t.ok((s?.timeout ?? Infinity) <= (s?.interval ?? 0), `${c.name}: effective timeout ${s?.timeout} <= interval ${s?.interval}`);
    for (const key of c.waitsFor ?? []) {
      const top = key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], config);
      const own = (s as Record<string, unknown> | undefined)?.[key];
      t.ok(typeof (top ?? own) === 'number', `${c.name} waits for ${key}, which is a config duration`);
    }
    t.type(c.collect, 'function');
  }
});
