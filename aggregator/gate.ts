// Admission of TCP connections to the aggregator, before anyone has said who they are. A connection is
// "unauthenticated" from accept until it has sent a whole HTTP request head (a plain request: /healthz,
// /metrics, the API, which checks its own token) or its WebSocket upgrade was authenticated; then it is
// "established". Why two pools and not one cap: with one cap, 600 idle sockets that reconnect as soon as
// they are closed hold every slot, and a real agent, a tailer or kubelet's probe never gets one. So:
// - every unauthenticated connection has an absolute deadline (TLS handshake plus request head), not an
//   idle timer: one byte every 5 s (slowloris) does not extend it;
// - unauthenticated connections have a pool of their own, smaller than the cap; when it is full, or the
//   cap is reached, the OLDEST unauthenticated connection is evicted to admit the new one. A flood then
//   churns through its own pool while each newcomer gets the time it needs to speak (a real client sends
//   its request at once; a flood socket that does not is the oldest soon enough);
// - one address may hold at most a share of that pool: past it, its own oldest goes, so one flooding
//   host does not evict everybody else's handshakes;
// - established connections are never evicted to make room; at the cap with no unauthenticated one
//   left to evict, the new connection is dropped.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AggregatorCounters } from './metrics.js';

export interface GateOptions {
  maxConnections: number;
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
  /** From accept to a whole request head or an authenticated upgrade. */
  deadlineMs: number;
  counters: AggregatorCounters;
}

interface Pending {
  address: string;
  timer: NodeJS.Timeout;
}

export class ConnectionGate {
  /** Unauthenticated sockets, oldest first (a Map keeps insertion order). */
  private readonly pending = new Map<Socket, Pending>();
  private readonly byAddress = new Map<string, Set<Socket>>();
  private established_ = 0;

  constructor(private readonly opts: GateOptions) {}

  /** A new TCP connection: admitted (evicting the oldest unauthenticated one if need be) or dropped. */
  admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    const mine = this.byAddress.get(address);
    if (mine && mine.size >= this.opts.maxUnauthenticatedPerAddress) this.evict(mine.values().next().value!);
    else if (this.pending.size >= this.opts.maxUnauthenticated) this.evict(this.pending.keys().next().value!);
    if (this.pending.size + this.established_ >= this.opts.maxConnections) {
      const oldest = this.pending.keys().next().value;
      if (oldest) this.evict(oldest);
      else {
        this.opts.counters.dropped++;
        socket.destroy();
        return;
      }
    }
    const timer = setTimeout(() => {
      this.opts.counters.reject('handshake timeout');
      socket.destroy();
    }, this.opts.deadlineMs);
    timer.unref();
    this.pending.set(socket, { address, timer });
    let set = this.byAddress.get(address);
    if (!set) this.byAddress.set(address, (set = new Set()));
    set.add(socket);
    socket.once('close', () => {
      if (!this.forget(socket)) this.established_--;
    });
  }

  /**
   * The socket (or the TLS socket over it) has spoken: its deadline is met and it leaves the
   * unauthenticated pool. Called again for every request on a kept-alive connection: a no-op then.
   */
  established(socket: Duplex): void {
    const raw = ((socket as { _parent?: Socket })._parent ?? socket) as Socket;
    if (this.forget(raw)) this.established_++;
  }

  counts(): { unauthenticated: number; established: number } {
    return { unauthenticated: this.pending.size, established: this.established_ };
  }

  private evict(socket: Socket): void {
    this.opts.counters.evicted++;
    this.forget(socket);
    this.established_++; // its 'close' handler will count it down
    socket.destroy();
  }

  /** Takes a socket out of the unauthenticated pool; false when it was not in it. */
  private forget(socket: Socket): boolean {
    const p = this.pending.get(socket);
    if (!p) return false;
    clearTimeout(p.timer);
    this.pending.delete(socket);
    const set = this.byAddress.get(p.address);
    set?.delete(socket);
    if (set?.size === 0) this.byAddress.delete(p.address);
    return true;
  }
}
