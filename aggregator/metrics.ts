// The aggregator's /metrics: the counters every part of the server adds to, and the Prometheus text
// rendered from them and from the fleet. Label values come from known sets only, so no peer can
// create series.
import { KNOWN_CHECKS } from '../protocol/checks.js';
import { renderMetrics, type Metric } from '../protocol/metrics.js';
import type { Fleet } from './fleet.js';
import type { JournalHealth } from './journal.js';

/** Where a failure happened: the `where` label of nodewarden_aggregator_errors_total. */
export type Where = 'http' | 'upgrade' | 'agent' | 'tailer' | 'journal' | 'tokens' | 'kubernetes' | 'process';
const CODES = new Set(['NW_ERR_CONFIG', 'NW_ERR_USAGE', 'NW_ERR_TIMEOUT', 'NW_ERR_RUNTIME', 'NW_ERR_PROTOCOL', 'NW_ERR_LIMIT', 'NW_ERR_IO', 'NW_ERR_INTERNAL']);

export class AggregatorCounters {
  messages = 0;
  transitions = 0;
  dropped = 0;
  /** Unauthenticated connections closed to make room for newer ones (gate.ts). */
  evicted = 0;
  tokenReloads = 0;
  readonly rejected = new Map<string, number>();
  readonly errors = new Map<string, number>();

