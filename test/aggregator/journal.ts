// @live shared: aggregators on loopback with journals on tmpfs mounts of its own; no daemon, no node-wide assertion: it may run beside another shared file
import t from 'tap';
import { appendFileSync, closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { pino } from 'pino';
import fc from 'fast-check';
import { Aggregator, DEFAULT_LIMITS } from '../../aggregator/server.js';
import { Journal, type JournalSink } from '../../aggregator/journal.js';
import { NodewardenError } from '../../protocol/errors.js';
import { finding } from '../helpers/findings.js';
import { requireLive } from '../helpers/live.js';
import { until } from '../helpers/processes.js';

const TOKENS = [
  { role: 'agent' as const, name: 'agents', secret: 'agent-token-0123456789' },
  { role: 'tail' as const, name: 'ops', secret: 'tail-token-0123456789' },
];
const log = pino({ level: 'silent' });

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function start(journal: string, over: Partial<ConstructorParameters<typeof Aggregator>[0]> = {}) {
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: TOKENS, version: 'test', log, silentAfterMs: 60_000, heartbeatMs: 60_000, journal, ...over });
  const { url, port } = await agg.start();
  return { agg, url, port };
}

async function agent(url: string, node: string): Promise<WebSocket> {
  const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
  await new Promise((r) => ws.once('open', r));
  const welcome = new Promise((r) => ws.once('message', r));
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node, agentVersion: 'test', collectors: ['disk'] }));
  await welcome;
  return ws;
}

// Paces the churn below (part of the scenario, not a wait for a result).
const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));
const health = async (port: number) => (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { status: string; journal?: { ok: boolean; error?: string } };

t.test('a torn last line is cut off before appending, and garbage lines are skipped', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'journal.ndjson');
  const f = finding('n1', 'disk.usage', '/');
  writeFileSync(file, `${JSON.stringify({ type: 'firing', finding: f, at: new Date().toISOString() })}\nnot json\n{"type":"firing","finding":{"id":"x"},"at":"x"}\n${'x'.repeat(2 * 1024 * 1024)}\n{"type":"firi`);
  const { agg, url } = await start(file);
  t.same(agg.fleet.active().map((x) => x.id), [f.id], 'the good record is restored');
  t.notOk(readFileSync(file, 'utf8').endsWith('{"type":"firi'), 'the torn line is gone');
  const a = await agent(url, 'n1');
  a.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [f, finding('n1', 'disk.inodes', '/')] }));
  await until(() => agg.fleet.active({ node: 'n1' }).length === 2, 10_000, 'the snapshot to be applied');
  a.close();
  await agg.stop();
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  t.ok(lines.every((l) => l === 'not json' || l.startsWith('{') || l.startsWith('xxx')), 'the next record starts on a line of its own');
  const again = await start(file);
  t.equal(again.agg.fleet.active().length, 2, 'both findings restored');
  await again.agg.stop();
});

t.test('a journal path that is a directory is a one-line config error', async (t) => {
  const dir = tmp(t);
  const j = new Journal({ file: dir, maxBytes: 1024 * 1024, state: () => ({ history: [], nodes: [] }) });
  const err = t.throws(() => j.load({} as JournalSink)) as NodewardenError;
  t.equal(err.code, 'NW_ERR_CONFIG');
  t.match(err.message, /--journal .* is a directory/);
});

