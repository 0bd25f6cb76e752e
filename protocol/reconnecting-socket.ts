// One reconnecting WebSocket client, used by the agent's link to the aggregator and by `tail`. After ANY
// failure (connection refused, 401 or 503 on the upgrade, a TLS error, a close, a link found dead by the
// heartbeat, no first message in time) it tries again, forever, with full-jitter exponential backoff.
// The backoff resets only after a link stayed ready for `healthyAfterMs`: a peer that accepts and closes
// at once (an aggregator rejecting a snapshot with 1009) sees fewer and fewer attempts, not four a second.
// Loads ws and nothing of ours, so the CLI's tail never pulls in the agent.
import type { IncomingHttpHeaders } from 'node:http';
import WebSocket from 'ws';
import { errorMessage } from './errors.js';

export interface LinkFailure {
  /** What went wrong, for "is this the same failure again": refused, http, tls, closed, no-ready, heartbeat, error. */
  kind: 'refused' | 'http' | 'tls' | 'closed' | 'no-ready' | 'heartbeat' | 'error';
  /** One short phrase for people: "connection refused", "HTTP 401", "closed 1009 snapshot too big". */
  text: string;
  httpStatus?: number;
  closeCode?: number;
  /** Whether this connection had become ready (welcome, first message) before it ended. */
  wasReady: boolean;
  /** How long it had been ready, in ms (0 if never). */
  readyForMs: number;
}

export interface ReconnectingSocketOptions {
  url: string;
  /** Called before every connect (and may throw): re-read token files here, kubelet rotates them. */
  headers(): Record<string, string>;
  maxPayload: number;
  /** Ping this often once open; two intervals without a pong end the connection. */
  heartbeatMs: number;
  /** How long the opening handshake may take (default 10 s). */
  handshakeTimeoutMs?: number;
  /** How long after the upgrade the owner has to call markReady() (the welcome deadline; default 10 s). */
  readyTimeoutMs?: number;
  /** Backoff: a random delay up to min(maxMs, baseMs * 2^attempt) (default 0.5 s to 30 s). */
  backoff?: { baseMs: number; maxMs: number };
  /** A link ready at least this long resets the backoff (default 60 s). */
  healthyAfterMs?: number;
  random?: () => number;
  /** The upgrade succeeded: send hello / subscribe. */
  /** The link is open; `headers` are the server's upgrade response headers (what it says it supports). */
  onOpen(headers: IncomingHttpHeaders): void;
  onMessage(raw: Buffer): void;
  /** markReady() was called. */
  onReady?(): void;
  /** The connection ended (or never came up); the next attempt is in retryInMs. */
  onDown?(failure: LinkFailure, retryInMs: number): void;
}

/** Full-jitter exponential backoff: a random delay up to base * 2^attempt, capped. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  return Math.round(random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30)));
}

const ERRNO_TEXT: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'name lookup failed',
  EPIPE: 'connection reset',
};

/** The failure an 'error' event describes, in words a person knows. */
export function describeError(err: Error & { code?: string }): Pick<LinkFailure, 'kind' | 'text'> {
  const code = err.code ?? '';
  if (ERRNO_TEXT[code]) return { kind: 'refused', text: ERRNO_TEXT[code]! };
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|HOSTNAME_MISMATCH/.test(code)) return { kind: 'tls', text: `TLS: ${err.message}` };
  if (/handshake has timed out/.test(err.message)) return { kind: 'refused', text: 'the opening handshake timed out' };
  return { kind: 'error', text: err.message };
}

export class ReconnectingSocket {
  private ws: WebSocket | undefined;
  private stopped = true;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readyDeadline: NodeJS.Timeout | undefined;
  private readyAt: number | undefined;
  private downAt: number;
  /** Connections that became ready, in total. */
  connects = 0;
  /** Failures since the link was last healthy. */
  failures = 0;
  everReady = false;
  lastFailure: LinkFailure | undefined;

  constructor(private readonly opts: ReconnectingSocketOptions) {
    this.downAt = Date.now();
  }

  get ready(): boolean {
    return this.readyAt !== undefined;
  }

  /** Since when the link has not been ready (since start if it never was); undefined while ready. */
  get downSince(): number | undefined {
    return this.readyAt === undefined ? this.downAt : undefined;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.downAt = Date.now();
    this.connect();
  }

