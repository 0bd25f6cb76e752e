// `nodewarden tail`: the cluster's active findings, then every transition as it happens, one line
// each. Reconnects by itself, says so, and on reconnect prints what changed while it was away.
// Loads only the protocol, ws and the formatter: never systeminformation, never /proc.
import WebSocket from 'ws';
import type { Finding, Severity } from '../protocol/finding.js';
import { CLOSE, MAX_MESSAGE_BYTES, WireError, decodeAggregatorMessage, encode, type AggregatorToTailer, type TailFilter } from '../protocol/wire.js';
import { painter, truncate, type Painter } from './format.js';

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
  heartbeatMs?: number;
  backoff?: { baseMs: number; maxMs: number };
}

const clock = (iso: string) => iso.slice(11, 19);

/** One line per event; the message is cut to the terminal's width only when there is a terminal. */
export function formatTailLine(event: TailEvent, f: Finding, at: string, p: Painter, columns?: number): string {
  const sev = event === 'resolved' ? 'resolved' : f.severity;
  const sevText = sev === 'resolved' ? p.dim('RESOLVED'.padEnd(8)) : p.severity(sev as Severity, sev.toUpperCase().padEnd(8));
  const head = `${clock(at)}  ${f.node.padEnd(16)}  ${sevText}  ${f.check.padEnd(20)}  ${truncate(f.subject, 36).padEnd(36)}  `;
  const tag = event === 'updated' ? '(updated) ' : event === 'history' ? p.dim('(earlier) ') : '';
  return `${head}${tag}${columns ? truncate(f.message, Math.max(40, columns - 100)) : f.message}`;
}

export const TAIL_HEADER = `${'TIME'.padEnd(8)}  ${'NODE'.padEnd(16)}  ${'SEVERITY'}  ${'CHECK'.padEnd(20)}  ${'SUBJECT'.padEnd(36)}  MESSAGE`;

export class Tail {
  readonly view = new Map<string, Finding>();
  private ws: WebSocket | undefined;
  private stopped = false;
  private attempt = 0;
  private seenActive = false;
  /** Chunks of an active set still arriving. */
  private activeChunks: Finding[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastPong = 0;
  private readonly p: Painter;
  /** Resolves when a --no-follow tail has printed the active set, or when stopped. */
  readonly done: Promise<number>;
  private resolveDone!: (code: number) => void;

  constructor(private readonly opts: TailOptions) {
    this.p = painter(opts.color);
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  start(): void {
    if (!this.opts.json && this.opts.follow) this.opts.out(this.p.bold(TAIL_HEADER));
    this.connect();
  }

  stop(code = 0): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    this.ws?.close(CLOSE.NORMAL, 'tail stopping');
    this.resolveDone(code);
  }

  private emit(event: TailEvent, f: Finding, at: string): void {
    if (this.opts.json) this.opts.out(JSON.stringify({ at, event, finding: f }));
    else this.opts.out(formatTailLine(event, f, at, this.p, this.opts.columns));
  }

  private onActive(findings: Finding[]): void {
    const now = new Date().toISOString();
    const next = new Map(findings.map((f) => [f.id, f]));
    if (!this.seenActive) {
      this.seenActive = true;
      if (!this.opts.follow && !this.opts.json) this.opts.out(this.p.bold(TAIL_HEADER));
      for (const f of findings) this.emit('active', f, f.lastSeen);
    } else {
      // Back after a reconnect: print only what changed while we were away.
      for (const [id, f] of this.view) if (!next.has(id)) this.emit('resolved', { ...f, state: 'resolved' }, now);
      for (const f of findings) {
        const before = this.view.get(f.id);
        if (!before) this.emit('firing', f, now);
        else if (before.severity !== f.severity || before.message !== f.message) this.emit('updated', f, now);
      }
    }
    this.view.clear();
    for (const [id, f] of next) this.view.set(id, f);
    if (!this.opts.follow) {
      const rank = Math.max(0, ...findings.map((f) => (f.severity === 'critical' ? 2 : f.severity === 'warning' ? 1 : 0)));
      this.stop(rank);
    }
  }

  private connect(): void {
    if (this.stopped) return;
    const url = `${this.opts.url}/api/tail`;
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${this.opts.token}` }, handshakeTimeout: 10_000, maxPayload: MAX_MESSAGE_BYTES * 4, perMessageDeflate: false });
    this.ws = ws;
    ws.on('open', () => {
      this.activeChunks = [];
      const sub = { v: 1 as const, type: 'subscribe' as const, filter: this.opts.filter, ...(this.opts.sinceMs !== undefined && !this.seenActive ? { sinceMs: this.opts.sinceMs } : {}) };
      ws.send(encode(sub));
      if (this.attempt > 0) this.opts.err(`nodewarden tail: reconnected to ${this.opts.url}`);
      this.attempt = 0;
      this.lastPong = Date.now();
      const hb = this.opts.heartbeatMs ?? 10_000;
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => {
        if (Date.now() - this.lastPong > 2 * hb) return void ws.terminate();
        ws.ping();
      }, hb);
    });
    ws.on('pong', () => (this.lastPong = Date.now()));
    ws.on('message', (raw: Buffer) => {
      let msg: AggregatorToTailer;
      try {
        msg = decodeAggregatorMessage<AggregatorToTailer>(raw);
      } catch (err) {
        this.opts.err(`nodewarden tail: invalid message from the aggregator: ${err instanceof WireError ? err.reason : String(err)}`);
        return;
      }
      if (msg.type === 'history') for (const t of msg.transitions) this.emit('history', t.finding, t.at);
      else if (msg.type === 'active') {
        this.activeChunks.push(...msg.findings);
        if (msg.more) return;
        const all = this.activeChunks;
        this.activeChunks = [];
        this.onActive(all);
      }
      else if (msg.type === 'transition') {
        const t = msg.transition;
        if (t.type === 'resolved') this.view.delete(t.finding.id);
        else this.view.set(t.finding.id, t.finding);
        this.emit(t.type, t.finding, t.at);
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      if (res.statusCode === 401 || res.statusCode === 403) {
        this.opts.err(`nodewarden: the aggregator at ${this.opts.url} refused the token (HTTP ${res.statusCode})`);
        this.stop(3);
      }
    });
    ws.on('error', () => undefined); // 'close' follows and says what to do
    ws.on('close', (code, reason) => {
      clearInterval(this.heartbeat);
      if (this.stopped) return;
      if (!this.opts.follow && !this.seenActive && this.attempt >= 3) {
        this.opts.err(`nodewarden: cannot reach the aggregator at ${this.opts.url}`);
        return this.stop(3);
      }
      const { baseMs, maxMs } = this.opts.backoff ?? { baseMs: 500, maxMs: 15_000 };
      const delay = Math.round(Math.random() * Math.min(maxMs, baseMs * 2 ** this.attempt++)) + 100;
      const why = reason.length ? `${code} ${reason.toString()}` : String(code);
      this.opts.err(`nodewarden tail: lost the aggregator at ${this.opts.url} (${why}); reconnecting in ${(delay / 1000).toFixed(1)}s`);
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }
}
