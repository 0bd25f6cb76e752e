// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import fc from 'fast-check';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { backoffMs, decodeDockerEvent, DockerEvents, followDockerEvents, MAX_EVENT_LINE, REMOVING_RECHECK_FACTOR, splitEventLines, type ContainerEvent } from '../../../agent/runtime/events.js';
import { eventually } from '../../helpers/processes.js';
import { followForTest } from '../../helpers/runtime.js';

const ID = 'ab'.repeat(32);
const die = JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID, Attributes: { name: 'web', exitCode: '137' } }, time: 1700000000, timeNano: 1 });

t.test('docker events: what a real dockerd sends decodes', async (t) => {
  t.same(decodeDockerEvent(die), { runtime: 'docker', action: 'die', id: ID, time: 1700000000, name: 'web' });
  t.equal(decodeDockerEvent(JSON.stringify({ Type: 'container', Action: 'exec_start: sh -c true', Actor: { ID } }))?.action, 'exec_start', 'the verb before the colon');
  t.equal(decodeDockerEvent(JSON.stringify({ status: 'destroy', id: ID, Type: 'container' }))?.action, 'destroy', 'the old top-level fields');
});

t.test('docker events: hostile and odd input is dropped, never thrown', async (t) => {
  const hostile = [
    '', 'null', '[]', '42', '"die"', '{', '{"Type":"container"}',
    JSON.stringify({ Type: 'image', Action: 'delete', Actor: { ID } }),
    JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: '../../etc/passwd' } }),
    JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: 'x'.repeat(64) } }),
    JSON.stringify({ Type: 'container', Action: 'die', Actor: null }),
    JSON.stringify({ Type: 'container', Action: 7, Actor: { ID } }),
    JSON.stringify({ Type: 'container', Action: 'a'.repeat(300), Actor: { ID } }),
    JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: [ID] } }),
    '{"__proto__":{"Type":"container"},"Action":"die","Actor":{"ID":"' + ID + '"}}',
  ];
  for (const h of hostile) t.equal(decodeDockerEvent(h), undefined, `dropped: ${h.slice(0, 60)}`);
  const weirdTime = decodeDockerEvent(JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID, Attributes: { name: 5 } }, time: 'soon' }));
  t.same(weirdTime, { runtime: 'docker', action: 'die', id: ID, time: 0 }, 'wrong-typed optional fields are left out');
});

t.test('docker events: lines split across chunks, and a line too long to be an event', async (t) => {
  const a = splitEventLines('', die.slice(0, 20));
  t.same(a.events, []);
  const b = splitEventLines(a.rest, `${die.slice(20)}\n${die}\n`);
  t.equal(b.events.length, 2);
  t.equal(b.rest, '');
  t.ok(splitEventLines('', 'x'.repeat(MAX_EVENT_LINE + 1)).overflow, 'an endless line drops the stream');
  t.same(splitEventLines('', `${'x'.repeat(MAX_EVENT_LINE + 1)}\n${die}\n`).events.length, 1, 'an overlong complete line is skipped');
});

t.test('docker events: fuzzed input never throws and yields only well-formed events', async () => {
  const valid = fc.record({ Type: fc.constant('container'), Action: fc.constantFrom('die', 'start', 'destroy', 'oom'), Actor: fc.record({ ID: fc.hexaString({ minLength: 64, maxLength: 64 }).map((s) => s.toLowerCase()) }) }).map((o) => JSON.stringify(o));
  const line = fc.oneof(fc.string(), fc.json(), valid, fc.jsonValue().map((v) => JSON.stringify({ Type: 'container', Action: v, Actor: { ID: v } })));
  fc.assert(
    fc.property(fc.array(line, { maxLength: 20 }), fc.array(fc.nat({ max: 400 }), { maxLength: 6 }), (lines, cuts) => {
      const text = `${lines.join('\n')}\n`;
      // Cut the stream at arbitrary points, as the socket might.
      const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((x, y) => x - y);
      let carry = '';
      let prev = 0;
      const events: ContainerEvent[] = [];
      for (const p of [...points, text.length]) {
        const r = splitEventLines(carry, text.slice(prev, p));
        carry = r.rest;
        events.push(...r.events);
        prev = p;
      }
      const whole = splitEventLines('', text).events;
      if (JSON.stringify(events) !== JSON.stringify(whole)) throw new Error('chunking changed the result');
      for (const e of events) if (!/^[0-9a-f]{12,64}$/.test(e.id) || typeof e.action !== 'string' || e.action.length === 0) throw new Error(`bad event ${JSON.stringify(e)}`);
    }),
    { numRuns: 300 },
  );
});