  /** A connection or message refused, by reason. */
  reject(reason: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  /** A failure, by where and code (an unknown code is counted as NW_ERR_INTERNAL). */
  error(where: Where, code: string): void {
    const key = `${where}\0${CODES.has(code) ? code : 'NW_ERR_INTERNAL'}`;
    this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
  }
}

export interface MetricsSources {
  fleet: Fleet;
  counters: AggregatorCounters;
  tailers: number;
  /** Bytes waiting in all tailers' send buffers. */
  tailerBufferedBytes: number;
  /** Open TCP connections by whether they have spoken yet (gate.ts). */
  connections?: { unauthenticated: number; established: number };
  /** With --agent-auth kubernetes: TokenReviews sent, and answers given without one. */
  tokenReviews?: { reviews: number; negativeHits: number; joined: number; refusedPerAddress: number; refusedAddressRate: number; refusedBusy: number };
  /** Absent without --journal: its series are left out. */
  journal?: JournalHealth;
}

export function renderAggregatorMetrics(src: MetricsSources): string {
  const { fleet, counters, journal } = src;
  // Only when run with --expose-gc (benchmarks): report the live heap, not garbage awaiting collection.
  (globalThis as { gc?: () => void }).gc?.();
  const nodes = fleet.connectedNodes();
  // Label values from known sets only: a check name an agent made up is counted as "other".
  const byCheck = new Map<string, number>();
  for (const c of fleet.countsByCheck()) {
    const key = `${KNOWN_CHECKS.has(c.check) ? c.check : 'other'}\0${c.severity}`;
    byCheck.set(key, (byCheck.get(key) ?? 0) + c.count);
  }
  const bytes = fleet.bytes();
  const metrics: Metric[] = [
    { name: 'nodewarden_aggregator_nodes', help: 'Nodes known, by whether their agent is connected', type: 'gauge', samples: [{ labels: { connected: 'true' }, value: nodes.connected }, { labels: { connected: 'false' }, value: nodes.total - nodes.connected }] },
    // By check and severity only: a node label would be one series per node and check (per-node detail is /api/findings).
    { name: 'nodewarden_aggregator_findings', help: 'Active findings in the cluster by check and severity', type: 'gauge', samples: [...byCheck].map(([k, value]) => { const [check, severity] = k.split('\0') as [string, string]; return { labels: { check, severity }, value }; }) },
    { name: 'nodewarden_aggregator_tailers', help: 'Connected tailers', type: 'gauge', samples: [{ labels: {}, value: src.tailers }] },
    { name: 'nodewarden_aggregator_tailer_buffered_bytes', help: 'Bytes waiting to be sent to tailers', type: 'gauge', samples: [{ labels: {}, value: src.tailerBufferedBytes }] },
    { name: 'nodewarden_aggregator_messages_total', help: 'Messages received from agents and tailers', type: 'counter', samples: [{ labels: {}, value: counters.messages }] },
    { name: 'nodewarden_aggregator_transitions_total', help: 'Finding transitions fanned out', type: 'counter', samples: [{ labels: {}, value: counters.transitions }] },
    { name: 'nodewarden_aggregator_rejected_total', help: 'Connections and messages rejected, by reason', type: 'counter', samples: [...counters.rejected].map(([reason, v]) => ({ labels: { reason }, value: v })) },
    { name: 'nodewarden_aggregator_errors_total', help: 'Requests, connections and writes that failed and were refused, by where and error code', type: 'counter', samples: [...counters.errors].map(([k, v]) => { const [where, code] = k.split('\0') as [string, string]; return { labels: { where, code }, value: v }; }) },
    { name: 'nodewarden_aggregator_connections_dropped_total', help: 'Connections dropped at accept because maxConnections were open', type: 'counter', samples: [{ labels: {}, value: counters.dropped }] },
    { name: 'nodewarden_aggregator_connections_evicted_total', help: 'Unauthenticated connections closed to admit newer ones (their pool or the connection cap was full)', type: 'counter', samples: [{ labels: {}, value: counters.evicted }] },
    ...(src.connections
      ? [{ name: 'nodewarden_aggregator_connections', help: 'Open TCP connections, by whether they have sent a request or an authenticated upgrade yet', type: 'gauge' as const, samples: [{ labels: { state: 'unauthenticated' }, value: src.connections.unauthenticated }, { labels: { state: 'established' }, value: src.connections.established }] }]
      : []),
    ...(src.tokenReviews
      ? [{ name: 'nodewarden_aggregator_token_reviews_total', help: 'Agent credentials checked with --agent-auth kubernetes, by outcome: sent as a TokenReview, refused from the negative cache, joined a review of the same token in flight, refused for too many reviews from one address (in flight or per second) or in all', type: 'counter' as const, samples: [{ labels: { outcome: 'reviewed' }, value: src.tokenReviews.reviews }, { labels: { outcome: 'cached-refusal' }, value: src.tokenReviews.negativeHits }, { labels: { outcome: 'joined' }, value: src.tokenReviews.joined }, { labels: { outcome: 'address-busy' }, value: src.tokenReviews.refusedPerAddress }, { labels: { outcome: 'address-rate' }, value: src.tokenReviews.refusedAddressRate }, { labels: { outcome: 'busy' }, value: src.tokenReviews.refusedBusy }] }]
      : []),
    { name: 'nodewarden_aggregator_token_reloads_total', help: 'Times a changed token directory was loaded', type: 'counter', samples: [{ labels: {}, value: counters.tokenReloads }] },
    { name: 'nodewarden_aggregator_active_bytes', help: 'Serialized bytes of all active findings held', type: 'gauge', samples: [{ labels: {}, value: bytes.active }] },
    { name: 'nodewarden_aggregator_history_bytes', help: 'Serialized bytes of the history held', type: 'gauge', samples: [{ labels: {}, value: bytes.history }] },
    ...(journal
      ? [
          { name: 'nodewarden_aggregator_journal_ok', help: '1 when the journal is being written, 0 while writes fail', type: 'gauge' as const, samples: [{ labels: {}, value: journal.ok ? 1 : 0 }] },
          { name: 'nodewarden_aggregator_journal_write_failures_total', help: 'Journal writes that failed', type: 'counter' as const, samples: [{ labels: {}, value: journal.writeFailures }] },
          { name: 'nodewarden_aggregator_journal_bytes', help: 'Size of the journal file', type: 'gauge' as const, samples: [{ labels: {}, value: journal.bytes }] },
          { name: 'nodewarden_aggregator_journal_catch_ups_total', help: 'Times the disk fell behind and the queued records were written by a compaction of the current state instead', type: 'counter' as const, samples: [{ labels: {}, value: journal.catchUps }] },
          { name: 'nodewarden_aggregator_journal_pending_bytes', help: 'Journal records waiting for the write in progress (a slow or hung disk makes this grow)', type: 'gauge' as const, samples: [{ labels: {}, value: journal.pendingBytes }] },
        ]
      : []),
    { name: 'nodewarden_aggregator_heap_used_bytes', help: 'V8 heap in use', type: 'gauge', samples: [{ labels: {}, value: process.memoryUsage().heapUsed }] },
    { name: 'nodewarden_aggregator_resident_memory_bytes', help: 'Resident memory of the aggregator', type: 'gauge', samples: [{ labels: {}, value: process.memoryUsage().rss }] },
    { name: 'nodewarden_aggregator_history_size', help: 'Transitions kept in history', type: 'gauge', samples: [{ labels: {}, value: fleet.historySize() }] },
  ];
  return renderMetrics(metrics);
}
