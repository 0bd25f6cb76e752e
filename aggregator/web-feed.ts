// The web view's live feed: one WebSocket per browser tab (/api/web, authenticated by the session
// cookie). A tab never receives every finding: it gets the fleet as one small tuple per node, the
// counts by check and severity, and the first `limit` findings that match its own filter (most severe
// first) with the total. Then, every flushMs, one coalesced delta: the nodes whose cell changed, the
// counts, the total, and the transitions that reach its rows (a row it shows, or a match that sorts
// before its last row), keyed by finding id (the latest wins). The queue
// is bounded: a tab whose socket is backed up keeps coalescing, and one whose queue overflows gets a
// fresh snapshot once it reads again, never an ever-growing backlog.
import type { Finding } from '../protocol/finding.js';
import { SEVERITIES, severityRank } from '../protocol/finding.js';
import { CLOSE, WireError } from '../protocol/wire.js';
import type { Conn, Connections } from './connections.js';
import type { Fleet, NodeSummary, TimedTransition } from './fleet.js';

/** What a tab filters the findings table by; every key optional. */
export interface WebFilter {
  node?: string;
  /** A check or a check family (`disk` matches `disk.usage`). */
  check?: string;
  /** At least this severity. */
  severity?: (typeof SEVERITIES)[number];
  /** `namespace/pod` or part of it, matched against the workload and the subject. */
  pod?: string;
  /** Case-insensitive text in the node, check, subject or message. */
  text?: string;
}

export type WebRequest = { type: 'view'; filter: WebFilter; limit: number } | { type: 'refresh' };

export const DEFAULT_WEB_LIMIT = 200;
export const MAX_WEB_LIMIT = 2_000;
const MAX_REQUEST_BYTES = 4096;
const FILTER_KEYS = ['node', 'check', 'severity', 'pod', 'text'] as const;

/** Decodes one message from a tab; anything else is a WireError (4000) that closes it. */
export function decodeWebRequest(raw: Buffer | string): WebRequest {
  const bad = (why: string) => new WireError(CLOSE.MALFORMED, `invalid web request: ${why}`);
  if (raw.length > MAX_REQUEST_BYTES) throw bad('over 4 KiB');
  let msg: unknown;
  try {
    msg = JSON.parse(raw.toString());
  } catch {
    throw bad('not JSON');
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw bad('not an object');
  const m = msg as Record<string, unknown>;
  const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
  const type = own(m, 'type') ? m['type'] : undefined;
  if (type === 'refresh') return { type: 'refresh' };
  if (type !== 'view') throw bad('unknown type');
  const limit = own(m, 'limit') ? m['limit'] : DEFAULT_WEB_LIMIT;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_WEB_LIMIT) throw bad(`limit must be 1 to ${MAX_WEB_LIMIT}`);
  const f = own(m, 'filter') ? m['filter'] : {};
  if (typeof f !== 'object' || f === null || Array.isArray(f)) throw bad('filter must be an object');
  const filter: WebFilter = {};
  for (const k of Object.keys(f)) {
    if (!(FILTER_KEYS as readonly string[]).includes(k)) throw bad(`unknown filter ${k.slice(0, 40)}`);
    const v = (f as Record<string, unknown>)[k];
    if (v === '' || v === undefined) continue;
    if (typeof v !== 'string' || v.length > 256) throw bad(`filter ${k} must be a string of at most 256 characters`);
    if (k === 'severity' && !(SEVERITIES as readonly string[]).includes(v)) throw bad('severity must be info, warning or critical');
    (filter as Record<string, string>)[k] = k === 'text' ? v.toLowerCase() : v;
  }
  return { type: 'view', filter, limit };
}

