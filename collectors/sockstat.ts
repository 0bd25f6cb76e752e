// sockstat: the kernel's socket counters (/proc/net/sockstat, sockstat6) against its TCP limits.
// Counts are per network namespace: the agent must run with hostNetwork to see the node's.
import os from 'node:os';
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import type { Collector } from './types.js';

/** protocol (TCP, UDP, TCP6...) -> key (inuse, orphan, tw, alloc, mem...) -> value */
export type SockstatCounters = Record<string, Record<string, number>>;

export interface TcpLimits {
  maxOrphans?: number;
  maxTwBuckets?: number;
  /** tcp_mem in pages: [low, pressure, high]. */
  mem?: [number, number, number];
}

export interface SockstatData {
  counters: SockstatCounters;
  limits: TcpLimits;
  pageSize: number;
}

/**
 * Parses sockstat or sockstat6 text: every `PROTO: key value key value...` line. Unknown protocols and
 * keys are kept; tokens that are not numbers are skipped.
 */
export function parseSockstat(text: string): SockstatCounters {
  const out: SockstatCounters = {};
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const proto = line.slice(0, colon).trim();
    const tokens = line.slice(colon + 1).trim().split(/\s+/);
    const values: Record<string, number> = out[proto] ?? {};
    for (let i = 0; i + 1 < tokens.length; i += 2) {
      const value = Number(tokens[i + 1]);
      if (tokens[i] && Number.isFinite(value)) values[tokens[i]!] = value;
    }
    out[proto] = values;
  }
  return out;
}

/** One integer sysctl file; undefined when absent or malformed. */
export function parseSysctlInt(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return Number.isInteger(n) ? n : undefined;
}

export function parseTcpMem(text: string | undefined): [number, number, number] | undefined {
  if (text === undefined) return undefined;
  const nums = text.trim().split(/\s+/).map(Number);
  if (nums.length !== 3 || nums.some((n) => !Number.isFinite(n))) return undefined;
  return nums as [number, number, number];
}

const AT_PAGESZ = 6;

/** The page size from an auxv vector (64-bit entries of type and value); undefined when not found. */
export function parsePageSizeFromAuxv(buf: Uint8Array): number | undefined {
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const le = os.endianness() === 'LE';
  for (let off = 0; off + 16 <= view.length; off += 16) {
    const type = le ? view.readBigUInt64LE(off) : view.readBigUInt64BE(off);
    if (type === 0n) break;
    if (type === BigInt(AT_PAGESZ)) return Number(le ? view.readBigUInt64LE(off + 8) : view.readBigUInt64BE(off + 8));
  }
  return undefined;
}

const band = (doc: string, warning: number, critical: number) =>
  s.object({
    warning: s.percent({ default: warning, doc: `${doc}: warning at this percentage` }),
    critical: s.percent({ default: critical, doc: `${doc}: critical at this percentage` }),
  });

export const sockstatConfigSpec = s.object({
  orphans: band('orphaned TCP sockets against net.ipv4.tcp_max_orphans', 50, 90),
  timewait: band('TIME_WAIT sockets against net.ipv4.tcp_max_tw_buckets', 80, 95),
});
export type SockstatConfig = Infer<typeof sockstatConfigSpec>;

const fmt = (n: number): string => n.toLocaleString('en-US');

