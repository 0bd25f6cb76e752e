// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import http2 from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CONTAINERD_TOPICS, ContainerdEvents, VERSION_METHOD, containerdStatus, decodeEnvelope, subscribeRequest, SUBSCRIBE } from '../../../agent/runtime/containerd-events.js';
import type { ContainerEvent } from '../../../agent/runtime/events.js';
import { FrameReader, grpcStream } from '../../../agent/runtime/grpc.js';
import { decodeMessage, encodeMessage, pb } from '../../../agent/runtime/protobuf.js';
import { eventually } from '../../helpers/processes.js';
import { followForTest } from '../../helpers/runtime.js';

const NS = ['moby', 'k8s.io'];
const ID = 'cd'.repeat(32);

function envelope(o: { ns?: string; topic?: string; type?: string; id?: string; seconds?: number; raw?: Buffer }): Buffer {
  const topic = o.topic ?? '/tasks/exit';
  const type = o.type ?? (topic === '/containers/delete' ? 'containerd.events.ContainerDelete' : topic === '/tasks/exit' ? 'containerd.events.TaskExit' : 'containerd.events.TaskDelete');
  const value = o.raw ?? encodeMessage([{ n: 1, string: o.id ?? ID }, { n: 2, string: o.id ?? ID }, { n: 3, uint: 4242 }]);
  return encodeMessage([
    { n: 1, message: encodeMessage([{ n: 1, uint: BigInt.asUintN(64, BigInt(o.seconds ?? 1_700_000_000)) }, { n: 2, uint: 5 }]) },
    { n: 2, string: o.ns ?? 'k8s.io' },
    { n: 3, string: topic },
    { n: 4, message: encodeMessage([{ n: 1, string: `types.containerd.io/${type}` }, { n: 2, message: value }]) },
  ]);
}

function frame(msg: Buffer, flags = 0): Buffer {
  const f = Buffer.alloc(5 + msg.length);
  f.writeUInt8(flags, 0);
  f.writeUInt32BE(msg.length, 1);
  msg.copy(f, 5);
  return f;
}

t.test('containerd events: what containerd sends decodes, topic by topic', async (t) => {
  t.same(decodeEnvelope(envelope({}), NS), { runtime: 'containerd', namespace: 'k8s.io', action: 'die', id: ID, time: 1_700_000_000, topic: '/tasks/exit' });
  t.equal(decodeEnvelope(envelope({ topic: '/tasks/delete' }), NS)?.action, 'die');
  t.equal(decodeEnvelope(envelope({ topic: '/containers/delete', ns: 'moby' }), NS)?.action, 'destroy');
  const sub = decodeMessage(subscribeRequest());
  t.same(pb.strings(sub, 1), Object.keys(CONTAINERD_TOPICS).map((tp) => `topic=="${tp}"`), 'the subscription asks for our topics only');
  t.same(pb.strings(decodeMessage(subscribeRequest(['k8s.io'])), 1), Object.keys(CONTAINERD_TOPICS).map((tp) => `topic=="${tp}",namespace=="k8s.io"`), 'with namespaces: each topic in each of them only');
});

t.test('containerd events: hostile and foreign envelopes are dropped, never thrown', async (t) => {
  const hostile: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['garbage protobuf', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
    ['truncated envelope', envelope({}).subarray(0, 30)],
    ['another namespace', envelope({ ns: 'default' })],
    ['a topic we do not follow', envelope({ topic: '/tasks/start' })],
    ['a prototype key as topic', envelope({ topic: '__proto__' })],
    ['an Any of another type', envelope({ type: 'containerd.events.TaskOOM' })],
    ['a path as id', envelope({ id: '../../etc/passwd' })],
    ['an empty id', envelope({ id: '' })],
    ['an overlong id', envelope({ id: 'a'.repeat(200) })],
    ['event that is not a message', envelope({ raw: Buffer.from([0x0a, 0x50]) })],
    ['namespace as a varint', encodeMessage([{ n: 2, uint: 7 }, { n: 3, string: '/tasks/exit' }])],
  ];
  for (const [why, msg] of hostile) t.equal(decodeEnvelope(msg, NS), undefined, why);
  t.equal(decodeEnvelope(envelope({ seconds: -5 }), NS)?.time, 0, 'a timestamp before the epoch is left out');
});

