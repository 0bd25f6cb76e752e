import t from 'tap';
import { formatDuration, parseDuration, s, summarizeProblems, validate } from '../../protocol/schema.js';

t.test('durations', async (t) => {
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('1h30m'), 5_400_000);
  t.equal(parseDuration('72h'), 259_200_000);
  t.equal(parseDuration('10'), undefined, 'a bare number in a string has no unit');
  t.equal(parseDuration('5 minutes'), undefined);
  t.equal(formatDuration(90_000), '90s');
});

t.test('every problem is reported at once, with its key path', async (t) => {
  const spec = s.object({
    a: s.number({ default: 1, min: 0, max: 10, doc: '' }),
    b: s.object({ c: s.boolean({ default: true, doc: '' }), d: s.duration({ default: '1s', doc: '' }) }),
    e: s.list(s.string({ doc: '' }), { default: [], doc: '' }),
  });
  const r = validate(spec, { a: 11, b: { c: 'yes', d: 'soon', z: 1 }, e: ['ok', 3], f: 1 });
  t.notOk(r.ok);
  if (r.ok) return;
  t.same(r.problems.map((p) => p.path), ['a', 'b.c', 'b.d', 'b.z', 'e[1]', 'f']);
  const ok = validate(spec, { b: { d: '2m' } });
  t.same(ok, { ok: true, value: { a: 1, b: { c: true, d: 120_000 }, e: [] } }, 'defaults filled, durations in ms');
});

t.test('a literal takes exactly its value and is required; a list drops items that yield nothing', async (t) => {
  const spec = s.object({ v: s.literal(1), type: s.literal('hello'), names: s.list(s.string({ doc: '' }), { doc: '' }) });
  t.same(validate(spec, { v: 1, type: 'hello' }), { ok: true, value: { v: 1, type: 'hello' } }, 'an optional list without a default stays absent');
  const r = validate(spec, { v: '1', names: ['a', 7] });
  t.notOk(r.ok);
  if (r.ok) return;
  t.same(r.problems, [
    { path: 'v', message: 'must be 1, got string "1"' },
    { path: 'type', message: 'is required' },
    { path: 'names[1]', message: 'must be a string, got number 7' },
  ]);
  t.equal(summarizeProblems(r.problems), 'v must be 1, got string "1"; type is required; names[1] must be a string, got number 7');
  t.equal(summarizeProblems([...r.problems, { path: '', message: 'x' }]), 'v must be 1, got string "1"; type is required; names[1] must be a string, got number 7 (+1 more)', 'three, then a count');
  t.equal(summarizeProblems([{ path: '', message: 'must be an object' }], '(line)'), '(line) must be an object', 'the top level is named');
});