t.test('backoff is full-jitter exponential, capped at 30 s', async (t) => {
  t.equal(backoffMs(0, () => 1), 500);
  t.equal(backoffMs(3, () => 1), 4000);
  t.equal(backoffMs(40, () => 1), 30_000);
  t.equal(backoffMs(5, () => 0), 0);
});

t.test('a stream that ends is made again, and the gap triggers a full re-read; a container stuck in removal triggers its collectors', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-events-'));
  const sock = path.join(dir, 'docker.sock');
  let connections = 0;
  const server = http.createServer((req, res) => {
    connections += 1;
    t.match(req.url, /^\/events\?filters=/);
    if (connections === 1) {
      const filters = JSON.parse(decodeURIComponent(String(req.url).replace(/^\/events\?filters=/, ''))) as { type: string[]; event: string[] };
      t.same([filters.type, filters.event.includes('die'), filters.event.includes('destroy'), filters.event.includes('create'), filters.event.includes('exec_start')], [['container'], true, true, false, false], 'only starts and endings are asked for');
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    // First connection: one event, then the daemon "restarts" (the stream ends).
    if (connections === 1) res.end(`${die}\n`);
    else res.write(`${JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID } })}\n`);
  });
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const events = new DockerEvents(sock, 2000);
  const { seen, triggered, invalidated } = followForTest(t, events, async (id) => (id === ID ? { status: 'dead', dead: true, removing: false } : undefined), 10);
  events.start();
  t.ok(await eventually(() => seen.some((e) => e.action === 'start')), 'reconnected after the stream ended');
  t.ok(await eventually(() => triggered.some((n) => n.includes('drift'))), 'the gap made every runtime collector run again');
  // Its own wait: the dead container's re-check is a timer and a status call of its own, not ordered with the gap's.
  t.ok(await eventually(() => triggered.some((n) => n.join() === 'immutable,mounts')), 'the dead container made the removal collectors run at once');
  t.ok(await eventually(() => invalidated() >= 2), 'events drop the cached runtime view');
});

t.test('a container still being removed at its re-check is looked at once more before its storage and mounts are checked', async (t) => {
  const events = new EventEmitter();
  const states = new Map<string, ({ status: string; dead: boolean; removing: boolean } | undefined)[]>([
    ['a'.repeat(64), [{ status: 'removing', dead: false, removing: true }, undefined]], // a slow --rm: gone at the second look
    ['b'.repeat(64), [{ status: 'removing', dead: false, removing: true }, { status: 'removing', dead: false, removing: true }]], // stuck
    ['c'.repeat(64), [{ status: 'dead', dead: true, removing: false }]], // a failed removal: at once
  ]);
  const asked: { id: string; at: number }[] = [];
  const triggered: { at: number }[] = [];
  const t0 = Date.now();
  const unfollow = followDockerEvents(events, {
    invalidate: () => undefined,
    containerStatus: async (id) => {
      asked.push({ id, at: Date.now() - t0 });
      return states.get(id)!.shift();
    },
    trigger: () => void triggered.push({ at: Date.now() - t0 }),
    log: { debug() {}, warn() {} },
  }, 20);
  t.teardown(unfollow);
  for (const ch of ['a', 'b']) events.emit('event', { runtime: 'docker', action: 'die', id: ch.repeat(64), time: 0 } satisfies ContainerEvent);
  t.ok(await eventually(() => asked.length === 4), 'each removing container is asked twice');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(triggered.length, 1, 'only the one still being removed at the second look triggers the removal collectors');
  t.ok(asked.filter((a) => a.id === 'b'.repeat(64))[1]!.at >= 20 * (1 + REMOVING_RECHECK_FACTOR) - 5, 'the second look waits REMOVING_RECHECK_FACTOR re-check delays');
  events.emit('event', { runtime: 'docker', action: 'die', id: 'c'.repeat(64), time: 0 } satisfies ContainerEvent);
  t.ok(await eventually(() => triggered.length === 2), 'a dead container triggers at its first re-check');
  t.equal(asked.filter((a) => a.id === 'c'.repeat(64)).length, 1);
});
