// End to end with real processes on loopback: nodewarden aggregator, agent and tail.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fillTo, makeLoopFs, requireLive } from '../helpers/live.js';
import { QUIET_COLLECTORS, TOKENS, freePort, run, startAggregator as startAggregatorAt, until, writeTokens } from '../helpers/processes.js';

const NODE = 'pipe-node';

interface TailLine {
  at: string;
  event: string;
  receivedAt: number;
  finding: { id: string; node: string; check: string; subject: string; lastSeen: string; state: string };
}

t.test('live: findings travel agent -> aggregator -> tail; the aggregator restarts; the agent dies', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mkfs.ext4', 'losetup', 'fallocate'] })) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-pipe-'));
  const tokens = writeTokens(dir);
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}`;
  const journal = path.join(dir, 'journal.ndjson');
  const procs: ChildProcess[] = [];
  const fs = makeLoopFs(64);
  t.teardown(() => {
    for (const p of procs) p.kill('SIGKILL');
    fs.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const startAggregator = async () => {
    const agg = await startAggregatorAt(port, tokens, ['--journal', journal, '--silent-after', '2s', '--heartbeat', '1s']);
    procs.push(agg);
    return agg;
  };
  let agg = await startAggregator();

  const sets = ['collectors.disk.interval=1s', 'collectors.disk.timeout=900ms', 'agent.heartbeat=1s', 'collectors.disk.includeTmpfs=false', ...QUIET_COLLECTORS];
  const agent = run(['agent', '--aggregator', url, '--token-file', path.join(tokens, 'agent'), '--listen', '127.0.0.1:0', '--node', NODE, ...sets.flatMap((s) => ['--set', s])]);
  procs.push(agent);

  const lines: TailLine[] = [];
  let tailErr = '';
  const tail = run(['tail', '--aggregator', url, '--token-file', path.join(tokens, 'tail'), '--node', NODE, '--json']);
  procs.push(tail);
  let buf = '';
  tail.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const raw = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (raw) lines.push({ ...(JSON.parse(raw) as Omit<TailLine, 'receivedAt'>), receivedAt: Date.now() });
    }
  });
  tail.stderr!.on('data', (d: Buffer) => (tailErr += d.toString()));
  const view = () => {
    const v = new Map<string, TailLine['finding']>();
    for (const l of lines) {
      if (l.event === 'resolved') v.delete(l.finding.id);
      else if (l.event !== 'history') v.set(l.finding.id, l.finding);
    }
    return v;
  };
  const ours = (l: TailLine) => l.finding.check === 'disk.usage' && l.finding.subject === fs.mountPoint;

  // 1. A finding raised on the node reaches the tail as it is collected.
  fillTo(fs, 97);
  await until(() => lines.some((l) => ours(l) && (l.event === 'firing' || l.event === 'active')), 10_000, 'the firing finding on the tail');
  const fired = lines.find((l) => ours(l) && l.event === 'firing')!;
  t.ok(fired, 'firing line');
  // Streamed as it happens: on the tail within a few collection intervals (1 s), not at some later poll.
  // The bound is generous on purpose (a loaded 2-core machine); the figure itself belongs to the bench.
  const lag = fired.receivedAt - Date.parse(fired.finding.lastSeen);
  t.ok(lag < 5000, `collected at ${fired.finding.lastSeen}, on the tail ${lag} ms later`);

  unlinkSync(path.join(fs.mountPoint, 'fill'));
  await until(() => lines.some((l) => ours(l) && l.event === 'resolved'), 10_000, 'the resolution on the tail');
  const resolved = lines.find((l) => ours(l) && l.event === 'resolved')!;
  const lag2 = resolved.receivedAt - Date.parse(resolved.finding.lastSeen);
  t.ok(lag2 < 5000, `resolution on the tail ${lag2} ms after the collection`);

  // 2. Kill the aggregator mid-stream; the problem comes back while it is down; start it again.
  agg.kill('SIGKILL');
  await new Promise((r) => agg.once('exit', r));
  fillTo(fs, 97, 'again');
  await new Promise((r) => setTimeout(r, 2000));
  agg = await startAggregator();
  await until(() => /reconnected/.test(tailErr), 20_000, 'the tail to say it reconnected');
  t.match(tailErr, /lost the aggregator/, 'the tail said it lost the aggregator');
  await until(() => view().has(lines.find(ours)!.finding.id), 20_000, 'the tail to converge');
  const truth = (await (await fetch(`http://127.0.0.1:${port}/api/findings?node=${NODE}`, { headers: { authorization: `Bearer ${TOKENS.tail}` } })).json()) as { id: string }[];
  await until(() => [...view().keys()].sort().join() === truth.map((f) => f.id).sort().join(), 10_000, 'the tail view to equal the active set');
  t.same([...view().keys()].sort(), truth.map((f) => f.id).sort(), "the tail's view is the agent's active set: nothing lost, nothing stale");
  t.ok(truth.some((f) => f.id === lines.find(ours)!.finding.id), 'including what fired while the aggregator was down');

  // 3. Kill the agent: the node turns node.silent.
  agent.kill('SIGKILL');
  await until(() => lines.some((l) => l.finding.check === 'node.silent' && l.event === 'firing' && l.finding.node === NODE), 15_000, 'node.silent on the tail');
  t.pass('node.silent reached the tail');
  unlinkSync(path.join(fs.mountPoint, 'again'));
});
