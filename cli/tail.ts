// `nodewarden tail`: the cluster's active findings, then every transition as it happens, one line
// each, with a summary when the stream starts and a quiet status line (findings by severity, nodes
// connected). The connection is protocol/reconnecting-socket.ts, the one the agent uses: it retries
// after any failure with backoff that resets only after a healthy link. "Cannot reach" when it never
// connected, "lost ... reconnecting" only after a link existed. Every string from the aggregator is
// escaped before it reaches the terminal. Loads only the protocol, ws and the formatter: never
// systeminformation, never /proc.
import { displaySubject, severityRank, type Finding, type Severity } from '../protocol/finding.js';
import { CLOSE, MAX_MESSAGE_BYTES, WireError, decodeAggregatorMessage, encode, type AggregatorToTailer, type TailFilter } from '../protocol/wire.js';
import { ReconnectingSocket, type LinkFailure } from '../protocol/reconnecting-socket.js';
import { isNews, type TimedTransition } from '../protocol/transition.js';
import { escapeForTerminal as esc, jsonForTerminal } from '../protocol/terminal.js';
import { painter, truncate, type Painter } from './format.js';
import { StatusLine, countBySeverity, formatStatus, formatSummary, type FleetStatus } from './status.js';

export type TailEvent = 'active' | 'history' | 'firing' | 'updated' | 'resolved';

export interface TailOptions {
  url: string;
  token: string;
  filter: TailFilter;
  sinceMs?: number;
  follow: boolean;
  json: boolean;
  color: boolean;
  columns?: number;
  out(line: string): void;
  err(line: string): void;
  /** Raw stdout for the status line; without it there is none. */
  write?(text: string): void;
  /** stdout is a terminal: the status line updates in place (else a line at most every statusPipeEveryMs). */
  tty?: boolean;
  /** How often the status line is refreshed (default 5 s) and, in a pipe, printed at most (default 5 min). */
  statusEveryMs?: number;
  statusPipeEveryMs?: number;
  heartbeatMs?: number;
  backoff?: { baseMs: number; maxMs: number };
  healthyAfterMs?: number;
}

const clock = (iso: string) => iso.slice(11, 19);

/** One line per event; the message is cut to the terminal's width only when there is a terminal. */
export function formatTailLine(event: TailEvent, f: Finding, at: string, p: Painter, columns?: number): string {
  const sev = event === 'resolved' ? 'resolved' : f.severity;
  const sevText = sev === 'resolved' ? p.dim('RESOLVED'.padEnd(8)) : p.severity(sev as Severity, sev.toUpperCase().padEnd(8));
  const head = `${esc(clock(at))}  ${esc(f.node).padEnd(16)}  ${sevText}  ${esc(f.check).padEnd(20)}  ${truncate(esc(displaySubject(f)), 36).padEnd(36)}  `;
  const tag = event === 'updated' ? '(updated) ' : event === 'history' ? p.dim('(earlier) ') : '';
  const message = esc(f.message);
  return `${head}${tag}${columns ? truncate(message, Math.max(40, columns - 100)) : message}`;
}

export const TAIL_HEADER = `${'TIME'.padEnd(8)}  ${'NODE'.padEnd(16)}  ${'SEVERITY'}  ${'CHECK'.padEnd(20)}  ${'SUBJECT'.padEnd(36)}  MESSAGE`;

/** What to tell someone whose tail never reached the aggregator. */
export function unreachableHint(url: string, f: Pick<LinkFailure, 'kind' | 'text'>): string {
  // Something accepted us and then ended the stream (1009 for a message over our limit, no answer to
  // subscribe): the aggregator is there, so "start one" would send the user the wrong way.
  if (f.kind === 'closed' || f.kind === 'no-ready') return `nodewarden: the aggregator at ${url} accepted the connection, then the stream ended (${esc(f.text)}); retrying`;
  const next =
    f.kind === 'tls'
      ? 'if it uses a private CA, point NODE_EXTRA_CA_CERTS at the CA file'
      : f.kind === 'http'
        ? 'check --aggregator: something answers there, but not a nodewarden aggregator that accepts us'
        : 'start one with `nodewarden aggregator` or run `nodewarden up`';
  return `nodewarden: cannot reach the aggregator at ${url} (${esc(f.text)}): ${next}`;
}

