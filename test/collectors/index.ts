import t from 'tap';
import { COLLECTORS, collectorNames, nodeConditions } from '../../collectors/index.js';
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

t.test('every check declares its NodeCondition, or declares that it has none', async (t) => {
  for (const c of COLLECTORS) {
    t.same(Object.keys(c.conditions).sort(), [...c.checks].sort(), `${c.name}: one conditions entry per check, no more`);
    for (const [check, type] of Object.entries(c.conditions)) {
      // Nodewarden* types, or node-problem-detector's names where NPD has one (dashboards built for NPD keep working).
      if (type !== null) t.match(type, /^(Nodewarden[A-Z][A-Za-z]+|KernelDeadlock|ReadonlyFilesystem)$/, `${check}: ${type} is a Nodewarden* or NPD condition type`);
    }
  }
  const conditions = nodeConditions();
  const covered = new Set(conditions.flatMap((x) => x.checks));
  for (const c of COLLECTORS) {
    for (const check of c.checks) t.equal(covered.has(check), c.conditions[check] !== null, `${check} is in the exporter's table unless declared without one`);
  }
  t.equal(new Set(conditions.map((x) => x.type)).size, conditions.length, 'each condition type appears once');
});

t.test('nodeConditions groups checks by type, in declaration order, and leaves out checks without one', async (t) => {
  const base = COLLECTORS[0]!;
  const a = { ...base, name: 'a', checks: ['a.one', 'a.two', 'a.three'], conditions: { 'a.one': 'NodewardenX', 'a.two': null, 'a.three': 'NodewardenY' } };
  const b = { ...base, name: 'b', checks: ['b.one'], conditions: { 'b.one': 'NodewardenX' } };
  t.same(nodeConditions([a, b]), [
    { type: 'NodewardenX', checks: ['a.one', 'b.one'] },
    { type: 'NodewardenY', checks: ['a.three'] },
  ]);
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
