// The agent's link against a misbehaving aggregator on loopback: it must never go dark.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { pino } from 'pino';
import { StreamClient } from '../../../agent/exporters/aggregator-link.js';
import { Aggregator } from '../../../aggregator/server.js';
import { Tail } from '../../../cli/tail.js';
import type { Finding } from '../../../protocol/finding.js';
import { finding } from '../../helpers/findings.js';
import { AgentServer } from '../../../agent/exporters/http.js';
import { fanOut } from '../../../agent/daemon.js';
import type { Runner } from '../../../agent/runner.js';
import type { Log } from '../../../collectors/types.js';
import { readTokenFile } from '../../../protocol/tokens.js';
import { until } from '../../helpers/processes.js';

type Mode = 'ok' | 'http401' | 'http503' | 'no-welcome' | 'reject-snapshot';

/** A loopback aggregator that speaks the real protocol, or misbehaves as told. */
async function fakeAggregator(goodToken: () => string) {
  const state = { mode: 'ok' as Mode, upgrades: 0, hellos: 0, snapshots: 0, types: [] as string[], sockets: new Set<WebSocket>() };
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => {
    state.upgrades++;
    const refuse = (code: number) => socket.end(`HTTP/1.1 ${code} Nope\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    if (state.mode === 'http503') return refuse(503);
    if (state.mode === 'http401' || req.headers.authorization !== `Bearer ${goodToken()}`) return refuse(401);
    wss.handleUpgrade(req, socket, head, (ws) => {
      state.sockets.add(ws);
      ws.on('close', () => state.sockets.delete(ws));
      ws.on('message', (raw: Buffer) => {
        const m = JSON.parse(raw.toString()) as { type: string };
        state.types.push(m.type);
        if (m.type === 'hello') {
          state.hellos++;
          if (state.mode !== 'no-welcome') ws.send(JSON.stringify({ v: 1, type: 'welcome', aggregatorVersion: 'fake' }));
        }
        if (m.type === 'snapshot') {
          state.snapshots++;
          if (state.mode === 'reject-snapshot') ws.close(1009, 'snapshot of 5000000 bytes is over the limit');
        }
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    state,
    url: `ws://127.0.0.1:${port}`,
    close: () => {
      for (const ws of state.sockets) ws.terminate();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function fakeRunner(): Runner {
  const r = new EventEmitter() as unknown as Runner;
  Object.assign(r, { names: () => ['disk'], active: () => [], statuses: () => [] });
  return r;
}

/** A pino-shaped logger that keeps what it is told. */
function recordingLog() {
  const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  const at = (level: string) => (a: unknown, b?: unknown) => {
    lines.push(typeof a === 'string' ? { level, msg: a, fields: {} } : { level, msg: String(b ?? ''), fields: a as Record<string, unknown> });
  };
  const log = { trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), fatal: at('fatal'), child: () => log } as unknown as Log;
  return { log, lines };
}

const get = (port: number, p: string) =>
  new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) as Record<string, unknown> }));
    }).on('error', reject);
  });

t.test('401 and 503 on the upgrade are retried until the agent gets in; the token file is read again on every connect', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-link-'));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'old-token-0123456789abcdef\n');
  const agg = await fakeAggregator(() => 'new-token-0123456789abcdef');
  const { log, lines } = recordingLog();
  const client = new StreamClient({ url: agg.url, token: () => readTokenFile(tokenFile), runner: fakeRunner(), node: 'n1', version: 't', log, heartbeatMs: 60_000, backoff: { baseMs: 20, maxMs: 100 } });
  t.teardown(async () => {
    client.stop();
    await agg.close();
    rmSync(dir, { recursive: true, force: true });
  });
  client.start();
  await until(() => agg.state.upgrades >= 3, 10_000, 'three refused attempts');
  t.notOk(client.connected, 'refused with the old token');
  agg.state.mode = 'http503';
  const before = agg.state.upgrades;
  await until(() => agg.state.upgrades >= before + 3, 10_000, 'attempts through a 503');
  // kubelet rotates the projected token: the new one is in the file, and the agent picks it up.
  writeFileSync(tokenFile, 'new-token-0123456789abcdef\n');
  agg.state.mode = 'ok';
  await until(() => client.connected, 10_000, 'the agent to connect with the rotated token');
  // The snapshot follows the welcome: its own round trip, so its own wait.
  await until(() => agg.state.snapshots >= 1, 10_000, 'the snapshot').catch(() => undefined);
  t.ok(agg.state.snapshots >= 1, 'and send its snapshot');
  t.equal(lines.filter((l) => /refused our token/.test(l.msg) && l.level === 'error').length, 1, 'the refusal logged once at error, however often it repeated');
  t.equal(lines.filter((l) => /HTTP 503/.test(l.msg) && l.level !== 'debug').length, 1, 'the 503 logged once');
  t.ok(lines.some((l) => /connected to the aggregator/.test(l.msg) && l.level === 'info'), 'and the recovery is logged where people look');
});

