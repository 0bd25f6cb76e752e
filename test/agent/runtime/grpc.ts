// The gRPC client and ContainerdClient against a fake containerd (HTTP/2 on a unix socket we start): the
// replies captured from the real containerd on a Kubernetes-like node, and hostile ones.
import t from 'tap';
import http2 from 'node:http2';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GrpcClient, splitFrames } from '../../../agent/runtime/grpc.js';
import { ContainerdClient } from '../../../agent/runtime/containerd.js';

const FIXTURE = 'test/fixtures/runtime/k8s-node';
type Reply = { path: string; namespace: string | null; request: string; reply: string };

function frame(msg: Buffer): Buffer {
  const out = Buffer.alloc(5 + msg.length);
  out.writeUInt32BE(msg.length, 1);
  msg.copy(out, 5);
  return out;
}

async function fakeContainerd(t: { teardown(fn: () => void): void }, onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, body: Buffer) => void): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-fake-containerd-'));
  const sock = path.join(dir, 'containerd.sock');
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => sessions.add(s));
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => {});
    stream.on('end', () => onStream(stream, headers, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => {
    for (const s of sessions) s.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return sock;
}

const ok = (stream: http2.ServerHttp2Stream, msg: Buffer) => {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.end(frame(msg));
};

t.test('replaying containerd’s captured replies gives the decoded view captured with them', async (t) => {
  const replies = JSON.parse(readFileSync(path.join(FIXTURE, 'containerd-replies.json'), 'utf8')) as Reply[];
  const decoded = JSON.parse(readFileSync(path.join(FIXTURE, 'containerd-decoded.json'), 'utf8')) as Record<string, unknown>;
  const sock = await fakeContainerd(t, (stream, headers, body) => {
    const ns = (headers['containerd-namespace'] as string | undefined) ?? null;
    const r = replies.find((x) => x.path === headers[':path'] && x.namespace === ns && Buffer.from(x.request, 'base64').equals(splitFrames(body)[0] ?? Buffer.alloc(0)));
    if (r) ok(stream, Buffer.from(r.reply, 'base64'));
    else stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': 'not captured' }, { endStream: true });
  });
  const client = new ContainerdClient(sock, 2000);
  const view = { version: await client.version(), containers: await client.containers('k8s.io'), tasks: await client.tasks('k8s.io'), images: await client.images('k8s.io') };
  t.same(JSON.parse(JSON.stringify(view, (_k, v) => (typeof v === 'bigint' ? String(v) : v))), decoded);
  const web = view.containers.find((c) => c.labels['io.kubernetes.container.name'] === 'web');
  t.same(web && { pod: web.labels['io.kubernetes.pod.name'], ns: web.labels['io.kubernetes.pod.namespace'] }, { pod: 'web-7d9f8c6b5-x2k4p', ns: 'shop' }, 'CRI labels survive decoding');
  t.equal(view.tasks.filter((x) => x.status === 'RUNNING').length, 3, 'the three captured tasks were running');
});

t.test('a gRPC error status is NW_ERR_RUNTIME with the server’s message', async (t) => {
  const sock = await fakeContainerd(t, (stream) => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': encodeURIComponent('namespace k8s.io: not found') }, { endStream: true }));
  const err = await new GrpcClient(sock).unary('/containerd.services.tasks.v1.Tasks/List', Buffer.alloc(0), { timeoutMs: 2000 }).catch((e: unknown) => e);
  t.match(err, { code: 'NW_ERR_RUNTIME', message: /grpc status 5: namespace k8s.io: not found/ });
});

t.test('a server that never answers: NW_ERR_TIMEOUT, and the next call works on a fresh session', async (t) => {
  let calls = 0;
  const sock = await fakeContainerd(t, (stream) => {
    calls += 1;
    if (calls > 1) ok(stream, Buffer.from([0x0a, 0x01, 0x41]));
  });
  const client = new GrpcClient(sock);
  await t.rejects(client.unary('/x.Y/Z', Buffer.alloc(0), { timeoutMs: 300 }), { code: 'NW_ERR_TIMEOUT' });
  t.same(await client.unary('/x.Y/Z', Buffer.alloc(0), { timeoutMs: 5000 }), Buffer.from([0x0a, 0x01, 0x41]));
  client.close();
});

t.test('a reply past the cap is refused with NW_ERR_RUNTIME', async (t) => {
  const chunk = Buffer.alloc(1024 * 1024);
  const sock = await fakeContainerd(t, (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    const pump = () => {
      while (!stream.destroyed && !stream.closed && stream.write(chunk));
      if (!stream.destroyed && !stream.closed) stream.once('drain', pump);
    };
    pump();
  });
  const client = new GrpcClient(sock);
  await t.rejects(client.unary('/x.Y/Big', Buffer.alloc(0), { timeoutMs: 60_000 }), { code: 'NW_ERR_RUNTIME' });
  client.close();
});

t.test('no server at the socket: a coded error, not a hang', async (t) => {
  const err = await new GrpcClient('/nonexistent/containerd.sock').unary('/x.Y/Z', Buffer.alloc(0), { timeoutMs: 2000 }).catch((e: unknown) => e);
  t.ok(err && ['NW_ERR_RUNTIME', 'NW_ERR_TIMEOUT'].includes((err as { code: string }).code), `code ${(err as { code?: string }).code}`);
});

t.test('a body cut inside a frame is NW_ERR_PARSE, not a shorter message', async (t) => {
  const whole = Buffer.concat([frame(Buffer.from([0x0a, 0x01, 0x41])), frame(Buffer.from([0x0a, 0x01, 0x42]))]);
  t.equal(splitFrames(whole).length, 2, 'whole frames split');
  t.throws(() => splitFrames(whole.subarray(0, whole.length - 1)), { code: 'NW_ERR_PARSE' }, 'the last frame short of its length');
  t.throws(() => splitFrames(Buffer.concat([whole, Buffer.from([0, 0])])), { code: 'NW_ERR_PARSE' }, 'bytes after the last frame');
  const sock = await fakeContainerd(t, (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(frame(Buffer.from([0x0a, 0x05, 0x41])).subarray(0, 7));
  });
  await t.rejects(new GrpcClient(sock).unary('/x.Y/Z', Buffer.alloc(0), { timeoutMs: 2000 }), { code: 'NW_ERR_PARSE' });
});

t.test('an undecodable protobuf reply from containerd is NW_ERR_PARSE', async (t) => {
  // A well-framed message whose field claims 5 bytes and carries 1.
  const sock = await fakeContainerd(t, (stream) => ok(stream, Buffer.from([0x0a, 0x05, 0x41])));
  await t.rejects(new ContainerdClient(sock, 2000).version(), { code: 'NW_ERR_PARSE' });
});

t.test('a malformed grpc-message is shown as sent, not thrown out of the event handler', async (t) => {
  const sock = await fakeContainerd(t, (stream) => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '13', 'grpc-message': 'bad %E0%A4%A escape' }, { endStream: true }));
  const err = await new GrpcClient(sock).unary('/x.Y/Z', Buffer.alloc(0), { timeoutMs: 2000 }).catch((e: unknown) => e);
  t.match(err, { code: 'NW_ERR_RUNTIME', message: /grpc status 13: bad %E0%A4%A escape/ });
});
