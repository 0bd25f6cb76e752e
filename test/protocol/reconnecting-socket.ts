// The one reconnecting WebSocket client (the agent's link, `tail`) against real `ws` servers on 127.0.0.1.
import t from 'tap';
import type { Test } from 'tap';
import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { ReconnectingSocket, backoffDelay, describeError, type LinkFailure, type ReconnectingSocketOptions } from '../../protocol/reconnecting-socket.js';
import { freePort, until } from '../helpers/processes.js';

type Behaviour = 'welcome' | 'silent' | 'close-at-once' | 'http401' | 'no-pong';

/** A loopback server: sends "welcome" on connect (or stays silent, closes at once, answers 401, never pongs). */
async function server(port = 0, behaviour: Behaviour = 'welcome') {
  const state = { behaviour, upgrades: 0, authorizations: [] as string[], sockets: new Set<WebSocket>() };
  const wss = new WebSocketServer({ noServer: true, autoPong: behaviour !== 'no-pong' });
  const srv = http.createServer((_req, res) => res.writeHead(404).end());
  srv.on('upgrade', (req, socket, head) => {
    state.upgrades++;
    state.authorizations.push(req.headers.authorization ?? '');
    if (state.behaviour === 'http401') return socket.end('HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    wss.handleUpgrade(req, socket, head, (ws) => {
      state.sockets.add(ws);
      ws.on('close', () => state.sockets.delete(ws));
      if (state.behaviour === 'close-at-once') return ws.close(1009, 'snapshot too big');
      if (state.behaviour !== 'silent') ws.send('welcome');
    });
  });
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r()));
  const p = (srv.address() as { port: number }).port;
  return {
    state,
    port: p,
    url: `ws://127.0.0.1:${p}`,
    /** The server vanishes: every connection cut, the port closed. */
    close: () => {
      for (const ws of state.sockets) ws.terminate();
      return new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** A client that marks itself ready on "welcome" and records everything it sees. */
function client(t: Test, url: string, opts: Partial<ReconnectingSocketOptions> = {}) {
  const seen = { opens: 0, readies: 0, messages: [] as string[], downs: [] as { failure: LinkFailure; retryInMs: number }[] };
  const sock: ReconnectingSocket = new ReconnectingSocket({
    url,
    headers: () => ({}),
    maxPayload: 1 << 20,
    heartbeatMs: 60_000,
    backoff: { baseMs: 50, maxMs: 400 },
    random: () => 1,
    onOpen: () => seen.opens++,
    onMessage: (raw) => {
      seen.messages.push(raw.toString());
      if (raw.toString() === 'welcome') sock.markReady();
    },
    onReady: () => seen.readies++,
    onDown: (failure, retryInMs) => seen.downs.push({ failure, retryInMs }),
    ...opts,
  });
  t.teardown(() => sock.stop());
  return { sock, seen };
}

t.test('backoff: full jitter up to base * 2^attempt, capped, never negative', async (t) => {
  t.same([0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, 500, 30_000, () => 1)), [500, 1000, 2000, 4000, 8000, 16_000, 30_000]);
  t.equal(backoffDelay(3, 500, 30_000, () => 0), 0);
  t.equal(backoffDelay(2, 500, 30_000, () => 0.5), 1000, 'a random point below the ceiling');
  t.equal(backoffDelay(10_000, 500, 30_000, () => 1), 30_000, 'a huge attempt count stays at the cap');
});

t.test('errors in words a person knows', async (t) => {
  t.same(describeError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })), { kind: 'refused', text: 'connection refused' });
  t.same(describeError(Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })), { kind: 'tls', text: 'TLS: self-signed certificate' });
  t.same(describeError(new Error('Opening handshake has timed out')), { kind: 'refused', text: 'the opening handshake timed out' });
  t.same(describeError(new Error('something else')), { kind: 'error', text: 'something else' });
});