t.test('containerd events: fuzzed envelopes never throw and yield only well-formed events', async () => {
  const ids = fc.oneof(fc.string(), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$/));
  const env = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    fc.record({ ns: fc.constantFrom('k8s.io', 'moby', 'default', ''), topic: fc.constantFrom(...Object.keys(CONTAINERD_TOPICS), '/tasks/start', 'x'), id: ids, seconds: fc.integer({ min: -1e12, max: 1e12 }) }).map((o) => envelope(o)),
    fc.tuple(fc.nat({ max: 400 }), fc.uint8Array({ maxLength: 20 })).map(([cut, junk]) => { const e = envelope({}); return Buffer.concat([e.subarray(0, cut % e.length), Buffer.from(junk)]); }),
  );
  fc.assert(
    fc.property(env, (msg) => {
      const ev = decodeEnvelope(msg, NS);
      if (ev === undefined) return;
      if (!NS.includes(ev.namespace ?? '') || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$/.test(ev.id) || !['die', 'destroy'].includes(ev.action) || !Number.isSafeInteger(ev.time)) throw new Error(`bad event ${JSON.stringify(ev)}`);
    }),
    { numRuns: 1000 },
  );
});

t.test('gRPC frames: split across chunks at any point give the same messages; oversized and flagged frames are refused', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), fc.array(fc.nat({ max: 3000 }), { maxLength: 8 }), (msgs, cuts) => {
      const body = Buffer.concat(msgs.map((m) => frame(Buffer.from(m))));
      const points = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
      const reader = new FrameReader();
      const got: Buffer[] = [];
      let prev = 0;
      for (const p of [...points, body.length]) {
        got.push(...reader.push(body.subarray(prev, p)));
        prev = p;
      }
      if (reader.pending !== 0 || got.length !== msgs.length || got.some((g, i) => !g.equals(Buffer.from(msgs[i]!)))) throw new Error('chunking changed the messages');
    }),
    { numRuns: 300 },
  );
  t.throws(() => new FrameReader(1024).push(Buffer.from([0, 0, 0, 4, 1])), { code: 'NW_ERR_RUNTIME' }, 'a frame announcing more than the limit');
  t.throws(() => new FrameReader().push(frame(Buffer.from('x'), 1)), { code: 'NW_ERR_RUNTIME' }, 'a compressed frame');
  const r = new FrameReader();
  t.same(r.push(frame(Buffer.from('abc')).subarray(0, 6)), [], 'a truncated frame waits');
  t.equal(r.pending, 6, 'and is counted as pending');
});

