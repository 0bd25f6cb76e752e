import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { conntrack, evaluateConntrack, type ConntrackConfig, type ConntrackData } from '../../collectors/conntrack.js';
import { contextFor, settingsFor } from '../helpers/context.js';

// Captured on this VM: nf_conntrack built in, nothing tracked in the root network namespace.
const FIXTURE = path.resolve('test/fixtures/host/pids-vm');
const config = settingsFor(conntrack) as unknown as ConntrackConfig;

function tree(t: Pick<Test, 'teardown'>, files: Record<string, string>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-conntrack-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'proc', 'sys', 'net', 'netfilter');
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return root;
}

t.test('reads the captured count and max: 0 of 262,144 is quiet', async (t) => {
  const r = await conntrack.collect(contextFor(conntrack, FIXTURE));
  t.equal(r.kind, 'ok');
  if (r.kind !== 'ok') return;
  t.same(r.data, { count: 0, max: 262144 });
  t.same(r.observations, []);
});

t.test('no nf_conntrack (module not loaded) is no data, not an error', async (t) => {
  const r = await conntrack.collect(contextFor(conntrack, tree(t, {})));
  t.equal(r.kind, 'no-data');
  if (r.kind === 'no-data') t.match(r.reason, /not loaded/);
  const garbage = await conntrack.collect(contextFor(conntrack, tree(t, { nf_conntrack_count: 'x\n', nf_conntrack_max: '10\n' })));
  t.equal(garbage.kind, 'no-data', 'an unreadable count is not a number');
});

t.test("netdata's bands: warning at 90 clearing below 85, critical at 95", async (t) => {
  const at = (count: number, before?: ConntrackData) => {
    const data: ConntrackData = { count, max: 1000 };
    const obs = evaluateConntrack(data, config, before);
    if (obs[0]) data.firing = obs[0].severity;
    return { data, obs };
  };
  t.same(at(899).obs, []);
  const warn = at(900);
  t.equal(warn.obs[0]?.severity, 'warning');
  t.match(warn.obs[0]?.message, /holds 900 connections, 90% of net\.netfilter\.nf_conntrack_max \(1,000\)/);
  t.match(warn.obs[0]?.message, /kernel\.conntrackFull/, 'names the kernel log check that reports the drops');
  t.match(warn.obs[0]?.remedy, /^conntrack -S; .*sysctl -w net\.netfilter\.nf_conntrack_max=2000$/);
  const hover = at(860, warn.data);
  t.equal(hover.obs[0]?.severity, 'warning', '86% still fires');
  t.same(at(849, hover.data).obs, [], '84.9% clears');
  t.same(at(860).obs, [], 'never fired: 86% is quiet');
  const crit = at(950);
  t.equal(crit.obs[0]?.severity, 'critical');
  t.equal(at(920, crit.data).obs[0]?.severity, 'critical', '92% stays critical');
  t.equal(at(880, crit.data).obs[0]?.severity, 'warning', '88% falls to warning');
  t.same(evaluateConntrack({ count: 5, max: 0 }, config, undefined), [], 'max 0: no limit');
  t.match(evaluateConntrack({ count: 300_000, max: 262_144 }, config, undefined)[0]?.remedy, /nf_conntrack_max=600000$/, 'a count above max: room for twice it');
});

t.test('collect carries the firing severity to the next run', async (t) => {
  const root = tree(t, { nf_conntrack_count: '91\n', nf_conntrack_max: '100\n' });
  const first = await conntrack.collect(contextFor(conntrack, root));
  if (first.kind !== 'ok') throw new Error(first.kind);
  t.equal(first.data.firing, 'warning');
  writeFileSync(path.join(root, 'proc/sys/net/netfilter/nf_conntrack_count'), '87\n');
  const second = await conntrack.collect(contextFor(conntrack, root, { previous: first.data }));
  t.equal(second.kind === 'ok' && second.observations[0]?.severity, 'warning', '87%: still firing');
  const fresh = await conntrack.collect(contextFor(conntrack, root));
  t.same(fresh.kind === 'ok' && fresh.observations, [], 'without a previous run 87% is quiet');
});