t.test('bounded in bytes, compacted to the current state: every node, its active set and its silence survive', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'journal.ndjson');
  const maxJournalBytes = 256 * 1024;
  const { agg, url } = await start(file, { limits: { maxJournalBytes }, silentAfterMs: 100 });
  // A node that went silent long ago, with its last findings: it must not vanish in compaction.
  const quiet = await agent(url, 'quiet');
  quiet.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('quiet', 'disk.usage', '/')] }));
  await until(() => agg.fleet.active({ node: 'quiet' }).length === 1, 10_000, "quiet's snapshot to be applied");
  quiet.terminate();
  await until(() => agg.fleet.active({ node: 'quiet' }).some((f) => f.check === 'node.silent'), 10_000, 'quiet to turn silent').catch(() => undefined);
  t.ok(agg.fleet.active({ node: 'quiet' }).some((f) => f.check === 'node.silent'), 'quiet is silent');
  // Then a lot of churn from another node: many times the bound.
  const busy = await agent(url, 'busy');
  for (let i = 0; i < 40; i++) {
    busy.send(JSON.stringify({ v: 1, type: 'snapshot', findings: Array.from({ length: 20 }, (_, k) => finding('busy', 'disk.usage', `/m${k}`, i % 2 ? 'critical' : 'warning', { message: `round ${i} ${'z'.repeat(1000)}` })) }));
    await settle(20);
  }
  // The last round applied: every finding of busy carries its message (the journal is written as it goes).
  await until(() => agg.fleet.active({ node: 'busy' }).filter((f) => f.message.startsWith('round 39 ')).length === 20, 10_000, 'the last round to be applied');
  await (agg as unknown as { journal: Journal }).journal.flushed(); // and written
  const size = statSync(file).size;
  t.ok(size <= maxJournalBytes, `journal ${size} bytes, bound ${maxJournalBytes}`);
  const before = agg.fleet.active().map((f) => `${f.id} ${f.severity}`).sort();
  busy.close();
  await agg.stop();
  const again = await start(file, { silentAfterMs: 60_000 });
  t.same(again.agg.fleet.active().map((f) => `${f.id} ${f.severity}`).sort(), before, 'the active sets after a restart are the ones before it');
  t.ok(again.agg.fleet.active({ node: 'quiet' }).some((f) => f.check === 'node.silent'), 'silence is not erased by compaction and a restart');
  t.ok(again.agg.fleet.historySize() > 0, 'recent history kept');
  await again.agg.stop();
});

t.test('write failures are survived: missing directory, then a full disk; /healthz and metrics say so; it recovers', async (t) => {
  const dir = tmp(t);
  const sub = path.join(dir, 'state');
  mkdirSync(sub);
  const file = path.join(sub, 'journal.ndjson');
  const { agg, url, port } = await start(file, { limits: { maxJournalBytes: 64 * 1024 } });
  t.teardown(() => agg.stop());
  const a = await agent(url, 'n1');
  rmSync(sub, { recursive: true, force: true }); // the directory goes away under it
  a.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('n1', 'disk.usage', '/')] }));
  await until(async () => (await health(port)).status === 'degraded', 10_000, '/healthz to say degraded').catch(() => undefined);
  const h = await health(port);
  t.same([h.status, h.journal?.ok, h.journal?.error], ['degraded', false, 'ENOENT'], '/healthz says the journal is failing and why');
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /nodewarden_aggregator_journal_ok 0/);
  t.match(metrics, /nodewarden_aggregator_errors_total\{where="journal",code="NW_ERR_IO"\} 1/);
  a.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('n1', 'disk.usage', '/'), finding('n1', 'disk.inodes', '/')] }));
  await until(() => agg.fleet.active({ node: 'n1' }).length === 2, 10_000, 'the second snapshot to be applied');
  t.equal(a.readyState, WebSocket.OPEN, 'the agent is still served');
  t.equal((await fetch(`http://127.0.0.1:${port}/api/findings`, { headers: { authorization: 'Bearer tail-token-0123456789' } })).status, 200);
  mkdirSync(sub);
  t.ok(await (agg as unknown as { journal: Journal }).journal.compact(), 'the retry writes the whole state once the directory is back');
  t.same([(await health(port)).status], ['ok']);
  t.match(readFileSync(file, 'utf8'), /disk\.inodes/, 'what happened while failing is in the journal');
  a.close();
});

t.test('a full disk (a 64 KiB tmpfs): the aggregator serves on and recovers when space returns', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mount', 'umount'] })) return;
  const dir = tmp(t);
  const mnt = path.join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'nwjournal', mnt]);
  t.teardown(() => void spawnSync('umount', ['-l', mnt]));
  const file = path.join(mnt, 'journal.ndjson');
  const { agg, url, port } = await start(file);
  t.teardown(() => agg.stop());
  const a = await agent(url, 'n1');
  for (let i = 0; i < 10; i++) a.send(JSON.stringify({ v: 1, type: 'snapshot', findings: Array.from({ length: 20 }, (_, k) => finding('n1', 'disk.usage', `/m${k}`, i % 2 ? 'critical' : 'warning', { message: 'y'.repeat(1000) })) }));
  await until(async () => (await health(port)).status === 'degraded', 10_000, '/healthz to say degraded').catch(() => undefined);
  const h = await health(port);
  t.same([h.status, h.journal?.error], ['degraded', 'ENOSPC']);
  t.equal(a.readyState, WebSocket.OPEN, 'still serving the agent');
  execFileSync('mount', ['-o', 'remount,size=4m', mnt]);
  t.ok(await (agg as unknown as { journal: Journal }).journal.compact(), 'retried once there is space');
  t.equal((await health(port)).status, 'ok');
  a.close();
  t.ok(existsSync(file));
  appendFileSync(file, ''); // still writable
});

