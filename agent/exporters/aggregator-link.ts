// The agent's link to the aggregator: hello, the whole active set, then deltas. Heartbeats notice a
// dead link within two intervals; reconnects use jittered exponential backoff; every (re)connect sends
// a fresh snapshot, so the aggregator converges to the truth with nothing lost and nothing stale.
import WebSocket from 'ws';
import { CLOSE, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, WireError, decodeAggregatorMessage, encode, type AgentMessage, type AggregatorToAgent } from '../../protocol/wire.js';
import type { Log } from '../../collectors/types.js';
import type { Runner, CollectorStatus } from '../runner.js';
import type { Transition } from '../tracker.js';

export interface StreamOptions {
  url: string;
  token: string;
  runner: Runner;
  node: string;
  version: string;
  log: Log;
  heartbeatMs: number;
  /** Handles a command; sends progress and the result through `reply`. */
  onCommand?: (cmd: Extract<AggregatorToAgent, { type: 'command' }>, reply: (msg: AgentMessage) => void) => void;
  backoff?: { baseMs: number; maxMs: number };
}

/** Full-jitter exponential backoff: a random delay up to base * 2^attempt, capped. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  return Math.round(random() * Math.min(maxMs, baseMs * 2 ** attempt));
}

export class StreamClient {
  private ws: WebSocket | undefined;
  private stopped = true;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private pending: Transition[] = [];
  private flushScheduled = false;
  private lastPong = 0;
  connected = false;
  connects = 0;

  private readonly onTransition = (t: Transition) => {
    if (!this.connected) return; // the snapshot on reconnect carries it
    this.pending.push(t);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  };

  private readonly onStatus = (_st: CollectorStatus) => {
    if (this.connected) this.send({ v: 1, type: 'status', collectors: this.statuses() });
  };

  constructor(private readonly opts: StreamOptions) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.opts.runner.on('transition', this.onTransition);
    this.opts.runner.on('status', this.onStatus);
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.opts.runner.off('transition', this.onTransition);
    this.opts.runner.off('status', this.onStatus);
    clearTimeout(this.reconnectTimer);
    clearInterval(this.heartbeat);
    this.ws?.close(CLOSE.GOING_AWAY, 'agent stopping');
    this.ws = undefined;
    this.connected = false;
  }

  private statuses() {
    return this.opts.runner.statuses().map((s) => ({ name: s.name, status: s.status, durationMs: s.durationMs, ...(s.detail ? { detail: s.detail.slice(0, 500) } : {}) }));
  }

  private send(msg: AgentMessage): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encode(msg));
  }

  private flush(): void {
    this.flushScheduled = false;
    if (!this.connected || this.pending.length === 0) return;
    const transitions = this.pending.map((t) => ({ type: t.type, finding: t.finding }));
    this.pending = [];
    this.send({ v: 1, type: 'delta', transitions });
  }

  private connect(): void {
    if (this.stopped) return;
    const { log } = this.opts;
    const url = `${this.opts.url.replace(/\/+$/, '')}/api/agent`;
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${this.opts.token}` }, handshakeTimeout: 10_000, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
    this.ws = ws;
    ws.on('open', () => {
      this.send({ v: 1, type: 'hello', protocol: PROTOCOL_VERSION, node: this.opts.node, agentVersion: this.opts.version, collectors: this.opts.runner.names() });
    });
    ws.on('message', (raw: Buffer) => {
      let msg: AggregatorToAgent;
      try {
        msg = decodeAggregatorMessage<AggregatorToAgent>(raw);
      } catch (err) {
        log.warn({ err: err instanceof WireError ? err.reason : String(err) }, 'invalid message from the aggregator; reconnecting');
        ws.close(err instanceof WireError ? err.closeCode : CLOSE.MALFORMED, 'invalid message');
        return;
      }
      if (msg.type === 'welcome') {
        this.connected = true;
        this.connects++;
        this.attempt = 0;
        this.pending = [];
        // The whole active set first: whatever happened while we were away is in it.
        this.send({ v: 1, type: 'snapshot', findings: this.opts.runner.active() });
        this.send({ v: 1, type: 'status', collectors: this.statuses() });
        log.info({ url, findings: this.opts.runner.active().length }, 'connected to the aggregator');
        this.startHeartbeat(ws);
      } else if (msg.type === 'command') {
        if (this.opts.onCommand) this.opts.onCommand(msg, (reply) => this.send(reply));
      }
    });
    ws.on('pong', () => (this.lastPong = Date.now()));
    ws.on('unexpected-response', (_req, res) => {
      log.error({ status: res.statusCode, url }, res.statusCode === 401 ? 'the aggregator refused our token' : 'the aggregator refused the connection');
    });
    ws.on('error', (err) => log.warn({ err: err.message, url }, 'aggregator connection error'));
    ws.on('close', (code, reason) => {
      clearInterval(this.heartbeat);
      const wasConnected = this.connected;
      this.connected = false;
      if (this.ws === ws) this.ws = undefined;
      if (this.stopped) return;
      const delay = backoffDelay(this.attempt++, this.opts.backoff?.baseMs ?? 500, this.opts.backoff?.maxMs ?? 30_000);
      log.warn({ code, reason: reason.toString(), retryInMs: delay, wasConnected }, 'aggregator connection closed; will reconnect');
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private startHeartbeat(ws: WebSocket): void {
    clearInterval(this.heartbeat);
    this.lastPong = Date.now();
    this.heartbeat = setInterval(() => {
      // Two heartbeats without a pong: the link is dead even if TCP has not noticed.
      if (Date.now() - this.lastPong > 2 * this.opts.heartbeatMs) {
        this.opts.log.warn({ silentForMs: Date.now() - this.lastPong }, 'no pong from the aggregator for two heartbeats; reconnecting');
        ws.terminate();
        return;
      }
      ws.ping();
    }, this.opts.heartbeatMs);
  }
}
