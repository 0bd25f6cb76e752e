// The agent's link to the aggregator (an Exporter: the daemon hands it the runner's events): hello,
// the whole active set, then deltas (transitions) and
// refreshes (fresh numbers, same meaning: only to an aggregator whose upgrade response names them). The connection itself
// (retry after any failure, forever; full-jitter backoff reset only by a link that stayed healthy; a
// welcome deadline; heartbeats) is protocol/reconnecting-socket.ts, shared with `tail`. Every
// (re)connect re-reads the token (kubelet rotates projected tokens) and sends a fresh snapshot, so the
// aggregator converges to the truth with nothing lost and nothing stale. A failure is logged once at
// warn; the same failure again is logged at debug, so an aggregator that rejects us is not a log flood.
import type { Finding } from '../../protocol/finding.js';
import { CLOSE, FEATURES_HEADER, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, WireError, decodeAggregatorMessage, encode, type AgentMessage, type AggregatorToAgent } from '../../protocol/wire.js';
import { ReconnectingSocket, type LinkFailure } from '../../protocol/reconnecting-socket.js';
import type { Log } from '../../collectors/types.js';
import type { CollectorStatus } from '../runner.js';
import type { Transition } from '../tracker.js';
import type { Exporter, RunnerView } from './exporter.js';

export { backoffDelay } from '../../protocol/reconnecting-socket.js';

export interface StreamOptions {
  url: string;
  /** The token, or a function that reads it (called before every connect). */
  token: string | (() => string);
  /** The hello's collectors, the snapshot and the statuses sent on every (re)connect. */
  runner: RunnerView;
  node: string;
  version: string;
  log: Log;
  heartbeatMs: number;
  /** Handles a command; sends progress and the result through `reply`. */
  onCommand?: (cmd: Extract<AggregatorToAgent, { type: 'command' }>, reply: (msg: AgentMessage) => void) => void;
  backoff?: { baseMs: number; maxMs: number };
  /** How long `welcome` may take after the upgrade (default 10 s). */
  welcomeTimeoutMs?: number;
  /** A link up this long resets the backoff (default 60 s). */
  healthyAfterMs?: number;
  /** The jitter's source (tests make it deterministic). */
  random?: () => number;
}

/** What /healthz and /readyz say about the link. */
export interface LinkState {
  url: string;
  connected: boolean;
  /** ISO time since when it has not been connected (since start if never). */
  downSince?: string;
  downForMs?: number;
  everConnected: boolean;
  failures: number;
  lastError?: string;
}

/** Close codes after which the aggregator refused what we sent, not the connection. */
const REJECTED = new Set<number>([CLOSE.TOO_BIG, CLOSE.POLICY, CLOSE.MALFORMED, CLOSE.VERSION]);

export class StreamClient implements Exporter {
  readonly name = 'aggregator-link';
  private readonly socket: ReconnectingSocket;
  private started = false;
  private pending: Transition[] = [];
  /** Findings whose numbers changed since the last flush, by id (the newest wins). */
  private refreshed = new Map<string, Finding>();
  /** The aggregator named `refresh` in its upgrade response; an older one would close the link on it. */
  private refreshes = false;
  private flushScheduled = false;
  /** The last failure logged at warn, to log a repeat of it at debug only. */
  private loggedFailure: string | undefined;
  private repeats = 0;
  /** The last link ended with the aggregator rejecting what we sent: the next connect is not news. */
  private quietConnect = false;
  connected = false;
  connects = 0;

  onTransition(t: Transition): void {
    if (!this.connected) return; // the snapshot on reconnect carries it
    this.pending.push(t);
    this.refreshed.delete(t.finding.id); // the transition carries newer numbers
    this.scheduleFlush();
  }

