import t from 'tap';
import { pino } from 'pino';
import { Connections, closeReason, codeOf } from '../../aggregator/connections.js';
import { LimitError } from '../../aggregator/fleet.js';
import { AggregatorCounters } from '../../aggregator/metrics.js';
import { NodewardenError } from '../../protocol/errors.js';
import { CLOSE, WireError, decodeTailerMessage } from '../../protocol/wire.js';
import { FakeSocket } from '../helpers/fake-socket.js';

function setup(rateLimit = { perSecond: 1, burst: 3 }) {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const counters = new AggregatorCounters();
  const connections = new Connections({ log, counters, rateLimit });
  const ws = new FakeSocket();
  const conn = connections.add(ws.asWebSocket(), { role: 'tail', name: 'ops' }, 'tail-secret');
  return { connections, counters, ws, conn, lines };
}

const subscribe = Buffer.from(JSON.stringify({ v: 1, type: 'subscribe', filter: {} }));

t.test('a flood past the burst is closed 1008 with the rate in the reason, and counted', async (t) => {
  const { connections, counters, ws, conn } = setup();
  for (let i = 0; i < 3; i++) t.ok(connections.receive(conn, subscribe, decodeTailerMessage), `message ${i + 1} of the burst`);
  t.equal(connections.receive(conn, subscribe, decodeTailerMessage), undefined);
  t.same(ws.closed, { code: CLOSE.POLICY, reason: 'more than 1 messages per second' });
  t.equal(counters.messages, 4, 'every message received is counted, the refused one too');
  t.equal(counters.rejected.get(`close ${CLOSE.POLICY}`), 1);
});

t.test('a message that does not decode closes the connection with the close code the decoder chose', async (t) => {
  const { connections, ws, conn } = setup();
  t.equal(connections.receive(conn, Buffer.from('{"v":1,"type":"subscribe","filter":{"node":5}}'), decodeTailerMessage), undefined);
  t.equal(ws.closed?.code, CLOSE.MALFORMED);
  t.match(ws.closed?.reason, /node/, 'the reason names the field');
  const other = setup();
  other.connections.receive(other.conn, subscribe, () => {
    throw new RangeError('not a WireError');
  });
  t.same(other.ws.closed, { code: CLOSE.MALFORMED, reason: 'invalid message' }, 'a decoder failure of any other kind is a plain 4000');
});

t.test('a handler that fails refuses only that connection: a limit with 4006 and its reason, anything else with 1011; both logged with a code and counted', async (t) => {
  const { connections, counters, ws, conn, lines } = setup();
  connections.guard(conn, 'agent', () => {
    throw new LimitError('node-a already has 2000 active findings, its limit');
  });
  t.same(ws.closed, { code: CLOSE.LIMIT, reason: 'node-a already has 2000 active findings, its limit' });
  t.equal(counters.errors.get('agent\0NW_ERR_LIMIT'), 1);
  const other = setup();
  other.connections.guard(other.conn, 'tailer', () => {
    throw new TypeError('a bug');
  });
  t.same(other.ws.closed, { code: CLOSE.INTERNAL, reason: 'the aggregator could not handle this message; see its log' });
  t.equal(other.counters.errors.get('tailer\0NW_ERR_INTERNAL'), 1);
  t.match(other.lines.find((l) => l['code'] === 'NW_ERR_INTERNAL'), { level: 50, where: 'tailer', err: 'a bug' }, 'an internal error is logged at error level');
  t.match(lines.find((l) => l['code'] === 'NW_ERR_LIMIT'), { level: 40, where: 'agent' }, 'a limit is a warning');
});

t.test('failures are counted by where and a known code only', async (t) => {
  const { connections, counters } = setup();
  connections.failed('journal', Object.assign(new Error('no space'), { code: 'ENOSPC' }));
  connections.failed('kubernetes', new NodewardenError('NW_ERR_RUNTIME', 'TokenReview unavailable'));
  connections.failed('agent', new WireError(CLOSE.MALFORMED, 'bad'));
  t.same([...counters.errors], [['journal\0NW_ERR_IO', 1], ['kubernetes\0NW_ERR_RUNTIME', 1], ['agent\0NW_ERR_PROTOCOL', 1]]);
  t.equal(codeOf('a string'), 'NW_ERR_INTERNAL');
  counters.error('http', 'NW_ERR_MADE_UP');
  t.equal(counters.errors.get('http\0NW_ERR_INTERNAL'), 1, 'a code outside the known set cannot create a series');
});

t.test('a close reason is cut to the 123 bytes a close frame allows, never mid-character', async (t) => {
  const { connections, ws, conn } = setup();
  const long = `node ${'ü'.repeat(100)} is over its limit`;
  t.equal(Buffer.byteLength(closeReason(long)), 123);
  t.equal(Buffer.byteLength(closeReason(`x${long}`)), 122, 'a two-byte character that would end at byte 124 is left out whole');
  connections.close(conn, CLOSE.LIMIT, long);
  t.equal(ws.closed?.reason, closeReason(long), 'the socket is closed with the cut reason, not thrown at');
});

t.test('heartbeats: a connection that answered the last ping is pinged again; one that did not is dropped', async (t) => {
  const { connections, ws } = setup();
  const quiet = new FakeSocket();
  connections.add(quiet.asWebSocket(), { role: 'agent', name: 'agents' });
  connections.beat();
  t.equal(ws.pings, 1);
  t.equal(quiet.pings, 1);
  ws.emit('pong');
  connections.beat();
  t.equal(ws.pings, 2, 'it answered: pinged again');
  t.notOk(ws.terminated);
  t.ok(quiet.terminated, 'no pong since the last beat: dropped');
  t.equal(connections.all().length, 1, 'a dropped connection leaves the set');
});
