import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { evaluateSockstat, parsePageSizeFromAuxv, parseSockstat, parseTcpMem, sockstat, type SockstatData } from '../../collectors/sockstat.js';
import { contextFor, settingsFor } from '../helpers/context.js';

const FIXTURE = path.resolve('test/fixtures/host/debian12-vm');
const config = settingsFor(sockstat) as never;

t.test('parses the sockstat captured on this machine', async (t) => {
  const counters = parseSockstat(readFileSync(path.join(FIXTURE, 'proc/net/sockstat'), 'utf8'));
  t.same(Object.keys(counters), ['sockets', 'TCP', 'UDP', 'UDPLITE', 'RAW', 'FRAG']);
  t.same(counters['TCP'], { inuse: 1, orphan: 0, tw: 0, alloc: 4, mem: 25 });
  t.equal(counters['FRAG']?.['memory'], 0);
  const v6 = parseSockstat(readFileSync(path.join(FIXTURE, 'proc/net/sockstat6'), 'utf8'));
  t.ok(v6['TCP6'], 'sockstat6 has TCP6');
});

t.test('keeps unknown protocols and keys, skips garbage, tolerates a missing protocol line', async (t) => {
  const text = 'sockets: used 12\nTCP: inuse 3 orphan 7 tw 9 alloc 4 mem 2 newkey 42\nMPTCP: inuse 1\nbroken line\nUDP: inuse x mem 1\n';
  const c = parseSockstat(text);
  t.equal(c['TCP']?.['newkey'], 42, 'unknown key kept');
  t.same(c['MPTCP'], { inuse: 1 }, 'unknown protocol kept');
  t.same(c['UDP'], { mem: 1 }, 'non-numeric value skipped');
  t.notOk('RAW' in c);
  t.same(evaluateSockstat({ counters: { sockets: { used: 1 } }, limits: { maxOrphans: 10 }, pageSize: 4096 }, config), [], 'no TCP line: no finding, no crash');
});

t.test('tcp_mem needs three numbers', async (t) => {
  t.same(parseTcpMem('383868\t511824\t767736\n'), [383868, 511824, 767736]);
  t.equal(parseTcpMem('1 2'), undefined);
  t.equal(parseTcpMem(undefined), undefined);
});

t.test('page size comes from auxv: 4 KiB here, 64 KiB on arm64/ppc64 kernels built that way', async (t) => {
  t.equal(parsePageSizeFromAuxv(readFileSync(path.join(FIXTURE, 'proc/self/auxv'))), 4096);
  const auxv = Buffer.alloc(48);
  auxv.writeBigUInt64LE(33n, 0); // AT_SYSINFO_EHDR
  auxv.writeBigUInt64LE(0x7fffn, 8);
  auxv.writeBigUInt64LE(6n, 16); // AT_PAGESZ
  auxv.writeBigUInt64LE(65536n, 24);
  t.equal(parsePageSizeFromAuxv(auxv), 65536);
  const data: SockstatData = { counters: { TCP: { mem: 1000 } }, limits: { mem: [100, 500, 2000] }, pageSize: 65536 };
  const [f] = evaluateSockstat(data, config);
  t.equal(f?.check, 'sockstat.memory');
  t.equal(f?.evidence['mem_bytes'], 1000 * 65536, 'bytes use the 64 KiB page size');
  t.match(f?.message, /\(63 MiB\)/, "65,536,000 bytes is 62.5 MiB, shown rounded");
});

t.test('orphans, TIME_WAIT and memory against their limits', async (t) => {
  const limits = { maxOrphans: 1000, maxTwBuckets: 1000, mem: [100, 200, 300] as [number, number, number] };
  const at = (tcp: Record<string, number>) => evaluateSockstat({ counters: { TCP: tcp }, limits, pageSize: 4096 }, config);
  t.same(at({ orphan: 499, tw: 799, mem: 199 }), [], 'below every threshold');
  const warn = at({ orphan: 500, tw: 800, mem: 200 });
  t.same(warn.map((f) => [f.check, f.severity]), [['sockstat.orphans', 'warning'], ['sockstat.timewait', 'warning'], ['sockstat.memory', 'warning']]);
  t.match(warn[0]?.message, /no process owns/, 'explains what an orphan is');
  t.match(warn[1]?.message, /TIME_WAIT/);
  const crit = at({ orphan: 900, tw: 950, mem: 300 });
  t.same(crit.map((f) => f.severity), ['critical', 'critical', 'critical']);
  t.ok(crit.every((f) => f.remedy.length > 0 && f.subject === 'tcp'));
});

t.test('collect reads a captured tree, and a host without sockstat6 still works', async (t) => {
  const ctx = contextFor(sockstat, FIXTURE);
  const r = await sockstat.collect(ctx);
  t.equal(r.kind, 'ok');
  if (r.kind !== 'ok') return;
  t.ok(r.data.counters['TCP6'], 'sockstat6 merged');
  t.equal(r.data.limits.maxOrphans, Number(readFileSync(path.join(FIXTURE, 'proc/sys/net/ipv4/tcp_max_orphans'), 'utf8')));

  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-sockstat-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(path.join(FIXTURE, 'proc/net'), path.join(dir, 'proc/net'), { recursive: true });
  rmSync(path.join(dir, 'proc/net/sockstat6'));
  writeFileSync(path.join(dir, 'proc/net/sockstat'), 'sockets: used 1\nTCP: inuse 1 orphan 90 tw 0 alloc 1 mem 1\n');
  const r2 = await sockstat.collect(contextFor(sockstat, dir));
  t.equal(r2.kind, 'ok', 'no sockstat6 and no sysctls: still ok');
  if (r2.kind === 'ok') t.same(r2.observations, [], 'without tcp_max_orphans there is nothing to compare against');

  const empty = mkdtempSync(path.join(os.tmpdir(), 'nw-sockstat-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  const r3 = await sockstat.collect(contextFor(sockstat, empty));
  t.same(r3, { kind: 'no-data', reason: 'no /proc/net/sockstat on this host' });
});