export class Tail {
  readonly view = new Map<string, Finding>();
  private readonly socket: ReconnectingSocket;
  private stopped = false;
  private seenActive = false;
  /** Chunks of an active set still arriving. */
  private activeChunks: Finding[] = [];
  private readonly p: Painter;
  private readonly status: StatusLine | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private nodes: FleetStatus['nodes'];
  private nodesAt = 0;
  private lostAt: Date | undefined;
  /** Resolves when a --no-follow tail has printed the active set, or when stopped. */
  readonly done: Promise<number>;
  private resolveDone!: (code: number) => void;

  constructor(private readonly opts: TailOptions) {
    this.p = painter(opts.color);
    this.done = new Promise((r) => (this.resolveDone = r));
    if (opts.write && opts.follow && !opts.json) {
      this.status = new StatusLine({ tty: Boolean(opts.tty), write: opts.write, ...(opts.statusPipeEveryMs !== undefined ? { pipeEveryMs: opts.statusPipeEveryMs } : {}) });
    }
    this.socket = new ReconnectingSocket({
      url: `${opts.url}/api/tail`,
      headers: () => ({ authorization: `Bearer ${opts.token}` }),
      maxPayload: MAX_MESSAGE_BYTES * 4,
      heartbeatMs: opts.heartbeatMs ?? 10_000,
      backoff: opts.backoff ?? { baseMs: 500, maxMs: 15_000 },
      healthyAfterMs: opts.healthyAfterMs ?? 60_000,
      // The aggregator answers a subscribe with the active set at once; a big one may take a while.
      readyTimeoutMs: 30_000,
      onOpen: () => {
        this.activeChunks = [];
        this.socket.send(encode({ v: 1, type: 'subscribe', filter: this.opts.filter, ...(this.opts.sinceMs !== undefined && !this.seenActive ? { sinceMs: this.opts.sinceMs } : {}) }));
      },
      onMessage: (raw) => {
        this.socket.markReady();
        this.onMessage(raw);
      },
      onReady: () => {
        if (this.lostAt) this.say(`nodewarden tail: reconnected to ${this.opts.url}`);
        else if (this.socket.failures > 0 && this.socket.connects === 1) this.say(`nodewarden tail: connected to ${this.opts.url}`);
        this.lostAt = undefined;
      },
      onDown: (f) => this.onDown(f),
    });
  }

  start(): void {
    if (!this.opts.json && this.opts.follow) this.print(this.p.bold(TAIL_HEADER));
    this.socket.start();
    if (this.status) {
      const every = this.opts.statusEveryMs ?? 5_000;
      this.statusTimer = setInterval(() => void this.refreshStatus(), this.opts.tty ? every : Math.min(every * 12, this.opts.statusPipeEveryMs ?? 5 * 60_000));
      this.statusTimer.unref();
    }
  }

  stop(code = 0): void {
    this.stopped = true;
    clearInterval(this.statusTimer);
    this.status?.clear();
    this.socket.stop(CLOSE.NORMAL, 'tail stopping');
    this.resolveDone(code);
  }

  /** The status line as it stands now (also what `up` can show). */
  fleetStatus(): FleetStatus {
    return { ...countBySeverity(this.view.values()), ...(this.nodes ? { nodes: this.nodes } : {}), link: { up: this.socket.ready, ...(this.lostAt ? { since: this.lostAt } : {}) } };
  }

  private print(line: string): void {
    if (this.status) this.status.line(line);
    else this.opts.out(line);
  }

  /** A message on stderr that does not garble the status line on the same terminal. */
  private say(line: string): void {
    if (this.status && this.opts.tty) {
      this.status.clear();
      this.opts.err(line);
      this.status.show(formatStatus(this.fleetStatus(), this.p, new Date()));
    } else this.opts.err(line);
  }

  private async refreshStatus(): Promise<void> {
    if (!this.status || !this.seenActive) return;
    // Nodes connected come from the aggregator's node list, asked at most every 30 s.
    if (Date.now() - this.nodesAt > 30_000) {
      this.nodesAt = Date.now();
      try {
        const res = await fetch(`${this.opts.url.replace(/^ws/, 'http')}/api/nodes`, { headers: { authorization: `Bearer ${this.opts.token}` }, signal: AbortSignal.timeout(5_000) });
        const body = res.ok ? ((await res.json()) as unknown) : undefined;
        const list = Array.isArray(body) ? body : Array.isArray((body as { nodes?: unknown } | undefined)?.nodes) ? (body as { nodes: unknown[] }).nodes : undefined;
        if (list) this.nodes = { total: list.length, connected: list.filter((n) => (n as { connected?: unknown }).connected === true).length };
      } catch {
        // keep the last count; the link state says the rest
      }
    }
    if (!this.stopped) this.status.show(formatStatus(this.fleetStatus(), this.p, new Date()));
  }