/** A fake containerd: an HTTP/2 server on a unix socket; `onStream` decides what each Subscribe gets. */
async function fakeContainerd(t: Test, onStream: (stream: http2.ServerHttp2Stream, n: number) => void, onProbe: (stream: http2.ServerHttp2Stream) => void = (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '0' }, { endStream: true })) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-ctd-events-'));
  const sock = path.join(dir, 'containerd.sock');
  let n = 0;
  let probes = 0;
  const sessions = new Set<http2.ServerHttp2Session>();
  const server = http2.createServer();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    if (headers[':path'] === VERSION_METHOD) {
      probes += 1;
      stream.on('error', () => {});
      return onProbe(stream);
    }
    t.equal(headers[':path'], SUBSCRIBE);
    n += 1;
    stream.on('error', () => {}); // the fake's own side of a reset is not under test
    onStream(stream, n);
  });
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(() => {
    for (const s of sessions) s.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { sock, connections: () => n, probes: () => probes };
}

/** Whether `pred` came true within `ms`: 30 s by default, for a loaded machine (it was 5 s). */
const until = (pred: () => boolean, ms = 30_000) => eventually(pred, ms);

function runStream(sock: string, opts: { timeoutMs?: number; pingMs?: number; maxMessage?: number; probe?: string } = {}) {
  const got: Buffer[] = [];
  const result: { ended: boolean; err?: { code?: string; message: string } | undefined; opened: boolean } = { ended: false, opened: false };
  const s = grpcStream(sock, SUBSCRIBE, subscribeRequest(), { timeoutMs: opts.timeoutMs ?? 1000, pingMs: opts.pingMs ?? 100, ...(opts.maxMessage ? { maxMessage: opts.maxMessage } : {}), ...(opts.probe ? { probe: opts.probe } : {}) }, {
    onOpen: () => (result.opened = true),
    onMessage: (m) => got.push(m),
    onEnd: (err) => {
      result.ended = true;
      result.err = err;
    },
  });
  return { got, result, close: () => s.close() };
}

t.test('gRPC stream: a message handler that throws ends that stream with the error, nothing escapes the event handler', async (t) => {
  const fake = await fakeContainerd(t, (s) => {
    s.respond({ ':status': 200, 'content-type': 'application/grpc' });
    s.write(Buffer.concat([frame(envelope({})), frame(envelope({ topic: '/containers/delete' }))]));
  });
  const result: { ended: boolean; err?: { code?: string; message: string } | undefined; calls: number } = { ended: false, calls: 0 };
  const s = grpcStream(fake.sock, SUBSCRIBE, subscribeRequest(), { timeoutMs: 1000, pingMs: 100 }, {
    onMessage: () => {
      result.calls++;
      throw new TypeError('handler bug');
    },
    onEnd: (err) => {
      result.ended = true;
      result.err = err;
    },
  });
  t.teardown(() => s.close());
  t.ok(await until(() => result.ended), 'the stream ends (the process did not crash)');
  t.equal(result.err?.code, 'NW_ERR_RUNTIME');
  t.match(result.err?.message ?? '', /the message handler failed: handler bug/);
  t.equal(result.calls, 1, 'no message is handed on after the failure');
});

t.test('gRPC stream: hostile fake containerds end the stream with a reason, a quiet one does not', async (t) => {
  const cases: [string, (s: http2.ServerHttp2Stream) => void, RegExp][] = [
    ['a stream that ends without grpc-status', (s) => { s.respond({ ':status': 200, 'content-type': 'application/grpc' }); s.end(frame(envelope({}))); }, /without a gRPC status/],
    ['a truncated frame, then the end', (s) => { s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true }); s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' })); s.end(frame(envelope({})).subarray(0, 12)); }, /inside a frame/],
    ['an oversized frame', (s) => { s.respond({ ':status': 200, 'content-type': 'application/grpc' }); s.write(Buffer.from([0, 0x7f, 0xff, 0xff, 0xff])); }, /larger than/],
    ['a grpc error status', (s) => { s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'unavailable' }, { endStream: true }); }, /grpc status 14: unavailable/],
    ['a malformed grpc-message (shown as sent, not thrown out of the event handler)', (s) => { s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '13', 'grpc-message': 'bad %E0%A4%A escape' }, { endStream: true }); }, /grpc status 13: bad %E0%A4%A escape/],
    ['a reset stream', (s) => { s.close(http2.constants.NGHTTP2_INTERNAL_ERROR); }, /./],
  ];
  for (const [why, behave, msg] of cases) {
    const fake = await fakeContainerd(t, (s) => behave(s));
    const r = runStream(fake.sock);
    t.ok(await until(() => r.result.ended), `${why}: the stream ends`);
    t.match(r.result.err?.message ?? '', msg, `${why}: with the reason`);
    t.equal(r.result.err?.code, 'NW_ERR_RUNTIME');
    r.close();
  }
  // Quiet but alive: pings are answered, nothing arrives, the stream stays.
  const quiet = await fakeContainerd(t, (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc' }));
  const r = runStream(quiet.sock, { pingMs: 50 });
  // Opened (a positive: wait for it), then kept for 600 ms of PINGs (a negative: a fixed time is the point).
  await until(() => r.result.opened);
  await until(() => false, 600);
  t.ok(r.result.opened && !r.result.ended, 'a stream that never sends anything but stays open (and answers PINGs) is kept');
  r.close();
  t.ok(r.result.ended && r.result.err === undefined, 'close() ends it without an error');
  // Messages arrive one by one as they are sent.
  const live = await fakeContainerd(t, (s) => {
    s.respond({ ':status': 200, 'content-type': 'application/grpc' });
    const f = frame(envelope({}));
    s.write(f.subarray(0, 7));
    setTimeout(() => s.write(Buffer.concat([f.subarray(7), frame(envelope({ topic: '/containers/delete' }))])), 50);
  });
  const l = runStream(live.sock);
  t.ok(await until(() => l.got.length === 2), 'frames split across writes arrive whole');
  t.equal(decodeEnvelope(l.got[1]!, NS)?.action, 'destroy');
  l.close();
});