t.test('a hung disk (a write that blocks in the kernel: a FIFO with no reader, as a dead NFS server holds open()) never freezes the aggregator', async (t) => {
  if (!requireLive(t, { commands: ['mkfifo'] })) return;
  const dir = tmp(t);
  const file = path.join(dir, 'journal.ndjson');
  const { agg, url, port } = await start(file, { limits: { journalWriteTimeoutMs: 500 } });
  const journal = (agg as unknown as { journal: Journal }).journal;
  const a = await agent(url, 'n1');
  a.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('n1', 'disk.usage', '/')] }));
  t.teardown(() => agg.stop());
  await until(() => existsSync(file) && readFileSync(file, 'utf8').includes('disk.usage'), 10_000, 'the first record');

  // The journal's path becomes a FIFO nobody reads: opening it to append blocks in the kernel.
  rmSync(file);
  execFileSync('mkfifo', [file]);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    // A reader lets the blocked open() through (non-blocking, so this thread never waits itself).
    const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const buf = Buffer.alloc(1024 * 1024);
    try {
      for (let i = 0; i < 200; i++) {
        try {
          if (readSync(fd, buf) === 0 && i > 20) break;
        } catch {
          // EAGAIN: nothing yet
        }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    } finally {
      closeSync(fd);
    }
  };
  t.teardown(release);
  a.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('n1', 'disk.usage', '/'), finding('n1', 'disk.inodes', '/')] }));
  await until(async () => (await health(port)).journal?.error === 'ETIMEDOUT', 15_000, 'the hung write to be noticed').catch(() => undefined);
  const h = await health(port);
  t.same([h.status, h.journal?.ok, h.journal?.error], ['degraded', false, 'ETIMEDOUT'], '/healthz answers, and says the journal hangs');
  t.match(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /nodewarden_aggregator_errors_total\{where="journal",code="NW_ERR_TIMEOUT"\} 1/, 'counted once in the metrics');
  // Still serving: the agent's next changes are taken, tailers can read them.
  a.send(JSON.stringify({ v: 1, type: 'snapshot', findings: [finding('n1', 'disk.inodes', '/')] }));
  await until(() => agg.fleet.active({ node: 'n1' }).length === 1, 10_000, 'the next snapshot');
  t.equal(a.readyState, WebSocket.OPEN, 'the agent is still served');
  const findings = (await (await fetch(`http://127.0.0.1:${port}/api/findings`, { headers: { authorization: 'Bearer tail-token-0123456789' } })).json()) as { check: string }[];
  t.same(findings.map((f) => f.check), ['disk.inodes'], '/api/findings answers with the current state');
  t.notOk(await journal.compact(), 'no second write is started while the hung one holds its thread');

  // The disk comes back: the hung open() goes through, the path is a file again, the retry writes the whole state.
  release();
  rmSync(file);
  await until(async () => await journal.compact(), 10_000, 'the retry after the hung write let go');
  t.equal((await health(port)).status, 'ok', 'healthy again');
  const text = readFileSync(file, 'utf8');
  t.ok(text.includes('disk.inodes') && text.includes('"type":"node"'), 'the journal holds the state as it is now');
  a.close();
});

t.test('property: any file content loads without throwing; what is not a record is skipped, and the file ends on a line', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'journal.ndjson');
  const f = finding('n1', 'disk.usage', '/');
  const good = JSON.stringify({ type: 'firing', finding: f, at: new Date().toISOString() });
  const line = fc.oneof(fc.constant(good), fc.string({ maxLength: 200 }), fc.json({ maxDepth: 4 }), fc.constant('{"type":"node","node":"../x"}'), fc.constant('{"type":"forget","node":"n1"}'), fc.constant('{"type":"active","finding":null}'), fc.constant('{"type":"__proto__"}'));
  fc.assert(
    fc.property(fc.array(line, { maxLength: 30 }), fc.boolean(), (lines, torn) => {
      writeFileSync(file, lines.join('\n') + (torn ? '' : '\n'));
      let seen = 0;
      const sink: JournalSink = { transition: () => seen++, node: () => seen++, active: () => seen++, forget: () => seen++ };
      const j = new Journal({ file, maxBytes: 1024 * 1024, state: () => ({ history: [], nodes: [] }) });
      const r = j.load(sink);
      void j.close();
      const text = readFileSync(file, 'utf8');
      if (text !== '' && !text.endsWith('\n')) throw new Error('the file does not end on a line');
      if (r.records !== seen) throw new Error('records counted and handed on differ');
    }),
    { numRuns: 300 },
  );
  t.pass('never threw');
});