  /** --since's history, held until the active set arrives. */
  private history: TimedTransition[] = [];

  private emit(event: TailEvent, f: Finding, at: string): void {
    if (this.opts.json) this.opts.out(jsonForTerminal({ at, event, finding: f }));
    else this.print(formatTailLine(event, f, at, this.p, this.opts.columns));
  }

  private onActive(findings: Finding[]): void {
    const now = new Date().toISOString();
    const next = new Map(findings.map((f) => [f.id, f]));
    const first = !this.seenActive;
    if (first) {
      this.seenActive = true;
      if (!this.opts.follow && !this.opts.json) this.opts.out(this.p.bold(TAIL_HEADER));
      // --since's history first, but a finding still active is shown once, below, with its current
      // numbers: its firing and updates are not printed again from history. TIME is when a finding
      // fired, not when it was last seen (that moved at every refresh).
      for (const h of this.history) if (h.type === 'resolved' || !next.has(h.finding.id)) this.emit('history', h.finding, h.at);
      this.history = [];
      for (const f of findings) this.emit('active', f, f.firstSeen);
    } else {
      // Back after a reconnect: print only what changed while we were away.
      for (const [id, f] of this.view) if (!next.has(id)) this.emit('resolved', { ...f, state: 'resolved' }, now);
      for (const f of findings) {
        const before = this.view.get(f.id);
        if (!before) this.emit('firing', f, now);
        else if (isNews(before, f)) this.emit('updated', f, now);
      }
    }
    this.view.clear();
    for (const [id, f] of next) this.view.set(id, f);
    if (first && !this.opts.json) this.print(this.p.dim(`-- ${formatSummary(findings)}${this.opts.follow ? '; following changes' : ''}`));
    if (first) void this.refreshStatus();
    if (!this.opts.follow) {
      // Severity ranks are the monitoring-plugin exit codes: 0 ok/info, 1 warning, 2 critical.
      const rank = Math.max(0, ...findings.map((f) => severityRank(f.severity)));
      this.stop(rank);
    }
  }

  private onMessage(raw: Buffer): void {
    let msg: AggregatorToTailer;
    try {
      msg = decodeAggregatorMessage<AggregatorToTailer>(raw);
    } catch (err) {
      this.say(`nodewarden tail: invalid message from the aggregator: ${esc(err instanceof WireError ? err.reason : String(err))}`);
      // Following, one bad message is skipped; a one-shot answer that cannot be read is unknown (3), not a hang.
      if (!this.opts.follow) this.stop(3);
      return;
    }
    if (msg.type === 'history') {
      // Held until the active set arrives (it follows the history): see onActive.
      if (this.seenActive) for (const t of msg.transitions) this.emit('history', t.finding, t.at);
      else this.history.push(...msg.transitions);
    }
    else if (msg.type === 'active') {
      this.activeChunks.push(...msg.findings);
      if (msg.more) return;
      const all = this.activeChunks;
      this.activeChunks = [];
      this.onActive(all);
    } else if (msg.type === 'transition') {
      const t = msg.transition;
      if (t.type === 'resolved') this.view.delete(t.finding.id);
      else this.view.set(t.finding.id, t.finding);
      this.emit(t.type, t.finding, t.at);
      if (this.status && this.opts.tty) this.status.show(formatStatus(this.fleetStatus(), this.p, new Date()));
    }
  }

  private onDown(f: LinkFailure): void {
    if (this.stopped) return;
    if (f.kind === 'http' && (f.httpStatus === 401 || f.httpStatus === 403)) {
      this.say(`nodewarden: the aggregator at ${this.opts.url} refused the token (HTTP ${f.httpStatus})`);
      return this.stop(3);
    }
    if (!this.socket.everReady) {
      // Never connected: say so once, with what to do; keep trying quietly (a --no-follow tail gives up).
      if (this.socket.failures === 1) this.say(unreachableHint(this.opts.url, f));
      if (!this.opts.follow && this.socket.failures >= 3) this.stop(3);
      return;
    }
    if (this.lostAt === undefined) {
      this.lostAt = new Date();
      this.say(`nodewarden tail: lost the aggregator at ${this.opts.url} (${esc(f.text)}); reconnecting`);
    }
    if (this.status && this.opts.tty) this.status.show(formatStatus(this.fleetStatus(), this.p, new Date()));
  }
}