t.test('an aggregator that never sends welcome is left after the welcome deadline and tried again', async (t) => {
  const agg = await fakeAggregator(() => 'tok-0123456789abcdef');
  agg.state.mode = 'no-welcome';
  const { log, lines } = recordingLog();
  const client = new StreamClient({ url: agg.url, token: 'tok-0123456789abcdef', runner: fakeRunner(), node: 'n1', version: 't', log, heartbeatMs: 60_000, welcomeTimeoutMs: 200, backoff: { baseMs: 20, maxMs: 100 } });
  t.teardown(async () => {
    client.stop();
    await agg.close();
  });
  client.start();
  await until(() => agg.state.hellos >= 3, 10_000, 'three hellos, each on a new connection');
  t.ok(lines.some((l) => /sent no welcome/.test(l.msg)), 'the log says the aggregator sent no welcome');
  agg.state.mode = 'ok';
  await until(() => client.connected, 10_000, 'the agent to connect once welcome comes');
});

t.test('an aggregator that rejects the snapshot right after welcome: backoff grows, logged once', async (t) => {
  const agg = await fakeAggregator(() => 'tok-0123456789abcdef');
  agg.state.mode = 'reject-snapshot';
  const { log, lines } = recordingLog();
  const client = new StreamClient({ url: agg.url, token: 'tok-0123456789abcdef', runner: fakeRunner(), node: 'n1', version: 't', log, heartbeatMs: 60_000, backoff: { baseMs: 100, maxMs: 10_000 }, healthyAfterMs: 60_000, random: () => 1 });
  t.teardown(async () => {
    client.stop();
    await agg.close();
  });
  client.start();
  await until(() => agg.state.snapshots >= 6, 20_000, 'six rejected snapshots');
  const delays = lines.filter((l) => /rejected what we sent/.test(l.msg)).map((l) => Number(l.fields['retryInMs']));
  t.ok(delays.length >= 5, `${delays.length} rejections seen`);
  t.same(delays.slice(0, 5), [100, 200, 400, 800, 1600], 'each retry waits twice as long: welcome does not reset the backoff');
  t.equal(lines.filter((l) => /rejected what we sent/.test(l.msg) && l.level !== 'debug').length, 1, 'logged once at error, the repeats at debug');
  t.match(lines.find((l) => /rejected/.test(l.msg))!.msg, /1009 snapshot of 5000000 bytes is over the limit/, 'with the code and the reason');
  t.equal(lines.filter((l) => /connected to the aggregator/.test(l.msg) && l.level === 'info').length, 1, 'and the brief connections are not each announced');
});

t.test('/healthz fails once the aggregator has been unreachable past the restart window; /readyz reports the link', async (t) => {
  const agg = await fakeAggregator(() => 'tok-0123456789abcdef');
  const url = agg.url;
  await agg.close(); // nothing listens there now
  const runner = fakeRunner();
  const client = new StreamClient({ url, token: 'tok-0123456789abcdef', runner, node: 'n1', version: 't', log: recordingLog().log, heartbeatMs: 60_000, backoff: { baseMs: 20, maxMs: 50 } });
  const server = new AgentServer({ runner, node: 'n1', stream: client, restartAfterUnreachableMs: 2000, listen: { host: '127.0.0.1', port: 0 } });
  await server.start();
  const port = server.address!.port;
  t.teardown(() => {
    client.stop();
    void server.stop();
  });
  client.start();
  const early = await get(port, '/healthz');
  t.equal(early.status, 200, 'alive while the outage is young');
  t.equal((await get(port, '/readyz')).status, 503, 'not ready without the aggregator');
  await until(async () => (await get(port, '/healthz')).status === 503, 10_000, 'liveness to fail');
  const dead = await get(port, '/healthz');
  t.match(String(dead.body['reason']), /unreachable for \d+ s \(restart window 2s\): a restart may help/);
  t.match(String((dead.body['aggregator'] as Record<string, unknown>)['lastError']), /connection refused/);
});

