// Bench: kernel-log floods. (1) The kernel collector fed 100,000 records a second for 10 s from a test
// source (real lines from test/fixtures/kernel/kmsg-lines.txt, OOM kills of 200 different containers,
// hung tasks, I/O errors), each second's records handed over as one batch, as the reader hands them:
// records/s, CPU per 10,000 records, peak RSS growth, how many findings they coalesce into, and that
// every record is either an event or counted. (2) The reader's own throughput on the real /dev/kmsg:
// userspace lines written as fast as the kernel takes them (printk_devkmsg set to "on" for the run and
// restored; userspace records are never findings), read back by KmsgReader.
import { readFileSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { kernel, type KernelData } from '../collectors/kernel.js';
import { KmsgReader } from '../agent/host/kmsg.js';
import { createHostAccess } from '../agent/host/access.js';
import { exec } from '../agent/host/exec.js';
import type { CollectorContext, KernelLogBatch, KmsgRecord } from '../collectors/types.js';
import { configSpec } from '../agent/config.js';
import { COLLECTORS } from '../collectors/index.js';
import { ROOT } from './util.js';
import path from 'node:path';

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

function fixtureMessages(): string[] {
  const lines = readFileSync(path.join(ROOT, 'test/fixtures/kernel/kmsg-lines.txt'), 'utf8').split('\n');
  return lines.filter((l) => l && !l.startsWith('#')).map((l) => l.split('|').slice(2).join('|'));
}

export async function benchKmsg(opts: { seconds?: number; perSecond?: number } = {}): Promise<string> {
  const seconds = opts.seconds ?? 10;
  const perSecond = opts.perSecond ?? 100_000;
  const base = fixtureMessages();
  const hex = (n: number) => n.toString(16).padStart(64, '0');
  // 200 containers' OOM kills, in the real 6.18 format, plus every fixture line.
  const ooms = Array.from({ length: 200 }, (_, i) => `oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=${hex(i)},mems_allowed=0,oom_memcg=/docker/${hex(i)},task_memcg=/docker/${hex(i)},task=sh,pid=${1000 + i},uid=0`);
  const messages = [...base, ...ooms];
  let seq = 0;
  const batchOf = (n: number, now: number): KernelLogBatch => {
    const records: KmsgRecord[] = new Array(n);
    for (let i = 0; i < n; i++) {
      seq += 1;
      records[i] = { seq, facility: 0, level: 3, usec: seq, wallMs: now, message: messages[seq % messages.length]! };
    }
    return { status: 'ok', records, lost: 0, overflows: 0 };
  };
  const config = configSpec(COLLECTORS).check({}, '', []) as { collectors: Record<string, unknown> };
  const settings = config.collectors['kernel'] as never;
  const host = createHostAccess({ root: '/', exec });
  let previous: KernelData | undefined;
  let pending: KernelLogBatch | undefined;
  const log = { debug() {}, info() {}, warn() {}, error() {} };
  const ctx = (): CollectorContext<never, KernelData> => ({
    node: 'bench',
    host,
    exec,
    runtime: { settleMs: 2000, snapshot: async () => ({ runtimes: [], containers: [], takenAt: Date.now() }), ping: async () => [] },
    attrs: undefined,
    config: settings,
    now: Date.now,
    log: log as never,
    signal: new AbortController().signal,
    previous,
    kmsg: { read: async () => pending!, health: () => ({ ok: true, totals: {} }) },
  });
  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  let findings = 0;
  let events = 0;
  const cpu0 = cpuMs();
  const t0 = Date.now();
  for (let s = 0; s < seconds; s++) {
    pending = batchOf(perSecond, Date.now());
    const r = await kernel.collect(ctx() as never);
    if (r.kind !== 'ok') throw new Error(`kernel collector: ${r.kind}`);
    previous = r.data as KernelData;
    findings = r.observations.length;
    events = previous.groups.reduce((a, g) => a + g.count, 0);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    pending = undefined;
  }
  const wall = Date.now() - t0;
  const cpu = cpuMs() - cpu0;
  const total = seconds * perSecond;
  const lines = [
    `collector: ${total.toLocaleString('en-US')} records in ${seconds} batches (${perSecond.toLocaleString('en-US')} a second of kernel log) took ${(wall / 1000).toFixed(2)} s wall, ${(cpu / 1000).toFixed(2)} s CPU: ${Math.round(total / (wall / 1000)).toLocaleString('en-US')} records/s, ${((cpu / total) * 10_000).toFixed(1)} ms CPU per 10,000 records`,
    `  coalesced into ${findings} findings (${previous?.groups.length ?? 0} groups, at most maxGroups); ${events.toLocaleString('en-US')} events counted in them; dropped groups counted: ${previous?.dropped ?? 0}; RSS +${Math.round((peakRss - rssBefore) / 1048576)} MiB at peak`,
  ];

  // (2) The reader on the real /dev/kmsg.
  const sysctl = '/proc/sys/kernel/printk_devkmsg';
  let before: string | undefined;
  try {
    before = readFileSync(sysctl, 'utf8').trim();
    writeFileSync(sysctl, 'on\n');
    const reader = new KmsgReader({ host });
    await reader.read(); // drain what is there
    const fd = openSync('/dev/kmsg', 'w');
    const n = 20_000;
    const w0 = Date.now();
    for (let i = 0; i < n; i++) writeSync(fd, `<14>nodewarden-bench: line ${i}\n`);
    closeSync(fd);
    const wrote = Date.now() - w0;
    const c0 = cpuMs();
    const r0 = Date.now();
    let got = 0;
    let lost = 0;
    for (let i = 0; i < 100; i++) {
      const b = await reader.read();
      got += b.records.filter((r) => r.message.startsWith('nodewarden-bench:')).length;
      lost += b.lost;
      if (!b.more) break;
    }
    const readMs = Date.now() - r0;
    const readCpu = cpuMs() - c0;
    lines.push(`reader: ${n.toLocaleString('en-US')} userspace lines written to /dev/kmsg in ${wrote} ms; read back ${got.toLocaleString('en-US')} (lost to the ring and counted: ${lost}) in ${readMs} ms: ${Math.round(got / Math.max(0.001, readMs / 1000)).toLocaleString('en-US')} records/s, ${((readCpu / Math.max(1, got)) * 10_000).toFixed(1)} ms CPU per 10,000 records; none of them is a finding (facility 1)`);
  } catch (err) {
    lines.push(`reader: not measured (${err instanceof Error ? err.message : String(err)}; needs root and /dev/kmsg)`);
  } finally {
    if (before !== undefined) writeFileSync(sysctl, `${before}\n`);
  }
  return lines.join('\n');
}