/** Whether a finding passes a tab's filter (`text` already lower case). */
export function matchesWebFilter(f: Finding, filter: WebFilter): boolean {
  if (filter.node && f.node !== filter.node) return false;
  if (filter.check && f.check !== filter.check && !f.check.startsWith(`${filter.check}.`)) return false;
  if (filter.severity && severityRank(f.severity) < severityRank(filter.severity)) return false;
  if (filter.pod) {
    const w = f.workload;
    const name = w?.pod ? `${w.namespace ?? ''}/${w.pod}` : '';
    if (!name.includes(filter.pod) && !f.subject.includes(filter.pod)) return false;
  }
  if (filter.text) {
    const t = filter.text;
    if (!f.message.toLowerCase().includes(t) && !f.subject.toLowerCase().includes(t) && !f.check.includes(t) && !f.node.toLowerCase().includes(t)) return false;
  }
  return true;
}

/** The table's order: most severe first, then node, check, subject (plain comparison: cheap on 100,000). */
export function compareRows(a: Finding, b: Finding): number {
  const s = severityRank(b.severity) - severityRank(a.severity);
  if (s) return s;
  for (const k of ['node', 'check', 'subject'] as const) if (a[k] !== b[k]) return a[k] < b[k] ? -1 : 1;
  return 0;
}

/** The first `k` of `items` by `cmp`, in one pass (no sort of them all: most items lose to the k-th at once). */
export function firstK<T>(items: Iterable<T>, k: number, cmp: (a: T, b: T) => number): T[] {
  const out: T[] = [];
  for (const x of items) {
    if (out.length === k && cmp(x, out[k - 1]!) >= 0) continue;
    let lo = 0;
    let hi = out.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(out[mid]!, x) <= 0) lo = mid + 1;
      else hi = mid;
    }
    out.splice(lo, 0, x);
    if (out.length > k) out.pop();
  }
  return out;
}

interface Tab {
  conn: Conn;
  filter: WebFilter;
  limit: number;
  /** The rows the tab holds (its snapshot's, and the matches sent since), by id. */
  shown: Map<string, Finding>;
  /** Its last row while it holds `limit` of them: a match that sorts after it does not reach the tab. */
  cutoff: Finding | undefined;
  /** How many active findings match its filter. */
  total: number;
  totalDirty: boolean;
  /** Set once the tab asked for a view; nothing is sent before. */
  viewing: boolean;
  pending: Map<string, TimedTransition>;
  dirtyNodes: Set<string>;
  countsDirty: boolean;
  /** The queue overflowed: its next message is a fresh snapshot. */
  resync: boolean;
  /** It asked for a view (or a refresh) within flushMs of its last snapshot: one comes at the next flush. */
  viewDue: boolean;
  lastSnapshotAt: number;
  lastSentAt: number;
  snapshots: number;
}

export interface WebFeedOptions {
  fleet: Fleet;
  connections: Connections;
  /** How often coalesced deltas go out. */
  flushMs: number;
  /** Changes one tab may have queued (by finding id) before it is due a fresh snapshot instead. */
  maxPending: number;
  /** Bytes waiting in a tab's socket past which it counts as behind (nothing more is written). */
  maxBufferedBytes: number;
  /** With nothing to say, a tab still hears from us this often (so it can tell stale from quiet). */
  tickMs: number;
  handshakeTimeoutMs: number;
  now?: () => number;
}

export class WebFeed {
  private readonly tabs = new Set<Tab>();
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  /** Snapshots sent because a tab fell behind (for the bench and /metrics-style reporting). */
  resyncs = 0;

  constructor(private readonly opts: WebFeedOptions) {
    this.now = opts.now ?? Date.now;
    opts.fleet.on('transition', (t: TimedTransition, before?: Finding) => this.onTransition(t, before));
    // Fresh numbers: a row shown gets them, and a text filter on a number may now match or not (the
    // total and the rows follow). Severity never changes in a refresh: the node's cell stays as it was.
    opts.fleet.on('refresh', (f: Finding, before?: Finding) => this.onTransition({ type: 'updated', finding: f, at: new Date(this.now()).toISOString() }, before, true));
    opts.fleet.on('node', (node: string) => {
      for (const tab of this.tabs) this.markNode(tab, node);
    });
    // A node page shows its collectors' status: only the tabs looking at that node hear of it.
    opts.fleet.on('status', (node: string) => {
      for (const tab of this.tabs) if (tab.viewing && tab.filter.node === node) this.markNode(tab, node);
    });
  }

