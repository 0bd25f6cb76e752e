import t from 'tap';
import fc from 'fast-check';
import { CLOSE, FINDING_LIMITS, MAX_MESSAGE_BYTES, WireError, decodeAgentMessage, decodeAggregatorMessage, decodeTailerMessage, matchesFilter } from '../../protocol/wire.js';
import { finding } from '../helpers/findings.js';

const code = (fn: () => unknown) => {
  try {
    fn();
    return 'accepted';
  } catch (err) {
    return err instanceof WireError ? `${err.closeCode} ${err.reason}` : String(err);
  }
};

t.test('valid messages pass, with every field checked', async (t) => {
  const f = finding('n1', 'disk.usage', '/');
  t.equal(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'n1', agentVersion: '0.1.0', collectors: ['disk'] }))), 'accepted');
  t.equal(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'snapshot', findings: [f] }))), 'accepted');
  t.equal(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'resolved', finding: { ...f, state: 'resolved' } }] }))), 'accepted');
  t.equal(code(() => decodeTailerMessage(JSON.stringify({ v: 1, type: 'subscribe', filter: { severity: 'warning' }, sinceMs: 0 }))), 'accepted');
});

t.test('invalid messages get a close code and a reason', async (t) => {
  const f = finding('n1', 'disk.usage', '/');
  t.match(code(() => decodeAgentMessage('{not json')), new RegExp(`^${CLOSE.MALFORMED} malformed JSON`));
  t.match(code(() => decodeAgentMessage('[1,2]')), /must be a JSON object/);
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 2, type: 'hello' }))), new RegExp(`^${CLOSE.VERSION} unsupported protocol version 2`));
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'hello', protocol: 7, node: 'n1', agentVersion: 'x', collectors: [] }))), new RegExp(`^${CLOSE.VERSION}`));
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'explode' }))), /unknown message type "explode"/);
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'snapshot', findings: [{ ...f, severity: 'apocalyptic' }] }))), /invalid snapshot: findings\[0\]\.severity must be one of info, warning, critical/);
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'snapshot', findings: [{ ...f, id: undefined }] }))), /findings\[0\]\.id is required/);
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'snapshot', findings: [{ ...f, firstSeen: 'yesterday' }] }))), /firstSeen must match/);
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: '../etc', agentVersion: 'x', collectors: [] }))), /node must match/);
  t.match(code(() => decodeAgentMessage(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 32))), new RegExp(`^${CLOSE.TOO_BIG}`));
  t.match(code(() => decodeTailerMessage(JSON.stringify({ v: 1, type: 'subscribe', filter: { severity: 'loud' } }))), /severity must be one of/);
});

t.test('tail filters', async (t) => {
  const f = finding('n1', 'disk.usage', '/', 'warning');
  t.ok(matchesFilter(f, {}));
  t.ok(matchesFilter(f, { check: 'disk' }), 'a check prefix matches its family');
  t.notOk(matchesFilter(f, { check: 'dis' }));
  t.ok(matchesFilter(f, { severity: 'warning' }));
  t.notOk(matchesFilter(f, { severity: 'critical' }), 'severity is a minimum');
  t.notOk(matchesFilter(f, { node: 'n2' }));
});

t.test('crashes from the issue are refusals with a reason', async (t) => {
  const f = finding('n1', 'disk.usage', '/');
  // 5,000 nested arrays in evidence: refused here, before any JSON.stringify could overflow the stack.
  const deep = `{"v":1,"type":"snapshot","findings":[${JSON.stringify({ ...f, evidence: { x: 0 } }).replace('{"x":0}', `{"x":${'['.repeat(5000)}${']'.repeat(5000)}}`)}]}`;
  t.ok(deep.length > 10_000);
  t.match(code(() => decodeAgentMessage(deep)), /^4000 invalid snapshot: findings\[0\]\.evidence must nest at most 8 levels deep/);
  for (const type of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type }))), /^4000 unknown message type/, `type ${type} is unknown, not Object.prototype's`);
    t.match(code(() => decodeTailerMessage(JSON.stringify({ v: 1, type }))), /^4000 unknown message type/);
  }
  t.match(code(() => decodeTailerMessage('{"v":1,"type":"subscribe","filter":null}')), /^4000 invalid subscribe: filter is required and must be an object, got null/);
  t.equal(code(() => decodeTailerMessage('{"v":1,"type":"subscribe"}')), 'accepted', 'no filter: every finding');
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'snapshot', findings: [null] }))), /findings\[0\] is required/);
  t.match(code(() => decodeAgentMessage(JSON.stringify({ v: [[[[1]]]], type: 'hello' }))), /unsupported protocol version a list/);
});

