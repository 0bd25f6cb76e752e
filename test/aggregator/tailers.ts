import t from 'tap';
import { pino } from 'pino';
import { Connections } from '../../aggregator/connections.js';
import { Fleet, type TimedTransition } from '../../aggregator/fleet.js';
import { AggregatorCounters } from '../../aggregator/metrics.js';
import { Tailers } from '../../aggregator/tailers.js';
import { CLOSE } from '../../protocol/wire.js';
import { finding } from '../helpers/findings.js';
import { FakeSocket } from '../helpers/fake-socket.js';

const log = pino({ level: 'silent' });
const MiB = 1024 * 1024;

function setup(t: { teardown(fn: () => void): void }, limits: { chunkBytes?: number; maxTailerBufferBytes?: number } = {}) {
  const fleet = new Fleet({ historyLimit: 10_000, silentAfterMs: 60_000 });
  const connections = new Connections({ log, counters: new AggregatorCounters(), rateLimit: { perSecond: 1000, burst: 1000 } });
  const tailers = new Tailers({ fleet, connections, limits: { handshakeTimeoutMs: 60_000, chunkBytes: limits.chunkBytes ?? MiB, maxTailerBufferBytes: limits.maxTailerBufferBytes ?? 16 * MiB } });
  fleet.on('transition', (tr: TimedTransition) => tailers.broadcast(tr));
  fleet.connect('node-a', { agentVersion: 't', collectors: ['disk'] });
  fleet.connect('node-b', { agentVersion: 't', collectors: ['disk'] });
  t.teardown(() => fleet.close());
  const tail = (filter: object = {}, extra: object = {}) => {
    const ws = new FakeSocket();
    tailers.add(connections.add(ws.asWebSocket(), { role: 'tail', name: 'ops' }));
    ws.receive({ v: 1, type: 'subscribe', filter, ...extra });
    return ws;
  };
  /** Writes every chunk a tailer has been sent so far, as its socket would. */
  const drain = (ws: FakeSocket) => {
    while (ws.flush() > 0);
  };
  return { fleet, tailers, tail, drain };
}

const types = (ws: FakeSocket) => ws.messages().map((m) => m['type']);

t.test('a tailer gets the active set, then each transition its filter matches', async (t) => {
  const { fleet, tail, drain } = setup(t);
  fleet.applySnapshot('node-a', [finding('node-a', 'disk.usage', '/')]);
  const all = tail();
  const onlyB = tail({ node: 'node-b' });
  drain(all);
  drain(onlyB);
  t.match(all.messages(), [{ type: 'active', findings: [{ node: 'node-a', check: 'disk.usage' }] }]);
  t.same(onlyB.messages(), [{ v: 1, type: 'active', findings: [] }], 'node-b has nothing active');
  fleet.applySnapshot('node-b', [finding('node-b', 'disk.usage', '/var')]);
  fleet.applySnapshot('node-a', []);
  t.same(types(all), ['active', 'transition', 'transition']);
  t.match(all.messages().slice(1), [{ transition: { type: 'firing', finding: { node: 'node-b' } } }, { transition: { type: 'resolved', finding: { node: 'node-a' } } }]);
  t.same(types(onlyB), ['active', 'transition'], "node-a's resolution does not reach a node-b tailer");
});

t.test('history and the active set go out in chunks under chunkBytes, one after the other; live transitions wait until they are done', async (t) => {
  const { fleet, tail } = setup(t, { chunkBytes: 4096 });
  const since = Date.now() - 1000;
  fleet.applySnapshot('node-a', Array.from({ length: 60 }, (_, i) => finding('node-a', 'disk.usage', `/mnt/${i}`)));
  const ws = tail({}, { sinceMs: since });
  t.same(types(ws), ['history'], 'one chunk at a time: the next waits until this one is written');
  fleet.applySnapshot('node-b', [finding('node-b', 'disk.usage', '/live')]);
  t.same(types(ws), ['history'], 'a live transition is held while the initial set is sent');
  while (ws.flush() > 0);
  const got = ws.messages();
  const history = got.filter((m) => m['type'] === 'history');
  const active = got.filter((m) => m['type'] === 'active');
  t.ok(history.length > 1 && active.length > 1, `both were chunked (${history.length} history, ${active.length} active)`);
  t.ok(ws.sent.every((s) => Buffer.byteLength(s) < 4096 + 100), 'each chunk is within chunkBytes plus its envelope');
  t.same(history.map((m) => m['more'] === true), [...history.slice(1).map(() => true), false], 'all history chunks but the last say more');
  t.equal(history.flatMap((m) => m['transitions'] as unknown[]).length, 60, 'the 60 firings from before it subscribed; the live one is not repeated in history');
  t.equal(active.flatMap((m) => m['findings'] as unknown[]).length, 60, 'the active set when the tailer subscribed');
  t.same(types(ws).slice(-1), ['transition'], 'the held transition comes after the active set');
  t.match(got.at(-1), { transition: { finding: { subject: '/live' } } });
});

t.test('backpressure: a tailer with more than maxTailerBufferBytes waiting is dropped as too slow; the others are served', async (t) => {
  const { fleet, tail, drain } = setup(t, { maxTailerBufferBytes: 8 * 1024 });
  const slow = tail();
  const fast = tail();
  drain(slow);
  drain(fast);
  slow.bufferedAmount = 8 * 1024 + 1;
  fleet.applySnapshot('node-a', [finding('node-a', 'disk.usage', '/')]);
  t.same(slow.closed, { code: CLOSE.POLICY, reason: 'tailer too slow: more than 0 MiB waiting' });
  t.same(types(slow), ['active'], 'nothing more is queued for it');
  t.same(types(fast), ['active', 'transition']);
});

t.test('a tailer that never reads its active set is dropped once the transitions held for it pass the bound', async (t) => {
  const { fleet, tail } = setup(t, { chunkBytes: 1024, maxTailerBufferBytes: 4 * 1024 });
  fleet.applySnapshot('node-a', Array.from({ length: 10 }, (_, i) => finding('node-a', 'disk.usage', `/mnt/${i}`)));
  const stuck = tail();
  t.same(types(stuck), ['active'], 'the first chunk went out and was never written');
  for (let i = 0; i < 20 && !stuck.closed; i++) fleet.applySnapshot('node-b', [finding('node-b', 'disk.usage', `/${i}`)]);
  t.same(stuck.closed, { code: CLOSE.POLICY, reason: 'tailer too slow: its active set is not read' });
  t.same(types(stuck), ['active'], 'nothing held was sent to it');
});

t.test('one subscribe per connection: a second one is refused (4006)', async (t) => {
  const { tail } = setup(t);
  const ws = tail();
  ws.receive({ v: 1, type: 'subscribe', filter: { node: 'node-b' } });
  t.same(ws.closed, { code: CLOSE.LIMIT, reason: 'one subscribe per connection; reconnect to change the filter' });
});

t.test('the tailers that are connected and the bytes waiting for them, for /healthz and /metrics', async (t) => {
  const { tailers, tail } = setup(t);
  const a = tail();
  const b = tail();
  a.bufferedAmount = 100;
  b.bufferedAmount = 23;
  t.equal(tailers.size, 2);
  t.equal(tailers.bufferedBytes(), 123);
  a.terminate();
  t.equal(tailers.size, 1, 'a closed tailer leaves');
});