  /** Numbers changed, meaning did not: the aggregator's view follows, with no transition. */
  onRefresh(f: Finding): void {
    if (!this.connected || !this.refreshes) return; // the snapshot on reconnect carries it
    this.refreshed.set(f.id, f);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  onStatus(_st: CollectorStatus): void {
    if (this.connected) this.send({ v: 1, type: 'status', collectors: this.statuses() });
  }

  constructor(private readonly opts: StreamOptions) {
    const url = `${opts.url.replace(/\/+$/, '')}/api/agent`;
    const token = opts.token;
    this.socket = new ReconnectingSocket({
      url,
      headers: () => ({ authorization: `Bearer ${typeof token === 'function' ? token() : token}` }),
      maxPayload: MAX_MESSAGE_BYTES,
      heartbeatMs: opts.heartbeatMs,
      readyTimeoutMs: opts.welcomeTimeoutMs ?? 10_000,
      healthyAfterMs: opts.healthyAfterMs ?? 60_000,
      backoff: opts.backoff ?? { baseMs: 500, maxMs: 30_000 },
      ...(opts.random ? { random: opts.random } : {}),
      onOpen: (headers) => {
        this.refreshes = String(headers[FEATURES_HEADER] ?? '').split(',').some((f) => f.trim() === 'refresh');
        this.sendHello();
      },
      onMessage: (raw) => this.onMessage(raw),
      onDown: (f, retryInMs) => this.onDown(f, retryInMs),
    });
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.socket.start();
  }

  stop(): void {
    this.started = false;
    this.socket.stop(CLOSE.GOING_AWAY, 'agent stopping');
    this.connected = false;
  }

  state(now = Date.now()): LinkState {
    const since = this.socket.downSince;
    const last = this.socket.lastFailure;
    return {
      url: this.opts.url,
      connected: this.connected,
      ...(since !== undefined ? { downSince: new Date(since).toISOString(), downForMs: now - since } : {}),
      everConnected: this.socket.everReady,
      failures: this.connected ? 0 : this.socket.failures,
      ...(last && !this.connected ? { lastError: last.text } : {}),
    };
  }

  private sendHello(): void {
    this.send({ v: 1, type: 'hello', protocol: PROTOCOL_VERSION, node: this.opts.node, agentVersion: this.opts.version, collectors: this.opts.runner.names() });
  }

  private statuses() {
    return this.opts.runner.statuses().map((s) => ({ name: s.name, status: s.status, durationMs: s.durationMs, ...(s.detail ? { detail: s.detail.slice(0, 500) } : {}) }));
  }

  private send(msg: AgentMessage): void {
    this.socket.send(encode(msg));
  }

  private flush(): void {
    this.flushScheduled = false;
    if (!this.connected) return;
    if (this.pending.length > 0) {
      const transitions = this.pending.map((t) => ({ type: t.type, finding: t.finding }));
      this.pending = [];
      this.send({ v: 1, type: 'delta', transitions });
    }
    // After the delta: a refresh is never older than a transition it follows.
    if (this.refreshed.size > 0) {
      const findings = [...this.refreshed.values()];
      this.refreshed.clear();
      this.send({ v: 1, type: 'refresh', findings });
    }
  }

  private onMessage(raw: Buffer): void {
    const { log } = this.opts;
    let msg: AggregatorToAgent;
    try {
      msg = decodeAggregatorMessage<AggregatorToAgent>(raw);
    } catch (err) {
      this.socket.fail('error', `invalid message from the aggregator: ${err instanceof WireError ? err.reason : String(err)}`);
      return;
    }
    if (msg.type === 'welcome') {
      this.socket.markReady();
      this.connected = true;
      this.connects++;
      this.pending = [];
      this.refreshed.clear();
      // The whole active set first: whatever happened while we were away is in it.
      const findings = this.opts.runner.active();
      this.send({ v: 1, type: 'snapshot', findings });
      this.send({ v: 1, type: 'status', collectors: this.statuses() });
      const fields = { url: this.opts.url, findings: findings.length, failuresBefore: this.socket.failures };
      // Reconnecting after the same failure again and again: say so once, not on every round.
      if (this.quietConnect) log.debug(fields, 'connected to the aggregator');
      else log.info(fields, 'connected to the aggregator');
    } else if (msg.type === 'command') {
      if (this.opts.onCommand) this.opts.onCommand(msg, (reply) => this.send(reply));
    }
  }

  private onDown(f: LinkFailure, retryInMs: number): void {
    this.connected = false;
    const { log } = this.opts;
    const rejected = f.kind === 'closed' && f.wasReady && f.closeCode !== undefined && REJECTED.has(f.closeCode);
    const what =
      f.kind === 'http' && (f.httpStatus === 401 || f.httpStatus === 403)
        ? `the aggregator refused our token (${f.text}); the token file is read again before each attempt`
        : rejected
          ? `the aggregator rejected what we sent (${f.text})`
          : f.kind === 'heartbeat'
            ? `no pong from the aggregator for two heartbeats (${f.text})`
            : f.kind === 'no-ready'
              ? `the aggregator accepted the connection but sent no welcome (${f.text})`
              : f.wasReady
                ? `lost the aggregator (${f.text})`
                : `cannot reach the aggregator (${f.text})`;
    const key = `${f.kind} ${f.text}`;
    if (f.wasReady && f.readyForMs >= (this.opts.healthyAfterMs ?? 60_000)) this.loggedFailure = undefined; // a new outage
    const fields = { url: this.opts.url, retryInMs, failures: this.socket.failures, wasConnected: f.wasReady, ...(f.wasReady ? { connectedForMs: f.readyForMs } : {}) };
    // Coming back after an outage is news; coming back to be rejected again is not.
    this.quietConnect = rejected;
    if (key === this.loggedFailure) {
      this.repeats++;
      log.debug({ ...fields, repeats: this.repeats }, `${what}; will retry`);
      return;
    }
    this.loggedFailure = key;
    this.repeats = 0;
    if (f.kind === 'http' || rejected) log.error(fields, `${what}; will retry, backing off`);
    else log.warn(fields, `${what}; will retry`);
  }
}