t.test('finding fields are bounded in size', async (t) => {
  const f = finding('n1', 'disk.usage', '/');
  const snap = (over: object) => code(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'snapshot', findings: [{ ...f, ...over }] })));
  t.match(snap({ message: 'x'.repeat(FINDING_LIMITS.messageChars + 1) }), /message must be at most 4096 characters/);
  t.equal(snap({ message: 'x'.repeat(FINDING_LIMITS.messageChars) }), 'accepted');
  t.match(snap({ subject: 'x'.repeat(FINDING_LIMITS.subjectChars + 1) }), /subject must be at most/);
  t.match(snap({ remedy: 'x'.repeat(FINDING_LIMITS.remedyChars + 1) }), /remedy must be at most/);
  t.match(snap({ id: 'x'.repeat(200) }), /id must be at most/);
  t.match(snap({ evidence: { blob: 'x'.repeat(FINDING_LIMITS.evidenceBytes) } }), /evidence must be at most 16384 bytes/);
  t.equal(snap({ evidence: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } }), 'accepted', '7 levels of evidence are fine');
  t.match(snap({ workload: { pod: 'p'.repeat(300) } }), /workload\.pod must be at most/);
  // 3.9 MiB messages were kept whole in history and the journal: refused at the door now.
  t.match(snap({ message: 'x'.repeat(3.9 * 1024 * 1024) }), /message must be at most/);
});

t.test('property: the decoders refuse anything with a WireError (NW_ERR_PROTOCOL) and never throw anything else', async (t) => {
  const decoders = [decodeAgentMessage, decodeTailerMessage, decodeAggregatorMessage];
  const total = (raw: string | Buffer) => {
    for (const d of decoders) {
      try {
        const msg = d(raw);
        // Whatever is accepted can be encoded again (no cycles, no stack overflow).
        JSON.stringify(msg);
      } catch (err) {
        if (!(err instanceof WireError)) throw err;
        if (err.code !== 'NW_ERR_PROTOCOL') throw new Error(`refused with code ${err.code}, not NW_ERR_PROTOCOL`);
        if (Buffer.byteLength(err.reason) > 123 * 3) throw new Error('reason far too long');
      }
    }
  };
  const f = finding('n1', 'disk.usage', '/');
  const types = fc.constantFrom('hello', 'snapshot', 'delta', 'status', 'progress', 'result', 'subscribe', 'welcome', 'command', 'active', 'history', 'transition', '__proto__', 'constructor');
  fc.assert(fc.property(fc.string(), (s) => total(s)), { numRuns: 500 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => total(Buffer.from(b))), { numRuns: 300 });
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => total(JSON.stringify(v) ?? 'null')), { numRuns: 500 });
  // Messages shaped like the real ones, with fields replaced by anything.
  fc.assert(
    fc.property(types, fc.dictionary(fc.constantFrom('node', 'findings', 'transitions', 'filter', 'sinceMs', 'collectors', 'protocol', 'commandId', 'progress', 'result', 'evidence'), fc.jsonValue({ maxDepth: 4 })), fc.jsonValue({ maxDepth: 4 }), (type, fields, evidence) => {
      total(JSON.stringify({ v: 1, type, ...fields }));
      total(JSON.stringify({ v: 1, type: 'snapshot', findings: [{ ...f, evidence }] }));
      total(JSON.stringify({ v: 1, type: 'snapshot', findings: [{ ...f, ...fields }] }));
    }),
    { numRuns: 1000 },
  );
  // Deep nesting anywhere.
  fc.assert(fc.property(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('[', '{"a":'), (depth, open) => {
    const close = open === '[' ? ']' : '}';
    total(`{"v":1,"type":"snapshot","findings":[${JSON.stringify({ ...f, evidence: { x: 0 } }).replace('{"x":0}', `{"x":${open.repeat(depth)}1${close.repeat(depth)}}`)}]}`);
    total(`{"v":1,"type":"subscribe","filter":${open.repeat(depth)}1${close.repeat(depth)}}`);
  }), { numRuns: 50 });
  t.pass('no decoder threw anything but a WireError');
});

t.test('refresh: findings validated with the same limits; an unknown field on a delta is refused (why refresh is its own type)', async (t) => {
  const f = finding('n1', 'sockstat.timewait', 'tcp');
  t.equal(decodeAgentMessage(JSON.stringify({ v: 1, type: 'refresh', findings: [f] })).type, 'refresh');
  const refused = (msg: unknown) => {
    try {
      decodeAgentMessage(JSON.stringify(msg));
      return undefined;
    } catch (err) {
      return (err as WireError).closeCode;
    }
  };
  t.equal(refused({ v: 1, type: 'refresh', findings: [{ ...f, message: 'x'.repeat(FINDING_LIMITS.messageChars + 1) }] }), CLOSE.MALFORMED, 'message over its limit');
  t.equal(refused({ v: 1, type: 'refresh', findings: [{ ...f, evidence: { pad: 'x'.repeat(FINDING_LIMITS.evidenceBytes) } }] }), CLOSE.MALFORMED, 'evidence over its limit');
  t.equal(refused({ v: 1, type: 'refresh' }), CLOSE.MALFORMED, 'findings required');
  t.equal(refused({ v: 1, type: 'delta', transitions: [], refreshed: [f] }), CLOSE.MALFORMED, 'an unknown field closes the link: older aggregators would refuse it');
});

t.test('every check nodewarden raises passes the wire: an agent with kernel findings (kernel.systemOom) is not closed 4000', async (t) => {
  const { KNOWN_CHECKS } = await import('../../protocol/checks.js');
  for (const check of KNOWN_CHECKS) {
    const f = finding('n1', check, 'subject', 'warning');
    t.doesNotThrow(() => decodeAgentMessage(JSON.stringify({ v: 1, type: 'snapshot', findings: [f] })), `${check} decodes`);
  }
});
