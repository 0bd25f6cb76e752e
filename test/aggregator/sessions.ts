import t from 'tap';
import fc from 'fast-check';
import { Sessions, cookieValue, sameOrigin, SESSION_COOKIE } from '../../aggregator/sessions.js';

const who = { role: 'tail' as const, name: 'ops' };

t.test('a session lasts its time, then the cookie opens nothing', async (t) => {
  let now = 1_000;
  const sessions = new Sessions({ ttlMs: 60_000, max: 10, now: () => now });
  const s = sessions.create(who, 'tail-secret-0123456789');
  const req = { headers: { cookie: `other=1; ${SESSION_COOKIE}=${s.id}` } };
  t.equal(sessions.fromRequest(req)?.name, 'ops');
  now += 59_999;
  t.ok(sessions.fromRequest(req), 'just before it expires');
  now += 1;
  t.equal(sessions.fromRequest(req), undefined, 'expired');
  t.equal(sessions.size, 0, 'and forgotten');
  t.match(sessions.cookie(s, false), /^nw_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=60$/);
  t.match(sessions.cookie(s, true), /; Secure$/, 'Secure under TLS');
});

t.test('sessions are bounded: the oldest goes first', async (t) => {
  const sessions = new Sessions({ ttlMs: 60_000, max: 3 });
  const made = [1, 2, 3, 4].map(() => sessions.create(who, 'tail-secret-0123456789'));
  t.equal(sessions.size, 3);
  t.equal(sessions.fromRequest({ headers: { cookie: `${SESSION_COOKIE}=${made[0]!.id}` } }), undefined, 'the first was dropped');
  t.ok(sessions.fromRequest({ headers: { cookie: `${SESSION_COOKIE}=${made[3]!.id}` } }));
});

t.test('a revoked token ends its sessions; logout ends one', async (t) => {
  const sessions = new Sessions({ ttlMs: 60_000, max: 10 });
  const a = sessions.create(who, 'tail-secret-aaaaaaaaaaaa');
  const b = sessions.create({ role: 'admin', name: 'alice' }, 'admin-secret-bbbbbbbbbbbb');
  t.same(sessions.revokeExcept((s) => s.secret !== 'tail-secret-aaaaaaaaaaaa').map((s) => s.id), [a.id]);
  t.equal(sessions.fromRequest({ headers: { cookie: `${SESSION_COOKIE}=${a.id}` } }), undefined);
  sessions.end(b.id);
  t.equal(sessions.size, 0);
});

t.test('CSRF: the header must carry the session value exactly', async (t) => {
  const sessions = new Sessions({ ttlMs: 60_000, max: 10 });
  const s = sessions.create(who, 'tail-secret-0123456789');
  t.ok(Sessions.csrfOk(s, { headers: { 'x-nodewarden-csrf': s.csrf } }));
  t.notOk(Sessions.csrfOk(s, { headers: {} }), 'missing');
  t.notOk(Sessions.csrfOk(s, { headers: { 'x-nodewarden-csrf': `${s.csrf}x` } }), 'longer');
  t.notOk(Sessions.csrfOk(s, { headers: { 'x-nodewarden-csrf': s.id } }), 'the session id is not the CSRF value');
});

t.test('hostile cookies and origins', async (t) => {
  const sessions = new Sessions({ ttlMs: 60_000, max: 10 });
  const s = sessions.create(who, 'tail-secret-0123456789');
  const cases: [string, string][] = [
    ['two cookies of ours (one planted)', `${SESSION_COOKIE}=${s.id}; ${SESSION_COOKIE}=${s.id}`],
    ['a made-up id', `${SESSION_COOKIE}=${'A'.repeat(43)}`],
    ['the id with junk', `${SESSION_COOKIE}=${s.id}%00`],
    ['a huge header', `${SESSION_COOKIE}=${s.id}; x=${'y'.repeat(9000)}`],
    ['no value', `${SESSION_COOKIE}`],
  ];
  for (const [name, cookie] of cases) t.equal(sessions.fromRequest({ headers: { cookie } }), undefined, name);
  t.equal(cookieValue('a=1; b = 2 ', 'b'), '2');
  t.ok(sameOrigin({ headers: { origin: 'http://127.0.0.1:9743', host: '127.0.0.1:9743' } }, false));
  t.notOk(sameOrigin({ headers: { origin: 'http://127.0.0.1:9743', host: '127.0.0.1:9743' } }, true), 'http origin to a TLS server');
  t.notOk(sameOrigin({ headers: { origin: 'http://evil.example', host: '127.0.0.1:9743' } }, false), 'another site');
  t.notOk(sameOrigin({ headers: { origin: 'null', host: '127.0.0.1:9743' } }, false), 'an opaque origin');
  t.notOk(sameOrigin({ headers: { host: '127.0.0.1:9743' } }, false), 'no Origin at all');
});

t.test('property: no cookie header but the real one opens a session', async (t) => {
  const sessions = new Sessions({ ttlMs: 60_000, max: 10 });
  const s = sessions.create(who, 'tail-secret-0123456789');
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ maxLength: 60 }).map((v) => `${SESSION_COOKIE}=${v}`)), (cookie) => {
      const got = sessions.fromRequest({ headers: { cookie } });
      if (got && cookie.trim() !== `${SESSION_COOKIE}=${s.id}`) throw new Error(`opened by ${JSON.stringify(cookie)}`);
    }),
    { numRuns: 2000 },
  );
  t.pass('none did');
});
