// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
// The conntrack collector on this machine's real nf_conntrack: a network namespace of our own where
// conntrack is in use (one iptables rule with a conntrack match), nf_conntrack_max lowered to 200 (it is
// global; restored afterwards), and UDP flows on its loopback filling the table to 92 % and then 97 %,
// read by `nodewarden check` run inside the namespace as the agent runs with hostNetwork. The table
// is never filled to the limit, so the kernel logs no "table full" for other tests to see.
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync, execFileSync } from 'node:child_process';
import path from 'node:path';
import { conntrack } from '../../collectors/conntrack.js';
import { contextFor } from '../helpers/context.js';
import { requireLive } from '../helpers/live.js';

const DIR = '/proc/sys/net/netfilter';
const MAX = path.join(DIR, 'nf_conntrack_max');
const BIN = path.resolve('dist/cli/main.js');

/** Sends one UDP datagram to each of `n` ports from `first` on the namespace's loopback: n conntrack entries (30 s each). */
function flows(ns: string, first: number, n: number): void {
  const script = `const s = require('dgram').createSocket('udp4'); let i = 0;
const next = () => { if (i >= ${n}) return s.close(); s.send('x', ${first} + i++, '127.0.0.1', next); }; next();`;
  execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { timeout: 30_000 });
}

function checkIn(ns: string): { findings: { check: string; severity: string; message: string; remedy: string; evidence: Record<string, number> }[]; data: { count: number; max: number } } {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, BIN, 'check', '--only', 'conntrack', '--json'], { encoding: 'utf8', timeout: 60_000 });
  const doc = JSON.parse(r.stdout) as { findings: never[]; data: { conntrack: { count: number; max: number } } };
  return { findings: doc.findings, data: doc.data.conntrack };
}

t.test('the table filling up in a namespace fires conntrack.usage, warning then critical', async (t) => {
  if (!requireLive(t, { root: true, commands: ['ip', 'iptables'] })) return;
  if (!existsSync(MAX)) {
    const mod = spawnSync('modprobe', ['nf_conntrack'], { encoding: 'utf8' });
    t.comment(`nf_conntrack is not loaded; modprobe nf_conntrack: exit ${mod.status ?? mod.error?.message} ${mod.stderr ?? ''}`);
  }
  if (!requireLive(t, { paths: [MAX] })) return;
  const ns = `nw-ct-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
  execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', 'ip link set lo up && iptables -A INPUT -m conntrack --ctstate NEW -j ACCEPT']);
  const saved = readFileSync(MAX, 'utf8').trim();
  t.teardown(() => writeFileSync(MAX, `${saved}\n`));
  writeFileSync(MAX, '200\n');

  const quiet = checkIn(ns);
  t.comment(`before: ${quiet.data.count} of ${quiet.data.max}`);
  t.equal(quiet.data.max, 200, 'the namespace sees the global limit');
  t.same(quiet.findings, []);

  flows(ns, 20_000, 184 - quiet.data.count);
  const warn = checkIn(ns);
  t.comment(`after 184 flows: ${warn.data.count} of ${warn.data.max}: ${warn.findings[0]?.message ?? 'no finding'}`);
  t.ok(warn.data.count >= 180 && warn.data.count < 190, 'the count is the flows made (92 %)');
  t.equal(warn.findings.length, 1);
  t.equal(warn.findings[0]?.check, 'conntrack.usage');
  t.equal(warn.findings[0]?.severity, 'warning');
  t.match(warn.findings[0]?.message, /holds 18\d connections, 9\d% of net\.netfilter\.nf_conntrack_max \(200\)/);
  t.match(warn.findings[0]?.remedy, /sysctl -w net\.netfilter\.nf_conntrack_max=400$/);

  flows(ns, 21_000, 194 - warn.data.count);
  const crit = checkIn(ns);
  t.comment(`after 10 more: ${crit.data.count} of ${crit.data.max}: ${crit.findings[0]?.severity ?? 'no finding'}`);
  t.ok(crit.data.count < 200, 'never at the limit: no packet dropped');
  t.equal(crit.findings[0]?.severity, 'critical');
});

t.test("this machine's own table at defaults fires nothing", async (t) => {
  if (!requireLive(t, { paths: [MAX] })) return;
  const r = await conntrack.collect(contextFor(conntrack, '/'));
  t.equal(r.kind, 'ok');
  if (r.kind !== 'ok') return;
  t.comment(`root namespace: ${r.data.count} of ${r.data.max}`);
  t.same(r.observations, []);
});
