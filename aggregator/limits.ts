// The aggregator's bounds against hostile or broken peers: their defaults (docs/reference.md, "Limits"), the
// per-connection message rate (a token bucket) and the nodes one shared agent token may speak for.
// Pure bookkeeping: the connection and protocol code decide what a refusal looks like.

export interface AggregatorLimits {
  /** TCP connections open at once (agents, tailers, HTTP); more are dropped at accept. */
  maxConnections: number;
  /**
   * Connections that have not yet sent a whole request head or an authenticated upgrade (gate.ts):
   * past it the oldest of them is evicted. 0 means half of maxConnections, at most 1,024.
   */
  maxUnauthenticated: number;
  /** The share of that pool one remote address may hold. 0 means half of maxUnauthenticated. */
  maxUnauthenticatedPerAddress: number;
  /** A GET /api/findings reader that takes no bytes for this long is dropped. */
  readerStallMs: number;
  /** From accept to a complete HTTP request or upgrade (an absolute deadline), and from upgrade to hello or subscribe. */
  handshakeTimeoutMs: number;
  /** An HTTP keep-alive connection idle this long is closed (WebSockets: two missed heartbeats). */
  idleTimeoutMs: number;
  maxFindingsPerNode: number;
  /** Distinct nodes one shared (not node-bound) agent token may speak for. */
  maxNodesPerToken: number;
  /** Serialized bytes of all active findings; a snapshot or delta that would pass it is refused. */
  maxActiveBytes: number;
  /** Serialized bytes of history (besides its count, --history). */
  maxHistoryBytes: number;
  /** The journal file's ceiling. */
  maxJournalBytes: number;
  /** A journal write not done in this long counts as hung: the journal fails, the aggregator serves on. */
  journalWriteTimeoutMs: number;
  /** The largest history or active chunk sent to a tailer (its own frame limit is 16 MiB). */
  chunkBytes: number;
  /** Bytes waiting for one tailer before it is dropped as too slow. */
  maxTailerBufferBytes: number;
}

export const DEFAULT_LIMITS: AggregatorLimits = {
  maxConnections: 10_000,
  maxUnauthenticated: 0,
  maxUnauthenticatedPerAddress: 0,
  readerStallMs: 10_000,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 5_000,
  maxFindingsPerNode: 2_000,
  maxNodesPerToken: 5_000,
  maxActiveBytes: 48 * 1024 * 1024,
  maxHistoryBytes: 24 * 1024 * 1024,
  maxJournalBytes: 48 * 1024 * 1024,
  journalWriteTimeoutMs: 10_000,
  chunkBytes: 1024 * 1024,
  maxTailerBufferBytes: 16 * 1024 * 1024,
};

/** The limits with the derived ones (0 = derived) filled in. */
export function resolveLimits(over: Partial<AggregatorLimits> = {}): AggregatorLimits {
  const l = { ...DEFAULT_LIMITS, ...over };
  // At most 1,024: 10,000 sockets in a TLS handshake took the aggregator's RSS past its 320 MiB limit
  // (OpenSSL's per-connection state, freed to malloc but not to the system).
  if (!l.maxUnauthenticated) l.maxUnauthenticated = Math.max(1, Math.min(1024, Math.floor(l.maxConnections / 2)));
  if (!l.maxUnauthenticatedPerAddress) l.maxUnauthenticatedPerAddress = Math.max(1, Math.floor(l.maxUnauthenticated / 2));
  return l;
}

/** Sustained messages per second per connection, and the burst above it. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

/** One connection's token bucket: it starts full (a fresh agent's snapshot is a burst). */
export class MessageRate {
  private tokens: number;
  private lastRefill: number;

  constructor(
    private readonly rate: RateLimit,
    now = Date.now(),
  ) {
    this.tokens = rate.burst;
    this.lastRefill = now;
  }

  /** Takes one message; false when the connection floods. */
  admit(now = Date.now()): boolean {
    this.tokens = Math.min(this.rate.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.rate.perSecond);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** The nodes each shared agent token has spoken for, at most `max` per token. */
export class NodesPerToken {
  private readonly nodes = new Map<string, Set<string>>();

  constructor(private readonly max: number) {}

  /** Lets `token` speak for `node`; undefined when allowed, else how many nodes it already has. */
  claim(token: string, node: string, opts: { force?: boolean } = {}): number | undefined {
    let nodes = this.nodes.get(token);
    if (!nodes) this.nodes.set(token, (nodes = new Set()));
    if (nodes.has(node)) return undefined;
    if (nodes.size >= this.max && !opts.force) return nodes.size;
    nodes.add(node);
    return undefined;
  }

  has(token: string, node: string): boolean {
    return this.nodes.get(token)?.has(node) ?? false;
  }

  *entries(): Iterable<{ token: string; node: string }> {
    for (const [token, nodes] of this.nodes) for (const node of nodes) yield { token, node };
  }

  /** A forgotten node no longer counts against any token. */
  release(node: string): void {
    for (const set of this.nodes.values()) set.delete(node);
  }
}