  get size(): number {
    return this.tabs.size;
  }

  start(): void {
    this.timer = setInterval(() => this.flush(), this.opts.flushMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  add(conn: Conn): void {
    const { connections } = this.opts;
    const tab: Tab = { conn, filter: {}, limit: DEFAULT_WEB_LIMIT, shown: new Map(), cutoff: undefined, total: 0, totalDirty: false, viewing: false, pending: new Map(), dirtyNodes: new Set(), countsDirty: false, resync: false, viewDue: false, lastSnapshotAt: 0, lastSentAt: 0, snapshots: 0 };
    this.tabs.add(tab);
    const viewTimer = setTimeout(() => connections.close(conn, CLOSE.MALFORMED, `expected view within ${this.opts.handshakeTimeoutMs} ms`), this.opts.handshakeTimeoutMs);
    conn.ws.on('message', (raw: Buffer) =>
      connections.guard(conn, 'tailer', () => {
        const msg = connections.receive(conn, raw, decodeWebRequest);
        if (!msg) return;
        clearTimeout(viewTimer);
        if (msg.type === 'view') {
          tab.filter = msg.filter;
          tab.limit = msg.limit;
          tab.viewing = true;
        }
        // A snapshot walks every active finding: a tab typing in a filter (or a hostile one asking
        // 200 times a second) gets at most one per flush, for its latest view.
        if (this.now() - tab.lastSnapshotAt >= this.opts.flushMs) this.snapshot(tab);
        else tab.viewDue = true;
      }),
    );
    conn.ws.on('close', () => {
      clearTimeout(viewTimer);
      this.tabs.delete(tab);
    });
  }

  private markNode(tab: Tab, node: string): void {
    tab.dirtyNodes.add(node);
    tab.countsDirty = true;
    if (tab.dirtyNodes.size > this.opts.maxPending) this.overflow(tab);
  }

  private overflow(tab: Tab): void {
    tab.resync = true;
    tab.pending.clear();
    tab.dirtyNodes.clear();
  }

  /**
   * `before`: the finding as the fleet had it active before `t` (none for a new one). `refresh`: fresh
   * numbers only (no node, check, severity, subject or workload changes: refreshViolation), so only a
   * text filter can change whether it matches, and only a tab showing it or filtering on text hears of
   * it; its node's cell is left alone, and the total is sent only when it moved.
   */
  private onTransition(t: TimedTransition, before: Finding | undefined, refresh = false): void {
    for (const tab of this.tabs) {
      if (!tab.viewing || tab.resync) continue;
      if (refresh && !tab.filter.text && !tab.shown.has(t.finding.id)) continue;
      if (!refresh) this.markNode(tab, t.finding.node);
      if (tab.resync) continue;
      const f = t.finding;
      const matches = matchesWebFilter(f, tab.filter);
      const shown = tab.shown.has(f.id);
      // The total moves by whether the finding matched before and matches now: an update into the
      // filter (its severity rose past a severity filter) counts, and a replayed 'firing' of a finding
      // already active does not count twice.
      const matchedBefore = before !== undefined && matchesWebFilter(before, tab.filter);
      const matchesNow = t.type !== 'resolved' && matches;
      if (matchedBefore !== matchesNow) {
        tab.total += matchesNow ? 1 : -1;
        tab.totalDirty = true;
      } else if ((matches || shown) && !refresh) tab.totalDirty = true;
      let change: TimedTransition | undefined;
      if (shown && (t.type === 'resolved' || !matches)) {
        tab.shown.delete(f.id);
        change = { ...t, type: 'resolved' };
      } else if (matches && (shown || !tab.cutoff || compareRows(f, tab.cutoff) <= 0)) {
        tab.shown.set(f.id, f);
        change = t;
        if (tab.shown.size > 2 * tab.limit) this.trim(tab);
      }
      if (!change) continue;
      // Coalesced by finding: the latest transition wins, re-inserted so the order stays by time.
      tab.pending.delete(f.id);
      tab.pending.set(f.id, change);
      if (tab.pending.size > this.opts.maxPending) this.overflow(tab);
    }
  }

  /** Keeps the first `limit` rows (the tab keeps the same ones: same order), and their last as the cutoff. */
  private trim(tab: Tab): void {
    const rows = [...tab.shown.values()].sort(compareRows).slice(0, tab.limit);
    tab.shown = new Map(rows.map((f) => [f.id, f]));
    tab.cutoff = rows.length === tab.limit ? rows.at(-1) : undefined;
  }

  /** The whole view for one tab: every node's cell, the counts, its first rows and how many match. */
  private snapshot(tab: Tab): void {
    const { fleet } = this.opts;
    let total = 0;
    const matching = function* (): Generator<Finding> {
      for (const f of fleet.active()) if (matchesWebFilter(f, tab.filter)) {
        total++;
        yield f;
      }
    };
    const rows = firstK(matching(), tab.limit, compareRows);
    tab.shown = new Map(rows.map((f) => [f.id, f]));
    tab.cutoff = rows.length === tab.limit ? rows.at(-1) : undefined;
    tab.total = total;
    tab.totalDirty = false;
    tab.pending.clear();
    tab.dirtyNodes.clear();
    tab.countsDirty = false;
    tab.resync = false;
    tab.viewDue = false;
    tab.lastSnapshotAt = this.now();
    tab.snapshots++;
    const node = tab.filter.node ? fleet.nodeInfo(tab.filter.node) : undefined;
    this.send(tab, { type: 'snapshot', at: new Date(this.now()).toISOString(), nodes: fleet.nodeSummaries(), counts: fleet.countsByCheck(), rows, total, ...(tab.filter.node ? { node: node ?? null } : {}) });
  }

  private send(tab: Tab, msg: object): void {
    if (tab.conn.ws.readyState !== tab.conn.ws.OPEN) return;
    tab.conn.ws.send(JSON.stringify(msg));
    tab.lastSentAt = this.now();
  }

  /** One coalesced message per tab that has something to say and is keeping up. */
  flush(): void {
    const { fleet } = this.opts;
    const now = this.now();
    let counts: ReturnType<Fleet['countsByCheck']> | undefined;
    for (const tab of this.tabs) {
      if (!tab.viewing || tab.conn.ws.readyState !== tab.conn.ws.OPEN) continue;
      if (tab.conn.ws.bufferedAmount > this.opts.maxBufferedBytes) continue; // behind: keep coalescing
      if (tab.resync || tab.viewDue) {
        if (tab.resync) this.resyncs++;
        this.snapshot(tab);
        continue;
      }
      if (tab.pending.size === 0 && tab.dirtyNodes.size === 0 && !tab.totalDirty) {
        if (now - tab.lastSentAt >= this.opts.tickMs) this.send(tab, { type: 'tick', at: new Date(now).toISOString() });
        continue;
      }
      const nodes: (NodeSummary | [string, null])[] = [];
      for (const n of tab.dirtyNodes) nodes.push(fleet.nodeSummary(n) ?? [n, null]);
      const changes = [...tab.pending.values()].map((t) => [t.type, t.finding] as const);
      const node = tab.filter.node && tab.dirtyNodes.has(tab.filter.node) ? { node: fleet.nodeInfo(tab.filter.node) ?? null } : {};
      if (tab.countsDirty) counts ??= fleet.countsByCheck();
      tab.pending.clear();
      tab.dirtyNodes.clear();
      const withCounts = tab.countsDirty ? { counts } : {};
      tab.countsDirty = false;
      tab.totalDirty = false;
      this.send(tab, { type: 'delta', at: new Date(now).toISOString(), nodes, changes, total: tab.total, ...withCounts, ...node });
    }
  }
}