  stop(code = 1000, reason = 'stopping'): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.clearTimers();
    const ws = this.ws;
    this.ws = undefined;
    if (ws?.readyState === WebSocket.OPEN) ws.close(code, reason);
    else ws?.terminate();
  }

  send(data: string): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(data);
  }

  /** Bytes queued on the socket, not yet written. */
  get buffered(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  /** The owner got what makes this link useful (welcome, the first message). */
  markReady(): void {
    if (this.readyAt !== undefined || !this.ws) return;
    clearTimeout(this.readyDeadline);
    this.readyAt = Date.now();
    this.everReady = true;
    this.connects++;
    this.opts.onReady?.();
  }

  /** Ends the current connection as a failure of this kind; a new attempt follows. */
  fail(kind: LinkFailure['kind'], text: string): void {
    const ws = this.ws;
    if (!ws) return;
    this.pending.set(ws, { kind, text });
    ws.terminate();
  }

  private readonly pending = new WeakMap<WebSocket, Pick<LinkFailure, 'kind' | 'text' | 'httpStatus'>>();

  private clearTimers(): void {
    clearInterval(this.heartbeat);
    clearTimeout(this.readyDeadline);
  }

  private connect(): void {
    if (this.stopped) return;
    let headers: Record<string, string>;
    try {
      headers = this.opts.headers();
    } catch (err) {
      // A token file being rotated or not mounted yet: a failure like any other, tried again later.
      return this.down({ kind: 'error', text: errorMessage(err), wasReady: false, readyForMs: 0 });
    }
    const ws = new WebSocket(this.opts.url, { headers, handshakeTimeout: this.opts.handshakeTimeoutMs ?? 10_000, maxPayload: this.opts.maxPayload, perMessageDeflate: false });
    this.ws = ws;
    const first = (f: Pick<LinkFailure, 'kind' | 'text' | 'httpStatus'>) => {
      if (!this.pending.has(ws)) this.pending.set(ws, f);
    };
    let upgradeHeaders: IncomingHttpHeaders = {};
    ws.on('upgrade', (res) => (upgradeHeaders = res.headers));
    ws.on('open', () => {
      if (this.ws !== ws) return;
      let lastPong = Date.now();
      ws.on('pong', () => (lastPong = Date.now()));
      const hb = this.opts.heartbeatMs;
      this.heartbeat = setInterval(() => {
        // Two heartbeats without a pong: the link is dead even if TCP has not noticed.
        if (Date.now() - lastPong > 2 * hb) return this.fail('heartbeat', `no pong for ${Math.round((Date.now() - lastPong) / 1000)} s`);
        ws.ping();
      }, hb);
      const readyMs = this.opts.readyTimeoutMs ?? 10_000;
      this.readyDeadline = setTimeout(() => this.fail('no-ready', `nothing from the server within ${readyMs / 1000} s of connecting`), readyMs);
      this.opts.onOpen(upgradeHeaders);
    });
    ws.on('message', (raw: Buffer) => {
      if (this.ws === ws) this.opts.onMessage(raw);
    });
    ws.on('unexpected-response', (_req, res) => {
      first({ kind: 'http', text: `HTTP ${res.statusCode ?? '?'}${res.statusMessage ? ` ${res.statusMessage}` : ''}`, ...(res.statusCode ? { httpStatus: res.statusCode } : {}) });
      res.resume();
      ws.terminate(); // aborts the request; 'error' and 'close' follow
    });
    ws.on('error', (err: Error & { code?: string }) => first(describeError(err)));
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.ws !== ws) return; // stopped, or replaced
      this.ws = undefined;
      this.clearTimers();
      const readyForMs = this.readyAt === undefined ? 0 : Date.now() - this.readyAt;
      const wasReady = this.readyAt !== undefined;
      this.readyAt = undefined;
      if (wasReady) this.downAt = Date.now(); // an outage starts when a ready link ends, not at each failed attempt
      const f = this.pending.get(ws) ?? { kind: 'closed' as const, text: `closed ${code}${reason.length ? ` ${reason.toString()}` : ''}` };
      this.down({ ...f, ...(f.kind === 'closed' ? { closeCode: code } : {}), wasReady, readyForMs });
    });
  }

  private down(f: LinkFailure): void {
    if (this.stopped) return;
    if (f.wasReady && f.readyForMs >= (this.opts.healthyAfterMs ?? 60_000)) {
      this.attempt = 0;
      this.failures = 0;
    }
    this.failures++;
    this.lastFailure = f;
    const { baseMs, maxMs } = this.opts.backoff ?? { baseMs: 500, maxMs: 30_000 };
    const delay = Math.max(50, backoffDelay(this.attempt++, baseMs, maxMs, this.opts.random));
    this.opts.onDown?.(f, delay);
    if (this.stopped) return; // the owner gave up in onDown
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
