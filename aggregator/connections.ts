// What every WebSocket peer of the aggregator (agent or tailer) goes through, whatever it speaks:
// its message rate, decoding with a close code for what is wrong, a guard that turns any failure of a
// handler into the refusal of that one connection (logged with a code and counted), closing with a
// reason, and heartbeats. The protocols themselves are in agents.ts and tailers.ts.
import type { WebSocket } from 'ws';
import type { Logger } from 'pino';
import { NodewardenError, errnoCode, errorMessage } from '../protocol/errors.js';
import { CLOSE, WireError, encode, type AggregatorToAgent, type AggregatorToTailer } from '../protocol/wire.js';
import type { Identity } from './auth.js';
import { LimitError } from './fleet.js';
import { MessageRate, type RateLimit } from './limits.js';
import type { AggregatorCounters, Where } from './metrics.js';

export interface Conn {
  ws: WebSocket;
  /** Cleared at each heartbeat, set by the pong: still false at the next one drops the connection. */
  alive: boolean;
  rate: MessageRate;
  who: Identity;
  /** The token it presented, when it came from the token files: revoking it closes the connection. */
  secret?: string;
  /** An agent's node, once its hello was accepted. */
  node?: string;
}

/** A WebSocket close reason is at most 123 bytes; ws throws on more. */
export function closeReason(text: string): string {
  let r = text.slice(0, 123);
  while (Buffer.byteLength(r) > 123) r = r.slice(0, -1);
  return r;
}

/** The `code` of an error for logs and metrics, from a known set. */
export function codeOf(err: unknown): string {
  if (err instanceof NodewardenError || err instanceof LimitError) return err.code;
  if (errnoCode(err)) return 'NW_ERR_IO';
  return 'NW_ERR_INTERNAL';
}

export interface ConnectionsOptions {
  log: Logger;
  counters: AggregatorCounters;
  rateLimit: RateLimit;
}

/** The open WebSocket connections and what is done to any of them. */
export class Connections {
  private readonly open = new Set<Conn>();

  constructor(private readonly opts: ConnectionsOptions) {}

  /** A connection that has just upgraded; it leaves the set when its socket closes. */
  add(ws: WebSocket, who: Identity, secret?: string): Conn {
    const conn: Conn = { ws, alive: true, rate: new MessageRate(this.opts.rateLimit), who, ...(secret ? { secret } : {}) };
    this.open.add(conn);
    ws.on('pong', () => (conn.alive = true));
    // ws has already started the close with the right code (1009 for a frame over maxPayload, 1002 for
    // a protocol error): terminating at once would turn it into 1006 for the peer. Give the close frame
    // a moment, then cut the socket whatever the peer does.
    ws.on('error', () => setTimeout(() => ws.terminate(), 1_000).unref());
    ws.on('close', () => this.open.delete(conn));
    return conn;
  }

  all(): Conn[] {
    return [...this.open];
  }

  /** Logs a failure with its code and counts it; the caller refuses what failed. */
  failed(where: Where, err: unknown, what?: string): void {
    const code = codeOf(err);
    this.opts.counters.error(where, code);
    const level = code === 'NW_ERR_INTERNAL' ? 'error' : 'warn';
    this.opts.log[level]({ where, code, err: errorMessage(err).slice(0, 300) }, what ?? `${where} failed; refused it and serving on`);
  }

  /** Counts a refused message or part of one (nodewarden_aggregator_rejected_total{reason}). */
  refuse(reason: string): void {
    this.opts.counters.reject(reason);
  }

  close(conn: Conn, code: number, reason: string): void {
    this.opts.counters.reject(`close ${code}`);
    this.opts.log.warn({ who: conn.who.name, node: conn.node, code, reason }, 'closing connection');
    try {
      conn.ws.close(code, closeReason(reason));
    } catch {
      conn.ws.terminate();
    }
    setTimeout(() => conn.ws.terminate(), 1000).unref();
  }

  /** Counts, rate-limits and decodes one message; on a bad one, closes with its reason and returns undefined. */
  receive<T>(conn: Conn, raw: Buffer, decode: (raw: Buffer) => T): T | undefined {
    this.opts.counters.messages++;
    if (!conn.rate.admit()) {
      this.close(conn, CLOSE.POLICY, `more than ${this.opts.rateLimit.perSecond} messages per second`);
      return undefined;
    }
    try {
      return decode(raw);
    } catch (err) {
      const e = err instanceof WireError ? err : new WireError(CLOSE.MALFORMED, 'invalid message');
      this.close(conn, e.closeCode, e.reason);
      return undefined;
    }
  }

  /** Runs one message's handler: a limit refuses that connection with its reason, any other failure with 1011. */
  guard(conn: Conn, where: 'agent' | 'tailer', fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (err instanceof LimitError) {
        this.failed(where, err, `${where} over a limit: ${err.message}`);
        this.close(conn, CLOSE.LIMIT, err.message);
      } else {
        this.failed(where, err);
        this.close(conn, CLOSE.INTERNAL, 'the aggregator could not handle this message; see its log');
      }
    }
  }

  send(ws: WebSocket, msg: AggregatorToAgent | AggregatorToTailer): void {
    if (ws.readyState === ws.OPEN) ws.send(encode(msg));
  }

  /** Pings every connection; one that did not answer the previous ping is dropped. */
  beat(): void {
    for (const c of this.all()) {
      if (!c.alive) {
        this.opts.log.warn({ who: c.who.name, node: c.node }, 'heartbeat missed; dropping connection');
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        c.ws.terminate();
      }
    }
  }
}