t.test('live: everything the journal puts on disk (file + compaction file) stays inside the bound, on a tmpfs the size of the manifests emptyDir', async (t) => {
  if (!requireLive(t, { root: true, commands: ['mount', 'umount'] })) return;
  const manifest = readFileSync('manifests/aggregator.yaml', 'utf8');
  const sizeLimitMi = Number(/name: journal\s+emptyDir:\s+sizeLimit: (\d+)Mi/.exec(manifest)?.[1]);
  t.equal(sizeLimitMi, 64, "the manifests' journal volume");
  const dir = tmp(t);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeLimitMi}m`, 'nw-journal', dir]);
  t.teardown(() => void spawnSync('umount', ['-l', dir]));
  const file = path.join(dir, 'journal.ndjson');
  const { agg, url, port } = await start(file); // the default bound
  t.teardown(() => agg.stop());
  const bound = DEFAULT_LIMITS.maxJournalBytes;
  t.ok(bound <= sizeLimitMi * 1024 * 1024 * 0.8, `the default bound (${bound} bytes) leaves room in the ${sizeLimitMi} MiB volume`);
  let peak = 0;
  const sample = setInterval(() => {
    let used = 0;
    for (const f of [file, `${file}.tmp`]) {
      try {
        used += statSync(f).size;
      } catch {
        // not there now
      }
    }
    peak = Math.max(peak, used);
  }, 5);
  t.teardown(() => clearInterval(sample));
  // About 150 MB of transitions: 800 findings of ~4 KiB firing and resolving, 3 MB a delta.
  const a = await agent(url, 'churn-1');
  const many = Array.from({ length: 800 }, (_, i) => finding('churn-1', 'disk.usage', `/mnt/${i}`, 'warning', { evidence: { pad: 'x'.repeat(3800) } }));
  for (let round = 0; round < 50; round++) {
    const type = round % 2 === 0 ? 'firing' : 'resolved';
    a.send(JSON.stringify({ v: 1, type: 'delta', transitions: many.map((f) => ({ type, finding: { ...f, state: type } })) }));
    const want = type === 'firing' ? 800 : 0;
    await until(() => agg.fleet.active({ node: 'churn-1' }).length === want, 20_000, `round ${round}`);
  }
  await until(async () => (await health(port)).journal !== undefined && ((await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { journal: { pendingBytes: number } }).journal.pendingBytes === 0, 20_000, 'the journal to catch up');
  clearInterval(sample);
  const h = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { status: string; journal: { ok: boolean; writeFailures: number; compactions: number; catchUps: number } };
  t.equal(h.status, 'ok', 'the journal never failed (no ENOSPC on the volume)');
  t.equal(h.journal.writeFailures, 0);
  t.ok(h.journal.compactions + h.journal.catchUps >= 1, `compacted ${h.journal.compactions} times (${h.journal.catchUps} catch-ups): 150 MB of transitions went through a 48 MiB bound`);
  t.ok(peak <= bound, `peak on disk ${peak} bytes, bound ${bound}`);
  a.close();
});

t.test("the per-token node quota survives a restart: it is kept in the journal", async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'journal.ndjson');
  const first = await start(file, { limits: { maxNodesPerToken: 2 } });
  for (const n of ['q1', 'q2']) (await agent(first.url, n)).close();
  await first.agg.stop();
  const again = await start(file, { limits: { maxNodesPerToken: 2 } });
  t.teardown(() => again.agg.stop());
  const ws = new WebSocket(`${again.url}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
  await new Promise((r) => ws.once('open', r));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'q3', agentVersion: 'test', collectors: ['disk'] }));
  t.match(await closed, { code: 4005, reason: /already speaks for 2 nodes/ }, 'a third node is refused after the restart');
  t.equal(await (await agent(again.url, 'q1')).readyState, WebSocket.OPEN, 'a node it already spoke for is still welcome');
});
