import t from 'tap';
import { CLOSE, MAX_MESSAGE_BYTES, WireError, decodeAgentMessage, decodeTailerMessage, matchesFilter } from '../../protocol/wire.js';
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
