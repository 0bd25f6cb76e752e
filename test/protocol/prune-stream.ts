import t from 'tap';
import fc from 'fast-check';
import { isNodewardenError } from '../../protocol/errors.js';
import { MAX_PRUNE_LINE_BYTES, decodePruneLine, encodePruneLine, type PruneLine } from '../../protocol/prune-stream.js';

/** 'accepted', or the error's code and message. */
const outcome = (raw: string): string => {
  try {
    decodePruneLine(raw);
    return 'accepted';
  } catch (err) {
    return isNodewardenError(err) ? `${err.code} ${err.message}` : `NOT OURS ${String(err)}`;
  }
};

// What the aggregator writes (aggregator/server.ts), one of each.
const good: PruneLine[] = [
  { type: 'accepted', commandId: '6c1f7d1e-1e55-4c55-9d1a-3f1c2b0a9e11', node: 'worker-3', untilMs: 259_200_000, dryRun: true },
  { type: 'progress', image: 'registry.k8s.io/pause:3.9', size: 300_000, state: 'kept', reason: 'sandbox (pause) image', index: 0, total: 2 },
  { type: 'progress', image: 'app:1', size: 5_000_000, state: 'would-remove', index: 1, total: 2 },
  { type: 'result', ok: true, dryRun: true, runtime: 'docker', removed: 0, bytes: 0, errors: [], kept: 1 },
  { type: 'result', ok: false, dryRun: false, runtime: 'containerd', removed: 0, bytes: 0, errors: [], refused: 'prune is disabled on worker-3' },
  { type: 'error', message: 'no result from worker-3 within 600000 ms' },
];

t.test('every line the aggregator writes decodes to itself', async (t) => {
  for (const line of good) {
    const raw = encodePruneLine(line);
    t.ok(raw.endsWith('\n') && !raw.slice(0, -1).includes('\n'), `${line.type}: one line`);
    t.same(decodePruneLine(raw.slice(0, -1)), line, `${line.type} round-trips`);
  }
});

t.test('hostile and malformed lines are refused with NW_ERR_PROTOCOL and a reason', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"type":"result",', /^NW_ERR_PROTOCOL unreadable line from the aggregator: \{"type":"result",$/],
    ['a JSON list', '[1,2]', /must be a JSON object, got a list/],
    ['a JSON string', '"hello"', /must be a JSON object, got "hello"/],
    ['no type', '{"ok":true}', /unknown line type undefined/],
    ['an unknown type', '{"type":"shell","cmd":"rm -rf /"}', /unknown line type "shell"/],
    ['__proto__ as the type', '{"type":"__proto__"}', /unknown line type "__proto__"/],
    ['constructor as the type', '{"type":"constructor"}', /unknown line type "constructor"/],
    // `ok: "yes"` used to be truthy: exit 0 and "removed undefined image(s)".
    ['a result whose ok is a string', JSON.stringify({ ...good[3], ok: 'yes' }), /invalid result line from the aggregator: ok must be true or false, got string "yes"/],
    ['a result without errors', JSON.stringify({ ...good[3], errors: undefined }), /errors is required/],
    ['a result whose errors are objects', JSON.stringify({ ...good[3], errors: [{ toString: 'x' }] }), /errors\[0\] must be a string, got an object/],
    ['a result whose refusal is an object', JSON.stringify({ ...good[4], refused: { a: 1 } }), /refused must be a string/],
    ['a result with an extra field', JSON.stringify({ ...good[3], exec: 'sh' }), /exec unknown key/],
    ['a progress of negative size', JSON.stringify({ ...good[2], size: -1 }), /size must be a number >= 0/],
    ['a progress with an unknown state', JSON.stringify({ ...good[2], state: 'exploded' }), /state must be one of removed, failed, would-remove, kept/],
    ['a progress whose image is 5,000 lists deep', `{"type":"progress","image":${'['.repeat(5000)}${']'.repeat(5000)},"size":1,"state":"removed","index":0,"total":1}`, /image must be a string, got a list/],
    ['a progress whose image is 1 MB', JSON.stringify({ ...good[2], image: 'x'.repeat(1_000_000) }), /image must be at most 1024 characters/],
    ['an accepted line for a node name with a path in it', JSON.stringify({ ...good[0], node: '../../etc' }), /node must match/],
    ['an error without a message', '{"type":"error"}', /message is required/],
    ['a line over the limit', `{"type":"error","message":"${'x'.repeat(MAX_PRUNE_LINE_BYTES)}"}`, /over the \d+-byte limit/],
  ];
  for (const [name, raw, expected] of cases) t.match(outcome(raw), expected, name);
  const long = outcome(`{"type":"result","ok":1,"dryRun":1,"runtime":1,"removed":"a","bytes":"b","errors":1}`);
  t.match(long, /\(\+\d+ more\)$/, 'many problems: the first three and a count');
  t.ok(long.length < 320, 'the reason stays short');
  t.match(outcome(`x`.repeat(10_000)), /^NW_ERR_PROTOCOL unreadable line from the aggregator: x{199}…$/, 'an unreadable line is quoted cut short');
});

t.test('property: the decoder refuses anything with NW_ERR_PROTOCOL and never throws anything else', async (t) => {
  const total = (raw: string) => {
    try {
      const line = decodePruneLine(raw);
      JSON.stringify(line); // whatever is accepted can be written again
    } catch (err) {
      if (!isNodewardenError(err, 'NW_ERR_PROTOCOL')) throw err;
      if (err.message.length > 400) throw new Error(`reason far too long: ${err.message.length}`);
    }
  };
  fc.assert(fc.property(fc.string(), (s) => total(s)), { numRuns: 500 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => total(Buffer.from(b).toString('utf8'))), { numRuns: 300 });
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => total(JSON.stringify(v) ?? 'null')), { numRuns: 500 });
  // Lines shaped like the real ones, with fields replaced by anything.
  const types = fc.constantFrom('accepted', 'progress', 'result', 'error', '__proto__', 'toString', 'hello');
  const keys = fc.constantFrom('type', 'commandId', 'node', 'untilMs', 'dryRun', 'image', 'size', 'state', 'reason', 'index', 'total', 'ok', 'runtime', 'removed', 'bytes', 'errors', 'kept', 'refused', 'message');
  fc.assert(
    fc.property(fc.constantFrom(...good), types, fc.dictionary(keys, fc.jsonValue({ maxDepth: 4 })), (base, type, fields) => {
      total(JSON.stringify({ ...base, ...fields }));
      total(JSON.stringify({ ...base, type, ...fields }));
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('[', '{"a":'), fc.constantFrom('image', 'errors', 'message', 'refused'), (depth, open, key) => {
      const close = open === '[' ? ']' : '}';
      total(`{"type":"result","ok":true,"dryRun":false,"runtime":"docker","removed":0,"bytes":0,"errors":[],"${key}":${open.repeat(depth)}1${close.repeat(depth)}}`);
    }),
    { numRuns: 50 },
  );
  t.pass('no line made the decoder throw anything but NW_ERR_PROTOCOL');
});
