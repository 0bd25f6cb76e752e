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
  t.equal((c.collectors['disk'] as unknown as { usage: { warning: number } }).usage.warning, 85);
  t.equal(c.collectors['disk']?.interval, 30_000);
});

t.test('YAML and JSON files, and --set wins over the file', async (t) => {
  const y = loadConfig({ file: file('a.yaml', 'collectors:\n  disk:\n    usage: {warning: 70}\n    interval: 1m\n'), sets: ['collectors.disk.usage.critical=80'] });
  t.same((y.collectors['disk'] as unknown as { usage: object }).usage, { warning: 70, critical: 80 });
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

t.test('a shorter interval brings its timeout along, unless the timeout is set', async (t) => {
  const c = loadConfig({ sets: ['collectors.sockstat.interval=2s', 'collectors.sockets.interval=1m'] });
  t.equal(c.collectors['sockstat']?.timeout, 2000, 'sockstat: the timeout follows the interval down');
  t.equal(c.collectors['sockets']?.timeout, 20_000, 'a longer interval keeps the default timeout');
  const drift = loadConfig({ sets: ['collectors.drift.interval=2s'] });
  t.equal(drift.collectors['drift']?.interval, 2000, '`agent --set collectors.drift.interval=2s` just works');
  t.equal(drift.collectors['drift']?.timeout, 8000, 'and drift may still wait out runtime.timeout (5s) with 3s to spare for its reads');
  const quick = loadConfig({ sets: ['collectors.drift.interval=2s', 'runtime.timeout=1s'] });
  t.equal(quick.collectors['drift']?.timeout, 4000, 'with a 1s runtime timeout: 1s and the 3s for the reads');
  const sockstat = loadConfig({ sets: ['collectors.sockstat.interval=1s'] });
  t.equal(sockstat.collectors['sockstat']?.timeout, 1000, 'a collector that waits on nothing: the interval bounds it');
  const slow = loadConfig({ sets: ['runtime.timeout=20s'] });
  t.equal(slow.collectors['runtime']?.timeout, 25_000, 'a longer runtime timeout lengthens the runtime collector\'s');
  const explicit = loadConfig({ sets: ['collectors.sockstat.interval=2s', 'collectors.sockstat.timeout=1500ms'] });
  t.equal(explicit.collectors['sockstat']?.timeout, 1500, 'an explicit timeout is kept');
  const defaults = loadConfig({});
  t.same(Object.fromEntries(Object.entries(defaults.collectors).map(([n, c]) => [n, c.timeout])), { disk: 15_000, sockstat: 5000, sockets: 20_000, runtime: 12_000, drift: 20_000, immutable: 45_000, mounts: 20_000, pods: 25_000, kernel: 1000, pids: 10_000, conntrack: 5000, pressure: 5000, kubelet: 11_000 }, 'defaults unchanged (kubelet: its 8 s of waits and 3 s for its reads)');
});

t.test('contradictions between related keys name the value that would work', async (t) => {
  const problemsOf = (sets: string[]): string[] => {
    const err = t.throws(() => loadConfig({ sets })) as NodewardenError;
    t.equal(err.code, 'NW_ERR_CONFIG');
    return [...err.details];
  };
  const [runtime] = problemsOf(['collectors.runtime.timeout=2s']);
  t.match(runtime, /^collectors\.runtime\.timeout: 2s is shorter than what one run may wait out \(runtime\.timeout 5s\)/);
  t.match(runtime, /use at least 6\.3s, or lower runtime\.timeout to at most 1\.6s/, 'a timeout you set needs the waits and a quarter (the 3 s for the reads is only in the derived one)');
  const ok = loadConfig({ sets: ['runtime.timeout=1s', 'collectors.runtime.timeout=1500ms'] });
  t.equal(ok.collectors['runtime']?.timeout, 1500, 'a 1.5s timeout over a 1s runtime deadline is accepted as set');
  const [sweep] = problemsOf(['collectors.immutable.timeout=45s', 'collectors.immutable.sweepSlice=60s']);
  t.match(sweep, /^collectors\.immutable\.timeout: 45s is shorter than what one run may wait out \(runtime\.timeout 5s \+ collectors\.immutable\.sweepSlice 1m\)/);
  t.match(sweep, /use at least 81\.3s/);
  t.match(sweep, /or lower collectors\.immutable\.sweepSlice to at most 31s/);
  const [long] = problemsOf(['collectors.sockstat.timeout=1m']);
  t.match(long, /^collectors\.sockstat\.timeout: 1m must not be longer than the interval \(30s\): use at most 30s, or set collectors\.sockstat\.interval to at least 1m/);
  const all = problemsOf(['collectors.runtime.timeout=2s', 'collectors.sockstat.timeout=1m', 'logLevel=loud']);
  t.equal(all.length, 3, 'every problem at once');
});

t.test('a warning at or above its critical is refused, with every such pair named at once', async (t) => {
  const err = t.throws(() => loadConfig({ env: {}, sets: ['collectors.disk.usage.warning=99', 'collectors.disk.usage.critical=95', 'collectors.sockstat.orphans.warning=90', 'collectors.sockstat.orphans.critical=90'] })) as NodewardenError;
  t.equal(err.code, 'NW_ERR_CONFIG');
  t.same(err.details, ['collectors.disk.usage.warning: must be below collectors.disk.usage.critical (95), got 99', 'collectors.sockstat.orphans.warning: must be below collectors.sockstat.orphans.critical (90), got 90']);
});

t.test('a YAML error names FILE:LINE:COLUMN and the line, and does not end on a dangling colon', async (t) => {
  const err = t.throws(() => loadConfig({ env: {}, file: file('bad.yaml', 'collectors:\n  disk:\n    usage: : 3\n') })) as NodewardenError;
  t.equal(err.code, 'NW_ERR_CONFIG');
  t.match(err.message, /bad\.yaml:3:\d+ is not valid YAML or JSON: .+ \(the line reads: "usage: : 3"\)$/);
  t.notMatch(err.message, /:\s*$/);
});