t.test('connects, opens, becomes ready on the first message; stop() ends it quietly', async (t) => {
  const s = await server();
  t.teardown(s.close);
  const { sock, seen } = client(t, s.url);
  t.equal(sock.ready, false);
  t.type(sock.downSince, 'number', 'down since start until ready');
  sock.start();
  await until(() => sock.ready, 10_000, 'ready');
  t.equal(seen.opens, 1);
  t.equal(seen.readies, 1);
  t.same(seen.messages, ['welcome']);
  t.equal(sock.connects, 1);
  t.equal(sock.downSince, undefined);
  sock.stop();
  await until(() => s.state.sockets.size === 0, 10_000, 'the server to see the close');
  t.same(seen.downs, [], 'stopping is not a failure');
  t.equal(s.state.upgrades, 1, 'no attempt after stop');
});

t.test('the server vanishes: the link goes down, retries with backoff, and comes back when the server does', async (t) => {
  const port = await freePort();
  let s = await server(port);
  const { sock, seen } = client(t, s.url);
  sock.start();
  await until(() => sock.ready, 10_000, 'ready');
  await s.close();
  await until(() => seen.downs.some((d) => d.failure.kind === 'refused'), 10_000, 'a refused reconnect');
  const first = seen.downs[0]!;
  t.equal(first.failure.wasReady, true, 'the first failure is the ready link ending');
  t.equal(sock.ready, false);
  t.type(sock.downSince, 'number');
  const refused = seen.downs.find((d) => d.failure.kind === 'refused')!;
  t.same({ kind: refused.failure.kind, text: refused.failure.text, wasReady: refused.failure.wasReady }, { kind: 'refused', text: 'connection refused', wasReady: false });
  s = await server(port);
  t.teardown(s.close);
  await until(() => sock.ready, 10_000, 'ready again on the new server');
  t.equal(sock.connects, 2);
  t.equal(seen.readies, 2);
});

t.test('failures back off: the delays double up to the cap', async (t) => {
  const port = await freePort(); // nothing listens there
  const { sock, seen } = client(t, `ws://127.0.0.1:${port}`);
  sock.start();
  await until(() => seen.downs.length >= 5, 20_000, 'five failed attempts');
  sock.stop();
  t.same(seen.downs.slice(0, 5).map((d) => d.retryInMs), [50, 100, 200, 400, 400]);
  t.ok(seen.downs.every((d) => d.failure.kind === 'refused'));
  t.equal(sock.failures, seen.downs.length);
  t.equal(sock.everReady, false);
});

t.test('a server that accepts and closes at once sees fewer and fewer attempts; a link healthy long enough resets the backoff', async (t) => {
  const s = await server(0, 'close-at-once');
  t.teardown(s.close);
  const closing = client(t, s.url);
  closing.sock.start();
  await until(() => closing.seen.downs.length >= 3, 20_000, 'three closes');
  closing.sock.stop();
  t.same(closing.seen.downs.slice(0, 3).map((d) => d.retryInMs), [50, 100, 200]);
  t.same({ ...closing.seen.downs[0]!.failure, readyForMs: 0 }, { kind: 'closed', text: 'closed 1009 snapshot too big', closeCode: 1009, wasReady: false, readyForMs: 0 });

  // Ready links that end: with healthyAfterMs 0 each one counts as healthy, so the delay stays at the base.
  const ok = await server();
  t.teardown(ok.close);
  const healthy = client(t, ok.url, { healthyAfterMs: 0 });
  healthy.sock.start();
  for (let i = 0; i < 3; i++) {
    await until(() => healthy.sock.ready, 10_000, 'ready');
    for (const ws of ok.state.sockets) ws.close(1001, 'going away');
    await until(() => healthy.seen.downs.length > i, 10_000, 'down');
  }
  t.same(healthy.seen.downs.map((d) => d.retryInMs), [50, 50, 50]);
  t.ok(healthy.seen.downs.every((d) => d.failure.wasReady && d.failure.kind === 'closed' && d.failure.closeCode === 1001));
});

