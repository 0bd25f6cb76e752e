// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
// The conntrack collector and the kernel's "table full" on this machine's real nf_conntrack, in network
// namespaces of our own where conntrack is in use (one iptables rule with a conntrack match), with the
// global nf_conntrack_max lowered (restored afterwards, whatever happens). The count is per namespace
// (nf_conntrack_count read inside it) against that one global max, so `nodewarden check` runs inside the
// namespace as the agent runs with hostNetwork. First UDP flows fill the table to 92 % and then 97 %;
// then TCP connections on loopback go past the limit: the count stops at the max (critical), the node's
// own namespace stays as it was, and the kernel's real line ("table full in netns N" on 6.18) raises
// kernel.conntrackFull naming that namespace. That line stays in the ring: kernel collectors run by
// other tests see it for their lookback (process tests turn the kernel collector off, QUIET_COLLECTORS).
import t from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import path from 'node:path';
import { conntrack } from '../../collectors/conntrack.js';
import { kernel } from '../../collectors/kernel.js';
import { KmsgReader } from '../../agent/host/kmsg.js';
import type { Observation } from '../../protocol/finding.js';
import { contextFor, envFor } from '../helpers/context.js';
import { until } from '../helpers/processes.js';
import { requireLive } from '../helpers/live.js';

const DIR = '/proc/sys/net/netfilter';
const COUNT = path.join(DIR, 'nf_conntrack_count');
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

/**
 * A node process in the namespace that listens on its loopback and opens `n` TCP connections to itself,
 * each given 300 ms, and holds them all: prints "connected N refused M" once done. Killed by its pid.
 */
function connectPast(ns: string, n: number): { pid: number; result: Promise<string>; stop(): void } {
  const script = `const net = require('net'); const held = [];
const srv = net.createServer((s) => held.push(s)).listen(0, '127.0.0.1', async () => {
  const port = srv.address().port; let ok = 0, bad = 0;
  for (let i = 0; i < ${n}; i++) {
    await new Promise((done) => {
      const c = net.connect(port, '127.0.0.1'); held.push(c);
      const timer = setTimeout(() => { bad++; c.destroy(); done(); }, 300);
      c.once('connect', () => { ok++; clearTimeout(timer); done(); });
      c.once('error', () => {});
    });
  }
  console.log('connected ' + ok + ' refused ' + bad);
});`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const result = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.once('exit', (code) => reject(new Error(`the connecting process exited (${code}) before it was done: ${out}`)));
  });
  return { pid: child.pid!, result, stop: () => void child.kill('SIGKILL') };
}

t.test('past the limit: the count stops at the max, the node\'s own table is untouched, and the kernel\'s "table full" raises kernel.conntrackFull naming the namespace', async (t) => {
  if (!requireLive(t, { root: true, commands: ['ip', 'iptables'], paths: [MAX, COUNT] })) return;
  // The max is global: the node's own namespace must stay well under the small limit set here.
  const LIMIT = 30;
  const rootBefore = Number(readFileSync(COUNT, 'utf8'));
  if (rootBefore > LIMIT / 2) {
    const why = `the root network namespace tracks ${rootBefore} connections: lowering nf_conntrack_max to ${LIMIT} would drop its packets`;
    if (process.env['CI'] === 'true') t.fail(why);
    else { t.comment(`SKIPPED LIVE TEST: ${why}`); t.skip(`SKIPPED: ${why}`, () => {}); }
    return;
  }
  const ns = `nw-ctfull-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
  execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', 'ip link set lo up && iptables -A INPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT']);
  const inode = statSync(`/run/netns/${ns}`).ino;

  // The kernel collector as the agent runs it, its reader's cursor placed before the fill.
  const env = envFor('/');
  env.kmsg = new KmsgReader({ host: env.host });
  t.teardown(() => env.kmsg?.stop());
  const runKernel = async (previous: unknown): Promise<{ obs: Observation[]; data: unknown }> => {
    const r = await kernel.collect({ ...contextFor(kernel, '/', { env, previous }), kmsg: env.kmsg } as never);
    if (r.kind !== 'ok') throw new Error(`${r.kind}: ${r.reason}`);
    return { obs: r.observations, data: r.data };
  };
  let { data } = await runKernel(undefined);

  // Namespace inodes are reused, so only lines from now on count (the ring may hold an earlier run's).
  const fullLines = (): string[] => spawnSync('dmesg', [], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes(`table full in netns ${inode}`));
  // The newest such line before this run (dmesg stamps each with its time, so lines are unique). Counting
  // lines instead failed on a machine whose ring was full: as many old lines left the ring as new ones came.
  // If that newest line itself has left the ring, every line still in it is newer.
  const lastBefore = fullLines().at(-1);
  const startedAt = Date.now();
  const saved = readFileSync(MAX, 'utf8').trim();
  t.teardown(() => writeFileSync(MAX, `${saved}\n`));
  writeFileSync(MAX, `${LIMIT}\n`);
  const conns = connectPast(ns, LIMIT + 10);
  t.teardown(() => conns.stop());
  const said = await conns.result;
  t.comment(`${LIMIT + 10} connections tried in ${ns} (netns ${inode}) with nf_conntrack_max ${LIMIT}: ${said}`);
  const [, ok, refused] = /connected (\d+) refused (\d+)/.exec(said) ?? [];
  t.equal(Number(ok), LIMIT, 'one entry per connection (its reply direction is the server side): exactly the max got through');
  t.equal(Number(refused), 10, 'the rest never did: their SYNs were dropped');

  const full = checkIn(ns);
  t.comment(`inside the namespace: ${full.data.count} of ${full.data.max}: ${full.findings[0]?.message ?? 'no finding'}`);
  t.equal(full.data.count, LIMIT, 'the count stops at the max');
  t.equal(full.findings[0]?.check, 'conntrack.usage');
  t.equal(full.findings[0]?.severity, 'critical');
  t.match(full.findings[0]?.message, new RegExp(`holds ${LIMIT} connections, 100% of net\\.netfilter\\.nf_conntrack_max \\(${LIMIT}\\)`));

  // The agent (hostNetwork) reads the node's own namespace: its count is its own, not the full table's.
  const root = await conntrack.collect(contextFor(conntrack, '/'));
  t.equal(root.kind, 'ok');
  if (root.kind === 'ok') {
    t.comment(`root namespace meanwhile: ${root.data.count} of ${root.data.max}`);
    t.ok(root.data.count < LIMIT, 'the node\'s own table is not the one that filled');
  }

  let fired: Observation | undefined;
  await until(async () => {
    const r = await runKernel(data);
    data = r.data;
    fired = r.obs.find((o) => o.check === 'kernel.conntrackFull' && o.subject === `nf_conntrack:netns:${inode}`);
    return fired !== undefined && Date.parse(String(fired.evidence['last_at'])) >= startedAt - 1000;
  }, 30_000, 'kernel.conntrackFull from the real kernel line');
  t.comment(`kernel: ${fired?.message}`);
  t.equal(fired?.severity, 'critical');
  t.equal(fired?.evidence['netns'], inode);
  t.match(fired?.message, new RegExp(`network namespace ${inode} is full`));
  t.match(fired?.remedy, /lsns -t net/);
  const after = fullLines();
  const lines = after.slice(lastBefore === undefined ? 0 : after.lastIndexOf(lastBefore) + 1);
  t.ok(lines.length > 0, 'dmesg has the line, from this run');
  t.comment(`dmesg: ${lines.length} new: ${lines[0]}`);
});
