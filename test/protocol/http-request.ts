// The HTTP helper against real servers on 127.0.0.1 (TCP and TLS) and on a unix socket: every way a peer
// can fail us ends up in the caller's promise, with a code, and no timer is left behind.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import http from 'node:http';
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { HttpRequestError, httpRequest, httpStream, type HttpRequestOptions } from '../../protocol/http-request.js';
import { NodewardenError } from '../../protocol/errors.js';
import { requireLive } from '../helpers/live.js';

type Teardown = { teardown(fn: () => void): void };
type Where = 'tcp' | 'unix';

/** A server on 127.0.0.1 or a unix socket; returns the options that reach it. */
async function serve(t: Teardown, where: Where, handler: http.RequestListener): Promise<Pick<HttpRequestOptions, 'url' | 'socketPath' | 'path'>> {
  const server = http.createServer(handler);
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  if (where === 'unix') {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-http-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'api.sock');
    await new Promise<void>((r) => server.listen(socketPath, r));
    return { socketPath, path: '/x' };
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/x` };
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

/** Fails the test if anything is thrown out of an event handler while `fn` runs. */
async function noUncaught<T>(t: Teardown, fn: () => Promise<T>): Promise<{ value: T; uncaught: unknown[] }> {
  const uncaught: unknown[] = [];
  const on = (err: unknown) => uncaught.push(err);
  process.on('uncaughtException', on);
  t.teardown(() => process.off('uncaughtException', on));
  const value = await fn();
  await tick();
  process.off('uncaughtException', on);
  return { value, uncaught };
}

for (const where of ['tcp', 'unix'] as const) {
  t.test(`${where}: an answer, its status and headers, and no timer left behind`, async (t) => {
    const at = await serve(t, where, (req, res) => res.writeHead(200, { 'x-seen': req.method ?? '' }).end(`hello ${req.headers['x-who']}`));
    const before = timers();
    const r = await httpRequest({ ...at, what: 'GET /x', method: 'POST', headers: { 'x-who': 'me' }, body: 'b', timeoutMs: 60_000, maxBody: 1024 });
    t.same([r.status, r.headers['x-seen'], r.body.toString()], [200, 'POST', 'hello me']);
    t.equal(timers(), before, 'the 60 s deadline is cleared with the answer');
  });

  t.test(`${where}: headers that never come are NW_ERR_TIMEOUT, naming the call and the peer`, async (t) => {
    const at = await serve(t, where, () => {
      /* accepts, never answers: a frozen daemon */
    });
    await t.rejects(httpRequest({ ...at, what: 'GET /x', timeoutMs: 200, maxBody: 1024, peer: 'the test server' }), { code: 'NW_ERR_TIMEOUT', failure: 'timeout', message: /^GET \/x: no answer from the test server within 200 ms$/ });
    await t.rejects(httpStream({ ...at, what: 'GET /x', timeoutMs: 200 }, { onText: () => {} }), { code: 'NW_ERR_TIMEOUT' }, 'a stream too');
  });

  t.test(`${where}: a body past the cap is refused with the caller's code, not buffered whole`, async (t) => {
    let sent = 0;
    const at = await serve(t, where, (_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = () => {
        while (!res.destroyed && sent < 64 * 1024 * 1024 && res.write(chunk)) sent += chunk.length;
        if (!res.destroyed && sent < 64 * 1024 * 1024) res.once('drain', pump);
      };
      res.on('error', () => {});
      pump();
    });
    await t.rejects(httpRequest({ ...at, what: 'GET /x', timeoutMs: 30_000, maxBody: 1024 * 1024 }), { code: 'NW_ERR_RUNTIME', failure: 'too-big', message: /response larger than 1048576 bytes/ });
    t.ok(sent < 32 * 1024 * 1024, `the server could send only ${sent} bytes before the connection was dropped`);
    await t.rejects(httpRequest({ ...at, what: 'GET /x', timeoutMs: 30_000, maxBody: 1024, code: 'NW_ERR_USAGE' }), { code: 'NW_ERR_USAGE', failure: 'too-big' });
  });

  t.test(`${where}: a server that closes mid-body fails the caller's promise, buffered or streamed`, async (t) => {
    const at = await serve(t, where, (_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('{"items": [');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const { value, uncaught } = await noUncaught(t, async () => [
      await httpRequest({ ...at, what: 'GET /x', timeoutMs: 30_000, maxBody: 1024 }).catch((e: unknown) => e),
      await httpStream({ ...at, what: 'GET /x', timeoutMs: 30_000 }, { onText: () => {} }).catch((e: unknown) => e),
    ]);
    for (const err of value) t.match(err, { code: 'NW_ERR_RUNTIME', failure: 'cut', message: /GET \/x: the connection closed before the end of the response/ });
    t.same(uncaught, []);
  });

  t.test(`${where}: a status other than 2xx: its code for a stream, the caller's error when asked, a plain answer otherwise`, async (t) => {
    const at = await serve(t, where, (_req, res) => res.writeHead(409, { 'content-type': 'application/json' }).end('{"message":"conflict"}'));
    const err = await httpStream({ ...at, what: 'GET /x', timeoutMs: 5000 }, { onText: () => t.fail('no body handed on') }).catch((e: unknown) => e);
    t.ok(err instanceof HttpRequestError);
    t.match(err, { code: 'NW_ERR_RUNTIME', failure: 'status', statusCode: 409, body: '{"message":"conflict"}' });
    await t.rejects(httpRequest({ ...at, what: 'GET /x', timeoutMs: 5000, maxBody: 1024, statusError: (status, text) => new NodewardenError('NW_ERR_USAGE', `said ${status}: ${text}`) }), { code: 'NW_ERR_USAGE', message: 'said 409: {"message":"conflict"}' });
    const plain = await httpRequest({ ...at, what: 'GET /x', timeoutMs: 5000, maxBody: 1024 });
    t.same([plain.status, plain.body.toString()], [409, '{"message":"conflict"}'], 'without statusError the status is the caller’s to judge');
  });

  t.test(`${where}: what the caller's handler throws rejects the promise instead of escaping the event handler`, async (t) => {
    const at = await serve(t, where, (_req, res) => {
      res.writeHead(200);
      res.write('line 1\n');
      setTimeout(() => res.end('line 2\n'), 20);
    });
    const { value, uncaught } = await noUncaught(t, () =>
      httpStream({ ...at, what: 'GET /x', timeoutMs: 5000 }, {
        onText: () => {
          throw new NodewardenError('NW_ERR_PARSE', 'a line we cannot read');
        },
      }).catch((e: unknown) => e),
    );
    t.match(value, { code: 'NW_ERR_PARSE' });
    t.same(uncaught, []);
  });

  t.test(`${where}: a stream hands on text as it comes, ends with the body, and stops quietly when aborted`, async (t) => {
    const at = await serve(t, where, (req, res) => {
      res.writeHead(200);
      // A three-byte character split across two writes.
      const euro = Buffer.from('€\n');
      res.write(euro.subarray(0, 1));
      setTimeout(() => (req.url?.includes('forever') ? res.write(euro.subarray(1)) : res.end(euro.subarray(1))), 20);
    });
    let text = '';
    let opened = 0;
    await httpStream({ ...at, what: 'GET /x', timeoutMs: 5000 }, { onOpen: () => opened++, onText: (c) => (text += c) });
    t.same([text, opened], ['€\n', 1], 'a character split between chunks arrives whole');
    const c = new AbortController();
    const forever = { ...at, ...(at.url ? { url: `${String(at.url)}?forever` } : { path: '/x?forever' }) };
    const following = httpStream({ ...forever, what: 'GET /x', timeoutMs: 5000, signal: c.signal }, { onText: () => c.abort() });
    t.equal(await following, undefined, 'aborted: resolved, not failed');
  });

  t.test(`${where}: a quiet stream fails after its idle time; refused connections are 'connect' failures`, async (t) => {
    const at = await serve(t, where, (_req, res) => res.writeHead(200).write('x'));
    await t.rejects(httpStream({ ...at, what: 'GET /watch', timeoutMs: 5000 }, { onText: () => {}, idle: { ms: 100, message: 'nothing from the watch within 100 ms' } }), { code: 'NW_ERR_TIMEOUT', message: 'GET /watch: nothing from the watch within 100 ms' });
    const nowhere = where === 'unix' ? { socketPath: '/nonexistent/nw.sock' } : { url: 'http://127.0.0.1:1/' };
    await t.rejects(httpRequest({ ...nowhere, what: 'GET /', timeoutMs: 5000, maxBody: 1 }), { code: 'NW_ERR_RUNTIME', failure: 'connect' });
  });
}

t.test('TLS: the server is trusted through the given CA, and refused without it', async (t) => {
  if (!requireLive(t, { commands: ['openssl'] })) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-http-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.end('{"kind":"Node"}'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as { port: number }).port}/api/v1/nodes/n1`;
  const r = await httpRequest({ url, ca: readFileSync(cert), what: 'GET /api/v1/nodes/n1', timeoutMs: 5000, maxBody: 1024 });
  t.same([r.status, r.body.toString()], [200, '{"kind":"Node"}']);
  await t.rejects(httpRequest({ url, what: 'GET /api/v1/nodes/n1', timeoutMs: 5000, maxBody: 1024 }), { code: 'NW_ERR_RUNTIME', failure: 'connect', message: /certificate/ });
});
