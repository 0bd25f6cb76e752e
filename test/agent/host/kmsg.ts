// @live: the real /dev/kmsg (root)
import t from 'tap';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { KmsgReader, joinContinuations, parseCursor, parseKmsgRecord } from '../../../agent/host/kmsg.js';
import { createHostAccess } from '../../../agent/host/access.js';
import { exec } from '../../../agent/host/exec.js';
import { requireLive } from '../../helpers/live.js';

t.test('parses a record: facility, level, sequence, timestamp, dictionary, escapes', async (t) => {
  const r = parseKmsgRecord('3,4711,4700352684,-,caller=T28830;Memory cgroup out of memory: Killed process 28830 (sh)\n SUBSYSTEM=mem\n', 1_000_000);
  t.same(r, { seq: 4711, facility: 0, level: 3, usec: 4700352684, wallMs: Math.round(1_000_000 + 4700352684 / 1000), message: 'Memory cgroup out of memory: Killed process 28830 (sh)', dict: { SUBSYSTEM: 'mem' } });
  const user = parseKmsgRecord('10,12,5,-;EXT4-fs error (device sda): spoof', 0);
  t.equal(user?.facility, 1, 'a userspace write (<2> prefix) is LOG_USER, never 0');
  t.equal(user?.level, 2);
  t.equal(parseKmsgRecord('6,1,1,-;a\\x0ab', 0)?.message, 'a\nb', '\\xNN unescaped');
  t.equal(parseKmsgRecord('garbage', 0), undefined);
  t.equal(parseKmsgRecord('x,1,1,-;m', 0), undefined);
  t.equal(parseKmsgRecord('6,-1,1,-;m', 0), undefined);
  fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => (parseKmsgRecord(s, 0), true)));
});

t.test('old kernels continuation fragments are joined', async (t) => {
  const recs = ['6,1,1,c;Killed process 9 ', '6,2,1,+;(sh)', '6,3,2,-;next'].map((l) => parseKmsgRecord(l, 0)!);
  const out = joinContinuations(recs);
  t.equal(out.length, 2);
  t.equal(out[0]?.message, 'Killed process 9 (sh)');
  t.notOk('cont' in out[0]!);
});

t.test('a cursor file that is garbage, hostile or of the wrong shape is ignored', async (t) => {
  t.equal(parseCursor('{"bootId":"x","seq":5}')?.seq, 5);
  for (const bad of ['', 'null', '[]', '{"bootId":1,"seq":2}', '{"bootId":"x","seq":-1}', '{"bootId":"x","seq":1.5}', `{"bootId":"${'x'.repeat(100)}","seq":1}`]) t.equal(parseCursor(bad), undefined, bad);
});

t.test('a missing device is no data; a device that is not kmsg never kills the reader', async (t) => {
  const host = createHostAccess({ root: '/', exec });
  const absent = new KmsgReader({ host, device: '/nonexistent/kmsg' });
  t.equal((await absent.read()).status, 'absent');
  t.equal((await absent.read()).status, 'absent', 'asked again, still answers');
});

t.test('the real /dev/kmsg: reads the ring without blocking, resumes from its cursor, counts nothing twice', async (t) => {
  if (!requireLive(t, { root: true, paths: ['/dev/kmsg'] })) return;
  const host = createHostAccess({ root: '/', exec });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-kmsg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cursorFile = path.join(dir, 'state', 'cursor.json');
  const first = new KmsgReader({ host, cursorFile });
  const all = await first.read();
  t.equal(all.status, 'ok');
  t.ok(all.records.length > 0, `the ring holds records (${all.records.length})`);
  t.ok(all.bootId && /^[0-9a-f-]{36}$/.test(all.bootId), 'boot id read under the host root');
  const again = await first.read();
  t.equal(again.records.length <= 5, true, 'a second read gives only what is new');
  t.ok(existsSync(cursorFile), 'the cursor is saved');
  const saved = parseCursor(readFileSync(cursorFile, 'utf8'));
  t.equal(saved?.bootId, all.bootId);
  first.stop();

  // Written while "the agent was down": the restarted reader gets it, and nothing from before.
  const marker = `nodewarden-kmsg-test-${process.pid}-${Date.now()}`;
  appendFileSync('/dev/kmsg', `<6>${marker}\n`);
  const restarted = new KmsgReader({ host, cursorFile });
  const resumed = await restarted.read();
  t.ok(resumed.records.some((r) => r.message === marker), 'what was logged while down is read');
  t.ok(resumed.records.every((r) => r.seq > saved!.seq), 'nothing read before the restart is read again');
  const mine = resumed.records.find((r) => r.message === marker)!;
  t.equal(mine.facility, 1, 'a userspace write has the user facility');
  t.ok(Math.abs(mine.wallMs - Date.now()) < 60_000, 'its timestamp is mapped to the wall clock');
  restarted.stop();

  // Another boot's cursor is not trusted.
  appendFileSync(cursorFile, '');
  const other = new KmsgReader({ host, cursorFile: path.join(dir, 'nope.json') });
  t.ok((await other.read()).records.length >= all.records.length - 10, 'no cursor: the whole ring');
  other.stop();
});

t.test('the reader health shows in /healthz, its counts in /metrics', async (t) => {
  if (!requireLive(t, { root: true, paths: ['/dev/kmsg'] })) return;
  const { health } = await import('../../../agent/exporters/http.js');
  const reader = new KmsgReader({ host: createHostAccess({ root: '/', exec }) });
  t.teardown(() => reader.stop());
  await reader.read();
  const h = health({ runner: { active: () => [], statuses: () => [] }, node: 'n', kmsg: reader });
  const body = h.body['kmsg'] as { ok: boolean; totals: { records: number; lost: number } };
  t.equal(body.ok, true);
  t.ok(body.totals.records > 0, 'records counted');
  t.equal(typeof body.totals.lost, 'number', 'losses counted (0 or more)');
  const broken = new KmsgReader({ host: createHostAccess({ root: '/', exec }), device: '/proc/self/nonexistent-dir/x' });
  await broken.read();
  t.equal(broken.health().totals['errors'], 1, 'an open that fails is counted, and the next read tries again');
});
