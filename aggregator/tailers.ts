// Tailers (`nodewarden tail`): one subscribe per connection, then history since a time and the active
// set in chunks, then every matching transition. Backpressure: a tailer with more than
// maxTailerBufferBytes waiting is dropped as too slow, so one stalled reader never holds the
// aggregator's memory.
import { CLOSE, decodeTailerMessage, encode, matchesFilter, type TailFilter } from '../protocol/wire.js';
import type { Conn, Connections } from './connections.js';
import type { Fleet, TimedTransition } from './fleet.js';
import type { AggregatorLimits } from './limits.js';

interface TailConn extends Conn {
  filter?: TailFilter;
  subscribed?: boolean;
  /** Transitions held back while history and the active set are still being sent (they come after). */
  held?: string[];
  heldBytes?: number;
}

export interface TailersOptions {
  fleet: Fleet;
  connections: Connections;
  limits: Pick<AggregatorLimits, 'handshakeTimeoutMs' | 'chunkBytes' | 'maxTailerBufferBytes'>;
}

export class Tailers {
  private readonly conns = new Set<TailConn>();

  constructor(private readonly opts: TailersOptions) {}

  get size(): number {
    return this.conns.size;
  }

  /** Bytes waiting in all tailers' send buffers. */
  bufferedBytes(): number {
    return [...this.conns].reduce((n, c) => n + c.ws.bufferedAmount, 0);
  }

  /** A tailer that has just upgraded: it must subscribe within the handshake deadline. */
  add(conn: TailConn): void {
    const { connections, fleet, limits } = this.opts;
    this.conns.add(conn);
    const subTimer = setTimeout(() => connections.close(conn, CLOSE.MALFORMED, `expected subscribe within ${limits.handshakeTimeoutMs} ms`), limits.handshakeTimeoutMs);
    conn.ws.on('message', (raw: Buffer) =>
      connections.guard(conn, 'tailer', () => {
        const msg = connections.receive(conn, raw, decodeTailerMessage);
        if (!msg) return;
        clearTimeout(subTimer);
        // One subscription per connection: a re-subscribe would mean a second copy of everything.
        if (conn.subscribed) return connections.close(conn, CLOSE.LIMIT, 'one subscribe per connection; reconnect to change the filter');
        conn.subscribed = true;
        const filter = msg.filter ?? {};
        conn.filter = filter;
        const history = msg.sinceMs === undefined ? [] : [...fleet.historyEntries()].filter((t) => Date.parse(t.at) >= msg.sinceMs! && matchesFilter(t.finding, filter));
        this.sendInitial(conn, history, fleet.active(filter));
      }),
    );
    conn.ws.on('close', () => {
      clearTimeout(subTimer);
      this.conns.delete(conn);
    });
  }

  /** One transition to every subscribed tailer whose filter matches it. */
  broadcast(t: TimedTransition): void {
    const { connections, limits } = this.opts;
    let text: string | undefined;
    for (const c of this.conns) {
      if (!c.filter || !matchesFilter(t.finding, c.filter)) continue;
      if (c.ws.bufferedAmount > limits.maxTailerBufferBytes) {
        connections.close(c, CLOSE.POLICY, `tailer too slow: more than ${Math.round(limits.maxTailerBufferBytes / 1048576)} MiB waiting`);
        continue;
      }
      text ??= encode({ v: 1, type: 'transition', transition: t });
      if (c.held) {
        if ((c.heldBytes ?? 0) + text.length > limits.maxTailerBufferBytes) connections.close(c, CLOSE.POLICY, 'tailer too slow: its active set is not read');
        else {
          c.held.push(text);
          c.heldBytes = (c.heldBytes ?? 0) + text.length;
        }
      } else if (c.ws.readyState === c.ws.OPEN) c.ws.send(text);
    }
  }

  /**
   * History, then the active set, in chunks of at most chunkBytes (far under the tailer's 16 MiB
   * frame limit), each sent once the previous one is written: neither sits in memory once per tailer.
   * Live transitions wait until both are complete.
   */
  private sendInitial(conn: TailConn, history: readonly TimedTransition[], active: readonly object[]): void {
    const { connections, limits } = this.opts;
    conn.held = [];
    conn.heldBytes = 0;
    const parts: { type: 'history' | 'active'; key: string; items: readonly object[] }[] = [
      ...(history.length > 0 ? [{ type: 'history' as const, key: 'transitions', items: history }] : []),
      { type: 'active', key: 'findings', items: active },
    ];
    let part = 0;
    let offset = 0;
    const next = (err?: Error): void => {
      if (err || conn.ws.readyState !== conn.ws.OPEN) return;
      try {
        const p = parts[part]!;
        const chunk: string[] = [];
        let bytes = 0;
        while (offset < p.items.length && (chunk.length === 0 || bytes < limits.chunkBytes)) {
          const text = JSON.stringify(p.items[offset]);
          if (chunk.length > 0 && bytes + text.length > limits.chunkBytes) break;
          chunk.push(text);
          bytes += text.length;
          offset++;
        }
        const more = offset < p.items.length;
        if (!more) {
          part++;
          offset = 0;
        }
        const last = part >= parts.length;
        conn.ws.send(`{"v":1,"type":"${p.type}","${p.key}":[${chunk.join(',')}]${more ? ',"more":true' : ''}}`, last ? undefined : next);
        if (last) {
          const held = conn.held ?? [];
          conn.held = undefined;
          conn.heldBytes = 0;
          for (const text of held) conn.ws.send(text);
        }
      } catch (e) {
        connections.failed('tailer', e);
        connections.close(conn, CLOSE.INTERNAL, 'the aggregator could not send the active set; see its log');
      }
    };
    next();
  }
}
