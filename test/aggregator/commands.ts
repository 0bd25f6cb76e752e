import t from 'tap';
import { pino } from 'pino';
import { CommandBroker, DEFAULT_PRUNE_UNTIL_MS, parsePruneRequest, type CommandReply } from '../../aggregator/commands.js';
import type { AggregatorToAgent } from '../../protocol/wire.js';

const log = pino({ level: 'silent' });

/** The requester's side: NDJSON lines as the CLI reads them, and whether the response ended. */
function reply() {
  const r = {
    status: 0,
    lines: [] as Record<string, unknown>[],
    ended: false,
    closeListeners: [] as (() => void)[],
  };
  const sink: CommandReply = {
    writeHead: (status) => (r.status = status),
    write: (text) => {
      if (r.ended) throw new Error('write after end');
      r.lines.push(JSON.parse(text) as Record<string, unknown>);
    },
    end: (text) => {
      if (r.ended) throw new Error('end after end');
      r.lines.push(JSON.parse(text) as Record<string, unknown>);
      r.ended = true;
    },
    on: (_event, fn) => r.closeListeners.push(fn),
  };
  return { r, sink };
}

const RESULT = { ok: true, dryRun: false, runtime: 'docker', removed: 2, bytes: 2048, errors: [] };
const PROGRESS = { image: 'busybox:old', size: 1024, state: 'removed' as const, index: 1, total: 2 };

function started(broker: CommandBroker, node = 'node-a') {
  const sent: AggregatorToAgent[] = [];
  const { r, sink } = reply();
  const id = broker.start(node, { untilMs: 3_600_000, dryRun: false }, 'admin', sink, (m) => sent.push(m));
  return { id, r, sent };
}

t.test('a prune is accepted with an id, sent to the agent, relays progress, and ends with the result', async (t) => {
  const broker = new CommandBroker({ timeoutMs: 60_000, log });
  const { id, r, sent } = started(broker);
  t.equal(r.status, 200);
  t.same(r.lines[0], { type: 'accepted', commandId: id, node: 'node-a', untilMs: 3_600_000, dryRun: false });
  t.same(sent, [{ v: 1, type: 'command', id, command: 'prune', untilMs: 3_600_000, dryRun: false, requestedBy: 'admin' }], 'the agent is told who asked');
  t.ok(broker.busy('node-a'), 'one prune per node at a time');
  t.notOk(broker.busy('node-b'));
  broker.answer('node-a', { v: 1, type: 'progress', commandId: id, progress: PROGRESS });
  broker.answer('node-a', { v: 1, type: 'result', commandId: id, result: RESULT });
  t.same(r.lines.slice(1), [{ type: 'progress', ...PROGRESS }, { type: 'result', ...RESULT }]);
  t.ok(r.ended);
  t.notOk(broker.busy('node-a'), 'done: the node takes the next prune');
  broker.answer('node-a', { v: 1, type: 'result', commandId: id, result: RESULT });
  t.equal(r.lines.length, 3, 'a second result for the same id is dropped');
});

t.test('no result in time: the requester hears an error once; a result arriving after it is dropped', async (t) => {
  const broker = new CommandBroker({ timeoutMs: 20, log });
  const { id, r } = started(broker);
  await new Promise<void>((resolve) => {
    const wait = setInterval(() => r.ended && (clearInterval(wait), resolve()), 5);
  });
  t.same(r.lines.at(-1), { type: 'error', message: 'no result from node-a within 20 ms' });
  t.notOk(broker.busy('node-a'), 'a timed-out prune no longer blocks the node');
  broker.answer('node-a', { v: 1, type: 'progress', commandId: id, progress: PROGRESS });
  broker.answer('node-a', { v: 1, type: 'result', commandId: id, result: RESULT });
  t.equal(r.lines.length, 2, 'accepted, then the timeout: the late answers are not written (no write after end)');
});

t.test("answers from another node, or for an id never given out, touch no one's command", async (t) => {
  const broker = new CommandBroker({ timeoutMs: 60_000, log });
  const { id, r } = started(broker);
  broker.answer('node-b', { v: 1, type: 'result', commandId: id, result: RESULT });
  broker.answer('node-a', { v: 1, type: 'result', commandId: 'made-up', result: RESULT });
  t.equal(r.lines.length, 1);
  t.notOk(r.ended);
  t.ok(broker.busy('node-a'));
  broker.stop();
});

t.test("the agent going away or the aggregator stopping ends each command with an error that says so", async (t) => {
  const broker = new CommandBroker({ timeoutMs: 60_000, log });
  const a = started(broker, 'node-a');
  const b = started(broker, 'node-b');
  broker.agentGone('node-a');
  t.same(a.r.lines.at(-1), { type: 'error', message: 'the agent on node-a disconnected during the command' });
  t.notOk(b.r.ended, "another node's command carries on");
  broker.stop();
  t.same(b.r.lines.at(-1), { type: 'error', message: 'aggregator shutting down' });
  t.ok(a.r.ended && b.r.ended);
});

t.test('the request body: defaults, and a reason for each refusal', async (t) => {
  t.same(parsePruneRequest(''), { untilMs: DEFAULT_PRUNE_UNTIL_MS, dryRun: false }, 'an empty body: 72 h, not a dry run');
  t.equal(DEFAULT_PRUNE_UNTIL_MS, 72 * 3_600_000);
  t.same(parsePruneRequest('{"untilMs": 0, "dryRun": true}'), { untilMs: 0, dryRun: true });
  for (const body of ['[]', 'null', '"x"', '{', '12']) t.match(parsePruneRequest(body), { error: /body must be JSON/ }, body);
  for (const body of ['{"untilMs": -1}', '{"untilMs": "1h"}', '{"untilMs": 1e400}']) t.match(parsePruneRequest(body), { error: /untilMs must be a number/ }, body);
  t.match(parsePruneRequest('{"dryRun": "yes"}'), { error: /dryRun must be true or false/ });
});