t.test('refreshed numbers reach the aggregator at once: /api/findings and a new tailer show them, the tail prints nothing', async (t) => {
  const NODE = 'refresh-node';
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: [{ role: 'agent', name: 'agents', secret: 'agent-token-0123456789' }, { role: 'tail', name: 'ops', secret: 'tail-token-0123456789' }], version: 'test', log: pino({ level: 'silent' }), silentAfterMs: 60_000, heartbeatMs: 60_000 });
  const { url, port } = await agg.start();
  const runner = fakeRunner();
  const link = new StreamClient({ url, token: 'agent-token-0123456789', runner, node: NODE, version: 'test', log: recordingLog().log, heartbeatMs: 60_000 });
  fanOut(runner, [link], recordingLog().log);
  const tailLines: string[] = [];
  const tailErr: string[] = [];
  const tail = new Tail({ url, token: 'tail-token-0123456789', filter: { node: NODE }, follow: true, json: true, color: false, out: (l) => tailLines.push(l), err: (l) => tailErr.push(l) });
  t.teardown(async () => {
    tail.stop();
    link.stop();
    await agg.stop();
  });
  const auth = { headers: { authorization: 'Bearer tail-token-0123456789' } };
  const stored = async () => (await (await fetch(`http://127.0.0.1:${port}/api/findings?node=${NODE}`, auth)).json()) as Finding[];

  link.start();
  await until(() => link.connected, 10_000, 'the agent connects');
  tail.start();
  await until(() => tailLines.length > 0 || tail.view.size > 0 || tailErr.length > 0 || (tail as unknown as { seenActive: boolean }).seenActive, 10_000, 'the tail gets its active set');

  const first = finding(NODE, 'sockstat.timewait', 'tcp', 'warning', { message: 'TIME_WAIT sockets: 131,071 of 131,072', evidence: { timewait: 131071 } });
  runner.emit('transition', { type: 'firing', finding: first });
  await until(() => tailLines.some((l) => l.includes('"firing"')), 10_000, 'the firing reaches the tail');
  const linesAfterFiring = tailLines.length;

  const fresh = { ...first, message: 'TIME_WAIT sockets: 131,072 of 131,072', evidence: { timewait: 131072 }, lastSeen: new Date(Date.parse(first.lastSeen) + 1000).toISOString() };
  runner.emit('refresh', fresh);
  let seen: Finding[] = [];
  await until(async () => (seen = await stored()).some((f) => f.message === fresh.message), 10_000, 'the aggregator stores the fresh numbers');
  t.same(seen.map((f) => [f.message, f.evidence]), [[fresh.message, { timewait: 131072 }]], '/api/findings shows the new numbers at once');

  // A tailer that subscribes now gets the fresh numbers in its active set, and no history entry was made.
  const late: string[] = [];
  const lateTail = new Tail({ url, token: 'tail-token-0123456789', filter: { node: NODE }, sinceMs: 0, follow: false, json: true, color: false, out: (l) => late.push(l), err: () => undefined });
  lateTail.start();
  await lateTail.done;
  const events = late.map((l) => JSON.parse(l) as { event: string; finding: Finding });
  t.same(events.filter((e) => e.event === 'active').map((e) => e.finding.message), [fresh.message], 'a new tailer sees the fresh numbers');
  t.same(events.filter((e) => e.event === 'history').map((e) => e.finding.message), [], '--since shows a still-active finding once: as active, not again from history');
  t.same(agg.fleet.historyEntries ? [...agg.fleet.historyEntries()].map((h) => h.type) : [], ['firing'], 'history holds the firing only, no entry for the refresh');

  // The following tail printed nothing for the refresh (the firing's line came before it).
  t.equal(tailLines.length, linesAfterFiring, 'the following tail printed nothing for the refresh');
  t.same(tailErr, []);

  // A change of meaning is still news.
  runner.emit('transition', { type: 'updated', finding: { ...fresh, severity: 'critical' } });
  await until(() => tailLines.length > linesAfterFiring, 10_000, 'the update reaches the tail');
  t.match(tailLines.at(-1), /"updated"/);
  // One connection delivers in order: a line for the refresh, however late, would have come before the update.
  t.equal(tailLines.length, linesAfterFiring + 1, 'only the update was printed after the firing, nothing for the refresh');
});

t.test('an aggregator that does not offer refresh (an older one) never gets one: the link stays up', async (t) => {
  const agg = await fakeAggregator(() => 'tok');
  const runner = fakeRunner();
  const link = new StreamClient({ url: agg.url, token: 'tok', runner, node: 'old-agg', version: 'test', log: recordingLog().log, heartbeatMs: 60_000 });
  fanOut(runner, [link], recordingLog().log);
  t.teardown(async () => {
    link.stop();
    await agg.close();
  });
  link.start();
  await until(() => link.connected, 10_000, 'connected');
  const f = finding('old-agg', 'sockstat.timewait', 'tcp');
  runner.emit('transition', { type: 'firing', finding: f });
  runner.emit('refresh', { ...f, message: `${f.message} 2` });
  await new Promise((r) => setImmediate(r));
  // A later delta: anything sent before it has arrived once it has.
  runner.emit('transition', { type: 'resolved', finding: { ...f, state: 'resolved' } });
  await until(() => agg.state.types.filter((x) => x === 'delta').length === 2, 10_000, 'both deltas arrive');
  t.notOk(agg.state.types.includes('refresh'), 'no refresh message sent to an aggregator that did not name it');
  t.equal(agg.state.hellos, 1, 'no reconnect');
});
