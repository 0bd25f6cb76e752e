// A stand-in for a server-side `ws` WebSocket, for testing the aggregator's parts on their own (no
// network, no timing): it records what is sent and how it was closed, lets the test decide when a
// send has been written (the callback ws calls) and how many bytes are waiting (bufferedAmount).
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';

export class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly sent: string[] = [];
  /** Callbacks of sends not yet "written"; `flush()` calls them. */
  private readonly pending: ((err?: Error) => void)[] = [];
  closed: { code: number; reason: string } | undefined;
  terminated = false;
  pings = 0;

  send(text: string, cb?: (err?: Error) => void): void {
    if (this.readyState !== this.OPEN) throw new Error('send on a socket that is not open');
    this.sent.push(text);
    if (cb) this.pending.push(cb);
  }

  /** Completes every write waiting so far (more may be queued by the callbacks: call again). */
  flush(): number {
    const cbs = this.pending.splice(0);
    for (const cb of cbs) cb();
    return cbs.length;
  }

  /** Sent messages, parsed. */
  messages(): Record<string, unknown>[] {
    return this.sent.map((s) => JSON.parse(s) as Record<string, unknown>);
  }

  close(code: number, reason: string): void {
    if (this.readyState !== this.OPEN) return;
    if (Buffer.byteLength(reason) > 123) throw new Error('close reason over 123 bytes');
    this.closed = { code, reason };
    this.readyState = 2;
    queueMicrotask(() => this.end());
  }

  terminate(): void {
    this.terminated = true;
    this.end();
  }

  ping(): void {
    this.pings++;
  }

  /** What the peer does: a message arrives. */
  receive(msg: unknown): void {
    this.emit('message', Buffer.from(typeof msg === 'string' ? msg : JSON.stringify(msg)));
  }

  asWebSocket(): WebSocket {
    return this as unknown as WebSocket;
  }

  private end(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.emit('close');
  }
}
