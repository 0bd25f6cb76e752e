import t from 'tap';
import { formatDuration, parseDuration, s, validate } from '../../protocol/schema.js';

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