/** Turns counters and limits into findings. Pure. */
export function evaluateSockstat(data: SockstatData, config: SockstatConfig): Observation[] {
  const out: Observation[] = [];
  const tcp = data.counters['TCP'] ?? {};
  const { maxOrphans, maxTwBuckets, mem } = data.limits;

  /** A counter against its sysctl limit, in percentage bands. */
  const againstLimit = (
    count: number | undefined,
    limit: number | undefined,
    bands: { warning: number; critical: number },
    describe: (count: number, limit: number, pct: number) => Omit<Observation, 'severity' | 'subject'>,
  ): void => {
    if (count === undefined || limit === undefined || limit <= 0) return;
    const pct = (count / limit) * 100;
    const severity = pct >= bands.critical ? 'critical' : pct >= bands.warning ? 'warning' : undefined;
    if (severity) out.push({ ...describe(count, limit, pct), severity, subject: 'tcp' });
  };

  againstLimit(tcp['orphan'], maxOrphans, config.orphans, (orphan, max, pct) => ({
    check: 'sockstat.orphans',
    message:
      `${fmt(orphan)} orphaned TCP sockets, ${pct.toFixed(0)}% of net.ipv4.tcp_max_orphans (${fmt(max)}). ` +
      'An orphan is a socket no process owns any more, still closing; past the limit (or a quarter of it under memory pressure) the kernel resets connections and logs "too many orphaned sockets".',
    evidence: { orphan, tcp_max_orphans: max, percent: Math.round(pct), tcp },
    remedy: 'cat /proc/net/sockstat; ss -tan state fin-wait-1 state fin-wait-2 state last-ack | head  # then find the peers that stopped reading, or raise net.ipv4.tcp_max_orphans',
  }));

  againstLimit(tcp['tw'], maxTwBuckets, config.timewait, (tw, max, pct) => ({
    check: 'sockstat.timewait',
    message:
      `${fmt(tw)} TCP sockets in TIME_WAIT, ${pct.toFixed(0)}% of net.ipv4.tcp_max_tw_buckets (${fmt(max)}). ` +
      'TIME_WAIT sockets are connections this node closed first, kept to catch late packets; at the limit the kernel drops them early and logs "time wait bucket table overflow".',
    evidence: { tw, tcp_max_tw_buckets: max, percent: Math.round(pct) },
    remedy: "ss -tan state time-wait | awk '{print $4}' | sort | uniq -c | sort -rn | head  # who closes so many short connections; reuse connections (keep-alive) or raise net.ipv4.tcp_max_tw_buckets",
  }));

  const memPages = tcp['mem'];
  if (memPages !== undefined && mem !== undefined) {
    const [, pressure, high] = mem;
    const severity = memPages >= high ? 'critical' : memPages >= pressure ? 'warning' : undefined;
    if (severity) {
      const bytes = memPages * data.pageSize;
      out.push({
        check: 'sockstat.memory',
        severity,
        subject: 'tcp',
        message:
          `TCP buffers use ${fmt(memPages)} pages (${fmt(Math.round(bytes / 1048576))} MiB), ` +
          (severity === 'critical'
            ? `at or above tcp_mem's high mark (${fmt(high)} pages): the kernel refuses new socket memory and drops packets.`
            : `above tcp_mem's pressure mark (${fmt(pressure)} pages): the kernel is shrinking socket buffers.`),
        evidence: { mem_pages: memPages, mem_bytes: bytes, tcp_mem: [...mem], page_size: data.pageSize },
        remedy: "ss -tmp | sort -t: -k2 | tail  # which sockets hold the buffers (large Recv-Q: a reader that stopped); raise net.ipv4.tcp_mem only if the memory is there",
      });
    }
  }
  return out;
}

export const sockstat: Collector<SockstatConfig, SockstatData> = {
  name: 'sockstat',
  description: 'Kernel socket counters: orphaned, TIME_WAIT and TCP memory against their limits',
  checks: ['sockstat.orphans', 'sockstat.timewait', 'sockstat.memory'],
  conditions: { 'sockstat.orphans': 'NodewardenSocketPressure', 'sockstat.timewait': 'NodewardenSocketPressure', 'sockstat.memory': 'NodewardenSocketPressure' },
  defaultIntervalMs: 30_000,
  defaultTimeoutMs: 5_000,
  configSpec: sockstatConfigSpec,
  async collect(ctx) {
    const { host } = ctx;
    const v4 = await host.readText(host.procPath('net', 'sockstat'));
    if (v4 === undefined) return { kind: 'no-data', reason: 'no /proc/net/sockstat on this host' };
    const v6 = await host.readText(host.procPath('net', 'sockstat6'));
    const counters = { ...parseSockstat(v4), ...(v6 === undefined ? {} : parseSockstat(v6)) };
    const [orphans, tw, mem, auxv] = await Promise.all([
      host.readText(host.procPath('sys', 'net', 'ipv4', 'tcp_max_orphans')),
      host.readText(host.procPath('sys', 'net', 'ipv4', 'tcp_max_tw_buckets')),
      host.readText(host.procPath('sys', 'net', 'ipv4', 'tcp_mem')),
      host.readBytes(host.procPath('self', 'auxv')),
    ]);
    const limits: TcpLimits = {};
    const maxOrphans = parseSysctlInt(orphans);
    const maxTw = parseSysctlInt(tw);
    const tcpMem = parseTcpMem(mem);
    if (maxOrphans !== undefined) limits.maxOrphans = maxOrphans;
    if (maxTw !== undefined) limits.maxTwBuckets = maxTw;
    if (tcpMem !== undefined) limits.mem = tcpMem;
    const data: SockstatData = { counters, limits, pageSize: (auxv && parsePageSizeFromAuxv(auxv)) || 4096 };
    return { kind: 'ok', observations: evaluateSockstat(data, ctx.config), data };
  },
};