t.test('gRPC stream: a peer that accepts the connection and never answers costs one timeout', async (t) => {
  const net = await import('node:net');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-ctd-frozen-'));
  const sock = path.join(dir, 'frozen.sock');
  const conns: import('node:net').Socket[] = [];
  const server = net.createServer((c) => conns.push(c));
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(() => {
    for (const c of conns) c.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const r = runStream(sock, { timeoutMs: 200 });
  t.ok(await until(() => r.result.ended), 'the stream gives up');
  t.equal(r.result.err?.code, 'NW_ERR_TIMEOUT');
  t.notOk(r.result.opened, 'and was never taken for open');
});

t.test('containerd events: the stream is made again after it ends, the gap triggers a full re-read, a stuck container its collectors', async (t) => {
  const fake = await fakeContainerd(t, (s, n) => {
    s.respond({ ':status': 200, 'content-type': 'application/grpc' });
    // First connection: an exit whose container stays dead, and a deletion (published once done), then
    // containerd "restarts" (the stream is cut without a status).
    if (n === 1) s.end(Buffer.concat([frame(envelope({ topic: '/tasks/exit' })), frame(envelope({ topic: '/containers/delete', id: 'deleted' }))]));
    else s.write(frame(envelope({ topic: '/tasks/exit', id: 'other' })));
  });
  const events = new ContainerdEvents(fake.sock, NS, 1000, 100);
  const asked: string[] = [];
  const { seen, triggered } = followForTest(t, events, async (id) => (asked.push(id), id === ID ? { status: 'no task', dead: true, removing: false } : undefined), 10);
  events.start();
  t.ok(await until(() => seen.some((e) => e.id === 'other')), 'reconnected after the stream was cut');
  t.ok(await until(() => triggered.some((n) => n.includes('drift'))), 'the gap made every runtime collector run again');
  t.ok(await until(() => triggered.some((n) => n.join() === 'immutable,mounts')), 'a container left dead after its task exited made the removal collectors run at once');
  t.ok(seen.some((e) => e.id === 'deleted'), 'the deletion was seen');
  t.notOk(asked.includes('deleted'), 'a deleted container is not asked about again (the deletion is the end of it)');
  t.equal(fake.connections(), 2);
});

t.test('gRPC stream with a probe: kept alive by calls the server answers; a probe that gets no answer ends it with NW_ERR_TIMEOUT', async (t) => {
  const alive = await fakeContainerd(t, (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc' }));
  const a = runStream(alive.sock, { pingMs: 50, probe: VERSION_METHOD });
  t.ok(await until(() => alive.probes() >= 5), 'the probe is asked every ping interval');
  t.ok(a.result.opened && !a.result.ended, 'answered probes keep the stream');
  a.close();
  const answersError = await fakeContainerd(t, (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc' }), (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': 'unimplemented' }, { endStream: true }));
  const e = runStream(answersError.sock, { pingMs: 50, probe: VERSION_METHOD });
  t.ok(await until(() => answersError.probes() >= 3));
  t.notOk(e.result.ended, 'any grpc-status is an answer: the daemon is alive');
  e.close();
  const frozen = await fakeContainerd(t, (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc' }), () => {});
  const f = runStream(frozen.sock, { pingMs: 50, timeoutMs: 300, probe: VERSION_METHOD });
  t.ok(await until(() => f.result.ended), 'a probe left unanswered ends the stream');
  t.equal(f.result.err?.code, 'NW_ERR_TIMEOUT');
  t.match(f.result.err?.message ?? '', /no answer to \/containerd.services.version.v1.Version\/Version within 300 ms/);
});

t.test('containerdStatus: gone, stuck in deletion, exited and left', async (t) => {
  const ev = (topic: string): ContainerEvent => ({ runtime: 'containerd', namespace: 'k8s.io', action: CONTAINERD_TOPICS[topic]!, id: 'c1', time: 0, topic });
  const client = (containers: string[], tasks: { containerId: string; status: string }[]) => ({
    container: async (_ns: string, id: string) => (containers.includes(id) ? { id } : undefined),
    task: async (_ns: string, id: string) => tasks.find((t) => t.containerId === id),
  });
  t.equal(await containerdStatus(client([], []), 'c1', ev('/tasks/exit')), undefined, 'gone: the normal end');
  t.same(await containerdStatus(client(['c1'], []), 'c1', ev('/containers/delete')), { status: 'no task', dead: true, removing: true });
  t.same(await containerdStatus(client(['c1'], [{ containerId: 'c1', status: 'STOPPED' }]), 'c1', ev('/tasks/exit')), { status: 'STOPPED', dead: true, removing: false });
  t.same(await containerdStatus(client(['c1'], []), 'c1', ev('/tasks/exit')), { status: 'no task', dead: true, removing: false }, 'exited, task cleaned up, container still there');
  t.same(await containerdStatus(client(['c1'], []), 'c1', ev('/tasks/delete')), { status: 'no task', dead: false, removing: false }, 'a CRI container kept after its task was deleted is normal');
  t.same(await containerdStatus(client(['c1'], [{ containerId: 'c1', status: 'RUNNING' }]), 'c1', ev('/tasks/exit')), { status: 'RUNNING', dead: false, removing: false }, 'an exec that exited');
});