t.test('the welcome deadline: a server that never speaks is dropped and tried again', async (t) => {
  const s = await server(0, 'silent');
  t.teardown(s.close);
  const { sock, seen } = client(t, s.url, { readyTimeoutMs: 200 });
  sock.start();
  await until(() => seen.downs.length >= 2, 10_000, 'two no-ready failures');
  t.equal(seen.downs[0]!.failure.kind, 'no-ready');
  t.equal(seen.downs[0]!.failure.text, 'nothing from the server within 0.2 s of connecting');
  t.equal(seen.opens >= 2, true, 'it connected again after the first deadline');
  t.equal(seen.readies, 0);
});

t.test('heartbeat: a peer that stops answering pings is dropped, though TCP is fine', async (t) => {
  const s = await server(0, 'no-pong');
  t.teardown(s.close);
  const { sock, seen } = client(t, s.url, { heartbeatMs: 100 });
  sock.start();
  await until(() => seen.downs.length >= 1, 10_000, 'the heartbeat to end the link');
  t.equal(seen.downs[0]!.failure.kind, 'heartbeat');
  t.match(seen.downs[0]!.failure.text, /^no pong for \d+ s$/);
  t.equal(seen.downs[0]!.failure.wasReady, true, 'it had been ready (the welcome came)');
  // A peer that does answer keeps the link: many heartbeats pass without a failure.
  const good = await server();
  t.teardown(good.close);
  const live = client(t, good.url, { heartbeatMs: 50 });
  let pongs = 0;
  live.sock.start();
  await until(() => live.sock.ready, 10_000, 'ready');
  for (const ws of good.state.sockets) ws.on('ping', () => pongs++);
  await until(() => pongs >= 8, 10_000, 'eight heartbeats');
  t.same(live.seen.downs, [], 'answered heartbeats never end the link');
});

t.test('headers are asked for before every connect (rotated tokens); a throw is a failure retried later', async (t) => {
  const s = await server(0, 'http401');
  t.teardown(s.close);
  let n = 0;
  const { sock, seen } = client(t, s.url, {
    headers: () => {
      n++;
      if (n === 1) throw new Error('token file not mounted yet');
      return { authorization: `Bearer token-${n}` };
    },
  });
  sock.start();
  await until(() => seen.downs.length >= 3, 10_000, 'three failures');
  t.same({ kind: seen.downs[0]!.failure.kind, text: seen.downs[0]!.failure.text }, { kind: 'error', text: 'token file not mounted yet' });
  t.same({ kind: seen.downs[1]!.failure.kind, text: seen.downs[1]!.failure.text, httpStatus: seen.downs[1]!.failure.httpStatus }, { kind: 'http', text: 'HTTP 401 Unauthorized', httpStatus: 401 });
  t.same(s.state.authorizations.slice(0, 2), ['Bearer token-2', 'Bearer token-3'], 'each attempt carries the token read for it');
  s.state.behaviour = 'welcome';
  await until(() => sock.ready, 10_000, 'in once the server accepts');
  t.equal(sock.lastFailure?.kind, 'http');
});

t.test('fail(): the owner ends a link as a failure of its kind, and a new attempt follows', async (t) => {
  const s = await server();
  t.teardown(s.close);
  const { sock, seen } = client(t, s.url);
  sock.start();
  await until(() => sock.ready, 10_000, 'ready');
  sock.send('hello');
  sock.fail('error', 'a message the owner could not decode');
  await until(() => seen.downs.length === 1 && sock.ready, 10_000, 'down and ready again');
  t.same({ kind: seen.downs[0]!.failure.kind, text: seen.downs[0]!.failure.text, wasReady: seen.downs[0]!.failure.wasReady }, { kind: 'error', text: 'a message the owner could not decode', wasReady: true });
  t.equal(sock.connects, 2);
});
