// The aggregator: agents stream findings in over WebSocket, tailers subscribe, admins send commands.
// Credentials are checked before the WebSocket upgrade; every message is validated. Every handler
// (HTTP route, upgrade, each message type, journal I/O) turns any failure into a refusal of that one
// request or connection, logged with a code and counted in nodewarden_aggregator_errors_total; the
// server and everyone else carry on. The limits it enforces are in DEFAULT_LIMITS (README, "Limits").
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { KNOWN_CHECKS } from '../protocol/checks.js';
import { NodewardenError, errnoCode, errorMessage } from '../protocol/errors.js';
import { renderMetrics, type Metric } from '../protocol/metrics.js';
import { encodePruneLine, type PruneLine } from '../protocol/prune-stream.js';
import {
  AGGREGATOR_FEATURES,
  CLOSE,
  FEATURES_HEADER,
  MAX_MESSAGE_BYTES,
  NODE_NAME,
  WireError,
  decodeAgentMessage,
  decodeTailerMessage,
  encode,
  matchesFilter,
  type AggregatorToAgent,
  type AggregatorToTailer,
  type TailFilter,
} from '../protocol/wire.js';
import { Authenticator, type Identity, type Token } from './auth.js';
import { Fleet, LimitError, type TimedTransition } from './fleet.js';
import { Journal } from './journal.js';
import type { KubeAgentAuth } from './kube-auth.js';
import { FINDING_STATES, SEVERITIES } from '../protocol/finding.js';

export interface AggregatorLimits {
  /** TCP connections open at once (agents, tailers, HTTP); more are dropped at accept. */
  maxConnections: number;
  /** From accept to a complete HTTP request or upgrade, and from upgrade to hello or subscribe. */
  handshakeTimeoutMs: number;
  /** An HTTP keep-alive connection idle this long is closed (WebSockets: two missed heartbeats). */
  idleTimeoutMs: number;
  maxFindingsPerNode: number;
  /** Distinct nodes one shared (not node-bound) agent token may speak for. */
  maxNodesPerToken: number;
  /** Serialized bytes of all active findings; a snapshot or delta that would pass it is refused. */
  maxActiveBytes: number;
  /** Serialized bytes of history (besides its count, --history). */
  maxHistoryBytes: number;
  /** The journal file's ceiling. */
  maxJournalBytes: number;
  /** The largest history or active chunk sent to a tailer (its own frame limit is 16 MiB). */
  chunkBytes: number;
  /** Bytes waiting for one tailer before it is dropped as too slow. */
  maxTailerBufferBytes: number;
}

export const DEFAULT_LIMITS: AggregatorLimits = {
  maxConnections: 10_000,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 5_000,
  maxFindingsPerNode: 2_000,
  maxNodesPerToken: 5_000,
  maxActiveBytes: 48 * 1024 * 1024,
  maxHistoryBytes: 24 * 1024 * 1024,
  maxJournalBytes: 48 * 1024 * 1024,
  chunkBytes: 1024 * 1024,
  maxTailerBufferBytes: 16 * 1024 * 1024,
};

export interface AggregatorOptions {
  host: string;
  port: number;
  tokens: Token[];
  tls?: { cert: string; key: string };
  journal?: string;
  historyLimit?: number;
  silentAfterMs?: number;
  heartbeatMs?: number;
  /** Sustained messages per second per connection, and the burst above it. */
  rateLimit?: { perSecond: number; burst: number };
  /** Longest a prune may take before the CLI is told it timed out. */
  commandTimeoutMs?: number;
  limits?: Partial<AggregatorLimits>;
  /** `--agent-auth kubernetes`: agents may also present a bound service-account token. */
  kubeAuth?: KubeAgentAuth;
  /** How often nodes without an agent are checked against the cluster (Kubernetes mode). */
  nodeSweepMs?: number;
  version: string;
  log: Logger;
}

/** Where a failure happened: the `where` label of nodewarden_aggregator_errors_total. */
type Where = 'http' | 'upgrade' | 'agent' | 'tailer' | 'journal' | 'tokens' | 'kubernetes' | 'process';
const CODES = new Set(['NW_ERR_CONFIG', 'NW_ERR_USAGE', 'NW_ERR_TIMEOUT', 'NW_ERR_RUNTIME', 'NW_ERR_PROTOCOL', 'NW_ERR_LIMIT', 'NW_ERR_IO', 'NW_ERR_INTERNAL']);

interface Conn {
  ws: WebSocket;
  alive: boolean;
  tokens: number;
  lastRefill: number;
  who: Identity;
  /** The token it presented, when it came from the token files: revoking it closes the connection. */
  secret?: string;
}

interface AgentConn extends Conn {
  node?: string;
}

interface TailConn extends Conn {
  filter?: TailFilter;
  subscribed?: boolean;
  /** Transitions held back while history and the active set are still being sent (they come after). */
  held?: string[];
  heldBytes?: number;
}

interface PendingCommand {
  node: string;
  res: http.ServerResponse;
  timer: NodeJS.Timeout;
}

/** TLS: forward-secret AEAD suites only (ECDHE with GCM or ChaCha20-Poly1305 in 1.2; 1.3's own). */
export const TLS_CIPHERS = ['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305', 'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256'].join(':');

/** A WebSocket close reason is at most 123 bytes; ws throws on more. */
function closeReason(text: string): string {
  let r = text.slice(0, 123);
  while (Buffer.byteLength(r) > 123) r = r.slice(0, -1);
  return r;
}

/** The `code` of an error for logs and metrics, from a known set. */
function codeOf(err: unknown): string {
  if (err instanceof NodewardenError || err instanceof LimitError) return err.code;
  if (err instanceof WireError) return 'NW_ERR_PROTOCOL';
  if (errnoCode(err)) return 'NW_ERR_IO';
  return 'NW_ERR_INTERNAL';
}

const message = (err: unknown) => errorMessage(err).slice(0, 300);

/** The TLS material, read with one-line errors that name the flag. */
function tlsOptions(tls: { cert: string; key: string }): https.ServerOptions {
  const read = (file: string, flag: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new NodewardenError('NW_ERR_CONFIG', `${flag} ${file}: cannot read it (${errnoCode(err) ?? 'error'})`);
    }
  };
  const cert = read(tls.cert, '--tls-cert');
  const key = read(tls.key, '--tls-key');
  if (!/-----BEGIN [A-Z ]*CERTIFICATE-----/.test(cert.toString('latin1'))) throw new NodewardenError('NW_ERR_CONFIG', `--tls-cert ${tls.cert}: not a PEM certificate`);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key.toString('latin1'))) throw new NodewardenError('NW_ERR_CONFIG', `--tls-key ${tls.key}: not a PEM private key`);
  const options = { cert, key, minVersion: 'TLSv1.2' as const, ciphers: TLS_CIPHERS, honorCipherOrder: true };
  try {
    createSecureContext(options);
  } catch (err) {
    const text = message(err);
    const flag = /key values mismatch/i.test(text) ? '--tls-key' : /key/i.test(text) ? '--tls-key' : '--tls-cert';
    throw new NodewardenError('NW_ERR_CONFIG', `${flag} ${flag === '--tls-key' ? tls.key : tls.cert}: ${/mismatch/i.test(text) ? 'the key does not match --tls-cert' : text.replace(/^error:[0-9A-F]+:/i, '')}`);
  }
  return options;
}

export class Aggregator {
  readonly fleet: Fleet;
  private readonly auth: Authenticator;
  private readonly server: http.Server;
  private readonly wss: WebSocketServer;
  private readonly agents = new Set<AgentConn>();
  private readonly byNode = new Map<string, AgentConn>();
  private readonly tailers = new Set<TailConn>();
  private readonly commands = new Map<string, PendingCommand>();
  /** Nodes each shared agent token has spoken for. */
  private readonly tokenNodes = new Map<string, Set<string>>();
  private readonly journal: Journal | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private sweep: NodeJS.Timeout | undefined;
  private readonly counters = {
    messages: 0,
    rejected: new Map<string, number>(),
    errors: new Map<string, number>(),
    transitions: 0,
    dropped: 0,
    tokenReloads: 0,
  };
  private readonly limits: AggregatorLimits;
  private readonly opts: Required<Omit<AggregatorOptions, 'tls' | 'journal' | 'kubeAuth' | 'limits'>> & Pick<AggregatorOptions, 'tls' | 'journal' | 'kubeAuth'>;

  constructor(opts: AggregatorOptions) {
    this.opts = {
      historyLimit: 10_000,
      silentAfterMs: 30_000,
      heartbeatMs: 10_000,
      rateLimit: { perSecond: 200, burst: 2000 },
      commandTimeoutMs: 15 * 60_000,
      nodeSweepMs: 5 * 60_000,
      ...opts,
    };
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.auth = new Authenticator(opts.tokens);
    this.fleet = new Fleet({
      historyLimit: this.opts.historyLimit,
      historyMaxBytes: this.limits.maxHistoryBytes,
      maxFindingsPerNode: this.limits.maxFindingsPerNode,
      maxActiveBytes: this.limits.maxActiveBytes,
      silentAfterMs: this.opts.silentAfterMs,
    });
    if (opts.journal) {
      this.journal = new Journal({
        file: opts.journal,
        maxBytes: this.limits.maxJournalBytes,
        state: () => ({ history: this.fleet.historyEntries(), nodes: this.fleet.state() }),
        onFailure: (code, err) => this.failed('journal', err, `journal ${opts.journal} cannot be written (${code}); serving on, retrying every 10 s`),
      });
      const fleet = this.fleet;
      const { records, skipped, repairedBytes } = this.journal.load({
        transition: (t) => fleet.restoreTransition(t),
        node: (n, info) => fleet.restoreNode(n, info),
        active: (f) => fleet.restoreActive(f),
        forget: (n) => fleet.forget(n),
      });
      this.fleet.restored();
      opts.log.info({ journal: opts.journal, records, skipped, repairedBytes, nodes: this.fleet.nodeCount(), history: this.fleet.historySize() }, 'journal loaded');
    }
    this.fleet.on('transition', (t: TimedTransition) => this.broadcast(t));
    this.fleet.on('forget', (node: string) => {
      for (const set of this.tokenNodes.values()) set.delete(node);
    });
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res);
    this.server = opts.tls ? https.createServer({ ...tlsOptions(opts.tls), handshakeTimeout: this.limits.handshakeTimeoutMs }, handler) : http.createServer(handler);
    this.server.maxConnections = this.limits.maxConnections;
    this.server.headersTimeout = this.limits.handshakeTimeoutMs;
    this.server.requestTimeout = 60_000;
    this.server.keepAliveTimeout = this.limits.idleTimeoutMs;
    this.server.on('drop', () => this.counters.dropped++);
    // With TLS the deadline goes on the TLS socket (the one ws and requests see); the TLS handshake has its own.
    this.server.on(opts.tls ? 'secureConnection' : 'connection', (socket: Socket) => this.onConnection(socket));
    this.server.on('clientError', (err: Error, socket: Duplex) => this.onClientError(err, socket));
    this.server.on('tlsClientError', () => this.reject('tls handshake'));
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
    // Agents learn from the upgrade response which optional messages we take (old agents ignore the header).
    this.wss.on('headers', (headers: string[], req: http.IncomingMessage) => {
      if ((req.url ?? '').split('?')[0] === '/api/agent') headers.push(`${FEATURES_HEADER}: ${AGGREGATOR_FEATURES.join(', ')}`);
    });
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      this.upgrade(req, socket, head).catch((err) => {
        this.failed('upgrade', err);
        socket.destroy();
      });
    });
  }

  async start(): Promise<{ host: string; port: number; url: string }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.server.on('error', (err) => this.failed('http', err));
    this.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatMs);
    this.heartbeat.unref();
    if (this.opts.kubeAuth) {
      this.sweep = setInterval(() => void this.sweepDeletedNodes(), this.opts.nodeSweepMs);
      this.sweep.unref();
    }
    const addr = this.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : this.opts.port;
    const scheme = this.opts.tls ? 'wss' : 'ws';
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    this.opts.log.info({ host: this.opts.host, port, tls: Boolean(this.opts.tls), limits: this.limits }, 'aggregator listening');
    return { host: this.opts.host, port, url: `${scheme}://${host}:${port}` };
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    clearInterval(this.sweep);
    for (const c of [...this.agents, ...this.tailers]) c.ws.close(CLOSE.GOING_AWAY, 'aggregator shutting down');
    for (const id of [...this.commands.keys()]) this.finishCommand(id, { type: 'error', message: 'aggregator shutting down' });
    this.fleet.close();
    this.journal?.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
  }

  /** New tokens from the token directory (a changed Secret, SIGHUP): effective for the next connection. */
  replaceTokens(tokens: Token[]): void {
    this.auth.replace(tokens);
    this.counters.tokenReloads++;
    this.opts.log.info({ tokens: tokens.length }, 'tokens reloaded');
    // A revoked token stops working at once, for connections already open too.
    const still = new Set(tokens.map((t) => `${t.role}\0${t.secret}`));
    for (const c of [...this.agents, ...this.tailers]) {
      if (c.secret !== undefined && !still.has(`${c.who.role}\0${c.secret}`)) this.close(c, CLOSE.UNAUTHORIZED, 'the token of this connection was revoked');
    }
  }

  /** Logs a failure with its code and counts it; the caller refuses what failed. */
  failed(where: Where, err: unknown, what?: string): void {
    const code = codeOf(err);
    const key = `${where}\0${CODES.has(code) ? code : 'NW_ERR_INTERNAL'}`;
    this.counters.errors.set(key, (this.counters.errors.get(key) ?? 0) + 1);
    const level = code === 'NW_ERR_INTERNAL' ? 'error' : 'warn';
    this.opts.log[level]({ where, code, err: message(err) }, what ?? `${where} failed; refused it and serving on`);
  }

  // ---- connections ----

  /** Every socket has a deadline until it has sent a complete request or upgraded (ws clears it then). */
  private onConnection(socket: Socket): void {
    socket.setTimeout(this.limits.handshakeTimeoutMs);
    socket.once('timeout', () => {
      this.reject('handshake timeout');
      socket.destroy();
    });
  }

  private onClientError(err: Error, socket: Duplex): void {
    const code = (err as { code?: string }).code ?? '';
    this.reject(code === 'HPE_HEADER_OVERFLOW' ? 'http 431' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'http 408' : 'http 400');
    if (!socket.writable || code === 'ECONNRESET') return void socket.destroy();
    const status = code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  }

  private reject(reason: string): void {
    this.counters.rejected.set(reason, (this.counters.rejected.get(reason) ?? 0) + 1);
  }

  private close(conn: Conn, code: number, reason: string): void {
    this.reject(`close ${code}`);
    this.opts.log.warn({ who: conn.who.name, node: (conn as AgentConn).node, code, reason }, 'closing connection');
    try {
      conn.ws.close(code, closeReason(reason));
    } catch {
      conn.ws.terminate();
    }
    setTimeout(() => conn.ws.terminate(), 1000).unref();
  }

  /** Token bucket per connection; false when the client floods. */
  private admit(conn: Conn): boolean {
    const now = Date.now();
    conn.tokens = Math.min(this.opts.rateLimit.burst, conn.tokens + ((now - conn.lastRefill) / 1000) * this.opts.rateLimit.perSecond);
    conn.lastRefill = now;
    if (conn.tokens < 1) return false;
    conn.tokens -= 1;
    return true;
  }

  /** Counts, rate-limits and decodes one message; on a bad one, closes with its reason and returns undefined. */
  private receive<T>(conn: Conn, raw: Buffer, decode: (raw: Buffer) => T): T | undefined {
    this.counters.messages++;
    if (!this.admit(conn)) {
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
  private guard(conn: Conn, where: 'agent' | 'tailer', fn: () => void): void {
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

  private async upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?')[0];
    const role = path === '/api/agent' ? 'agent' : path === '/api/tail' ? 'tail' : undefined;
    const reject = (status: number, text: string) => {
      this.reject(`upgrade ${status}`);
      if (socket.writable) socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      socket.destroy();
    };
    if (!role) return reject(404, 'no such endpoint');
    let who: Identity | undefined = this.auth.identify(req.headers.authorization);
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    // Rejected before a single message is read.
    if (!who && role === 'agent' && this.opts.kubeAuth && bearer) {
      const review = await this.opts.kubeAuth.review(bearer);
      if (!review.ok) {
        if (review.status === 503) this.failed('kubernetes', new NodewardenError('NW_ERR_RUNTIME', review.reason));
        return reject(review.status, review.reason);
      }
      who = review.identity;
      if (socket.destroyed) return;
    }
    if (!who || !Authenticator.allows(who, role)) return reject(401, `a valid ${role} bearer token is required`);
    const identity = { role: who.role, name: who.name, ...((who as Identity).node ? { node: (who as Identity).node! } : {}) };
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const secret = (who as Partial<Token>).secret;
      const conn = { ws, alive: true, tokens: this.opts.rateLimit.burst, lastRefill: Date.now(), who: identity, ...(secret ? { secret } : {}) };
      ws.on('pong', () => (conn.alive = true));
      ws.on('error', () => ws.terminate());
      if (role === 'agent') this.onAgent(conn);
      else this.onTailer(conn);
    });
  }

  private onAgent(conn: AgentConn): void {
    this.agents.add(conn);
    const helloTimer = setTimeout(() => this.close(conn, CLOSE.MALFORMED, `expected hello within ${this.limits.handshakeTimeoutMs} ms`), this.limits.handshakeTimeoutMs);
    conn.ws.on('message', (raw: Buffer) =>
      this.guard(conn, 'agent', () => {
        const msg = this.receive(conn, raw, decodeAgentMessage);
        if (!msg) return;
        if (msg.type === 'hello') {
          clearTimeout(helloTimer);
          return this.hello(conn, msg.node, msg.agentVersion, msg.collectors);
        }
        const node = conn.node;
        if (!node) return this.close(conn, CLOSE.MALFORMED, `expected hello first, got ${msg.type}`);
        this.fleet.touch(node);
        switch (msg.type) {
          case 'snapshot':
          case 'delta':
          case 'refresh': {
            const findings = msg.type === 'delta' ? msg.transitions.map((t) => t.finding) : msg.findings;
            const stranger = findings.find((f) => f.node !== node);
            if (stranger) return this.close(conn, CLOSE.MALFORMED, `finding for node ${stranger.node} on ${node}'s connection`);
            if (msg.type === 'snapshot') this.fleet.applySnapshot(node, msg.findings);
            else if (msg.type === 'delta') this.fleet.applyDelta(node, msg.transitions);
            else this.fleet.applyRefresh(node, msg.findings);
            return;
          }
          case 'status':
            this.fleet.setStatus(node, msg.collectors);
            return;
          case 'progress':
          case 'result': {
            const cmd = this.commands.get(msg.commandId);
            if (!cmd || cmd.node !== node) return; // a late answer to a command we gave up on
            if (msg.type === 'progress') cmd.res.write(encodePruneLine({ type: 'progress', ...msg.progress }));
            else this.finishCommand(msg.commandId, { type: 'result', ...msg.result });
            return;
          }
        }
      }),
    );
    conn.ws.on('close', () => {
      clearTimeout(helloTimer);
      this.agents.delete(conn);
      if (conn.node && this.byNode.get(conn.node) === conn) {
        this.byNode.delete(conn.node);
        this.fleet.disconnect(conn.node);
        this.opts.log.warn({ node: conn.node }, 'agent disconnected');
        for (const [id, cmd] of this.commands) if (cmd.node === conn.node) this.finishCommand(id, { type: 'error', message: `the agent on ${conn.node} disconnected during the command` });
      }
    });
  }

  /**
   * A node-bound credential speaks only for its node; a shared token for at most maxNodesPerToken
   * nodes, and never in place of a node-bound agent that is connected.
   */
  private hello(conn: AgentConn, node: string, agentVersion: string, collectors: string[]): void {
    if (conn.node) return this.close(conn, CLOSE.MALFORMED, 'hello sent twice');
    const bound = conn.who.node;
    if (bound !== undefined && bound !== node) return this.close(conn, CLOSE.FORBIDDEN, `this credential speaks for node ${bound}, not ${node}`);
    const previous = this.byNode.get(node);
    if (bound === undefined) {
      if (previous?.who.node === node) return this.close(conn, CLOSE.FORBIDDEN, `node ${node} has a node-bound agent connected; a shared token cannot replace it`);
      let nodes = this.tokenNodes.get(conn.who.name);
      if (!nodes) this.tokenNodes.set(conn.who.name, (nodes = new Set()));
      if (!nodes.has(node)) {
        if (nodes.size >= this.limits.maxNodesPerToken) return this.close(conn, CLOSE.FORBIDDEN, `token ${conn.who.name} already speaks for ${nodes.size} nodes, its limit`);
        nodes.add(node);
      }
    }
    if (previous && previous !== conn) this.close(previous, CLOSE.REPLACED, `another agent connected for node ${node}`);
    conn.node = node;
    this.byNode.set(node, conn);
    this.fleet.connect(node, { agentVersion, collectors });
    this.send(conn.ws, { v: 1, type: 'welcome', aggregatorVersion: this.opts.version });
    this.opts.log.info({ node, agentVersion, who: conn.who.name, bound: bound !== undefined }, 'agent connected');
    // In Kubernetes mode a shared token may speak only for nodes that exist: checked after the welcome
    // (the agent's first messages are not held up), and a made-up node is refused and forgotten.
    const kube = this.opts.kubeAuth;
    if (kube && bound === undefined) {
      void kube.nodeExists(node).then((exists) => {
        if (exists !== false || this.byNode.get(node) !== conn) return;
        this.close(conn, CLOSE.FORBIDDEN, `node ${node} does not exist in the cluster`);
        this.forgetNode(node, `a shared token (${conn.who.name}) said hello for it, but no such node exists`);
      });
    }
  }

  private onTailer(conn: TailConn): void {
    this.tailers.add(conn);
    const subTimer = setTimeout(() => this.close(conn, CLOSE.MALFORMED, `expected subscribe within ${this.limits.handshakeTimeoutMs} ms`), this.limits.handshakeTimeoutMs);
    conn.ws.on('message', (raw: Buffer) =>
      this.guard(conn, 'tailer', () => {
        const msg = this.receive(conn, raw, decodeTailerMessage);
        if (!msg) return;
        clearTimeout(subTimer);
        // One subscription per connection: a re-subscribe would mean a second copy of everything.
        if (conn.subscribed) return this.close(conn, CLOSE.LIMIT, 'one subscribe per connection; reconnect to change the filter');
        conn.subscribed = true;
        const filter = msg.filter ?? {};
        conn.filter = filter;
        const history = msg.sinceMs === undefined ? [] : [...this.fleet.historyEntries()].filter((t) => Date.parse(t.at) >= msg.sinceMs! && matchesFilter(t.finding, filter));
        this.sendInitial(conn, history, this.fleet.active(filter));
      }),
    );
    conn.ws.on('close', () => {
      clearTimeout(subTimer);
      this.tailers.delete(conn);
    });
  }

  /**
   * History, then the active set, in chunks of at most chunkBytes (far under the tailer's 16 MiB
   * frame limit), each sent once the previous one is written: neither sits in memory once per tailer.
   * Live transitions wait until both are complete.
   */
  private sendInitial(conn: TailConn, history: readonly TimedTransition[], active: readonly object[]): void {
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
        while (offset < p.items.length && (chunk.length === 0 || bytes < this.limits.chunkBytes)) {
          const text = JSON.stringify(p.items[offset]);
          if (chunk.length > 0 && bytes + text.length > this.limits.chunkBytes) break;
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
        this.failed('tailer', e);
        this.close(conn, CLOSE.INTERNAL, 'the aggregator could not send the active set; see its log');
      }
    };
    next();
  }

  private send(ws: WebSocket, msg: AggregatorToAgent | AggregatorToTailer): void {
    if (ws.readyState === ws.OPEN) ws.send(encode(msg));
  }

  private broadcast(t: TimedTransition): void {
    this.counters.transitions++;
    this.journal?.append(t);
    let text: string | undefined;
    for (const c of this.tailers) {
      if (!c.filter || !matchesFilter(t.finding, c.filter)) continue;
      if (c.ws.bufferedAmount > this.limits.maxTailerBufferBytes) {
        this.close(c, CLOSE.POLICY, `tailer too slow: more than ${Math.round(this.limits.maxTailerBufferBytes / 1048576)} MiB waiting`);
        continue;
      }
      text ??= encode({ v: 1, type: 'transition', transition: t });
      if (c.held) {
        if ((c.heldBytes ?? 0) + text.length > this.limits.maxTailerBufferBytes) this.close(c, CLOSE.POLICY, 'tailer too slow: its active set is not read');
        else {
          c.held.push(text);
          c.heldBytes = (c.heldBytes ?? 0) + text.length;
        }
      } else if (c.ws.readyState === c.ws.OPEN) c.ws.send(text);
    }
  }

  private beat(): void {
    for (const c of [...this.agents, ...this.tailers]) {
      if (!c.alive) {
        this.opts.log.warn({ who: c.who.name, node: (c as AgentConn).node }, 'heartbeat missed; dropping connection');
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

  /** Kubernetes mode: nodes without an agent that no longer exist in the cluster are forgotten. */
  private async sweepDeletedNodes(): Promise<void> {
    const kube = this.opts.kubeAuth;
    if (!kube) return;
    for (const info of this.fleet.nodeInfos()) {
      if (info.connected) continue;
      const exists = await kube.nodeExists(info.node);
      if (exists === false && !this.byNode.has(info.node)) this.forgetNode(info.node, 'deleted from the cluster');
    }
  }

  private forgetNode(node: string, why: string): boolean {
    const known = this.fleet.forget(node);
    if (known) {
      this.journal?.append({ type: 'forget', node });
      this.opts.log.info({ node, why }, 'node forgotten');
    }
    return known;
  }

  // ---- HTTP ----

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) return void res.end();
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    // A request arrived: the handshake deadline no longer applies (keep-alive idling is Node's keepAliveTimeout).
    req.socket.setTimeout(0);
    req.on('error', () => undefined); // a body cut off midway: the route sees it end early
    res.on('error', () => undefined);
    this.route(req, res).catch((err) => {
      this.failed('http', err);
      if (!res.headersSent) this.json(res, err instanceof LimitError ? 429 : 500, { error: err instanceof LimitError ? err.message : 'internal error; see the aggregator log' });
      else res.destroy();
    });
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    let url: URL;
    try {
      if (!target.startsWith('/') || target.startsWith('//')) throw new Error('not origin-form');
      url = new URL(target, 'http://aggregator');
    } catch {
      this.reject('http 400');
      return this.json(res, 400, { error: 'the request target must be a path such as /api/findings' });
    }
    const path = url.pathname;
    if (path === '/healthz') {
      const journal = this.journal?.health();
      return this.json(res, 200, { status: journal && !journal.ok ? 'degraded' : 'ok', nodes: this.fleet.nodeCount(), agents: this.byNode.size, tailers: this.tailers.size, ...(journal ? { journal } : {}) });
    }
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(this.metrics());
    }
    const token = this.auth.identify(req.headers.authorization);
    if (path === '/api/findings' || path === '/api/nodes') {
      if (req.method !== 'GET') return this.json(res, 405, { error: 'GET only' });
      if (!Authenticator.allows(token, 'tail')) return this.json(res, 401, { error: 'a tail or admin bearer token is required' });
      if (path === '/api/nodes') return this.json(res, 200, this.fleet.nodeInfos());
      const filter: TailFilter = {};
      for (const k of ['node', 'check', 'severity', 'state'] as const) {
        const v = url.searchParams.get(k);
        if (v) (filter as Record<string, string>)[k] = v; // severity and state are checked just below
      }
      if (filter.severity && !(SEVERITIES as readonly string[]).includes(filter.severity)) return this.json(res, 400, { error: 'severity must be info, warning or critical' });
      if (filter.state && !(FINDING_STATES as readonly string[]).includes(filter.state)) return this.json(res, 400, { error: 'state must be firing or resolved' });
      const items = filter.state === 'resolved' ? this.fleet.historySince(0, filter).filter((t) => t.type === 'resolved').map((t) => t.finding) : this.fleet.active(filter);
      return this.streamArray(res, items);
    }
    const nodePath = /^\/api\/nodes\/([^/]+)(\/prune)?$/.exec(path);
    if (nodePath) {
      let node: string;
      try {
        node = decodeURIComponent(nodePath[1]!);
      } catch {
        return this.json(res, 400, { error: 'the node name is not valid percent-encoding' });
      }
      if (!NODE_NAME.test(node)) return this.json(res, 400, { error: 'not a node name' });
      if (nodePath[2]) {
        if (req.method !== 'POST') return this.json(res, 405, { error: 'POST only' });
        if (!Authenticator.allows(token, 'admin')) return this.json(res, token ? 403 : 401, { error: 'an admin bearer token is required' });
        return this.startPrune(node, req, res, token!.name);
      }
      if (req.method !== 'DELETE') return this.json(res, 405, { error: 'DELETE only (forget a node)' });
      if (!Authenticator.allows(token, 'admin')) return this.json(res, token ? 403 : 401, { error: 'an admin bearer token is required' });
      if (this.byNode.has(node)) return this.json(res, 409, { error: `an agent is connected for ${node}; stop it first, or it comes right back` });
      if (!this.forgetNode(node, `forgotten by ${token!.name}`)) return this.json(res, 404, { error: `no node ${node} is known` });
      return this.json(res, 200, { forgotten: node });
    }
    return this.json(res, 404, { error: 'no such endpoint' });
  }

  /**
   * A JSON array written item by item, waiting for the socket to drain: the response never sits whole
   * in memory, however many findings there are and however many clients ask at once.
   */
  private async streamArray(res: http.ServerResponse, items: readonly object[]): Promise<void> {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    const drained = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    let batch = '[';
    for (let i = 0; i < items.length; i++) {
      batch += `${i > 0 ? ',' : ''}${JSON.stringify(items[i])}`;
      if (batch.length >= 64 * 1024) {
        if (res.destroyed) return;
        if (!res.write(batch)) await drained();
        batch = '';
      }
    }
    res.end(`${batch}]`);
  }

  private async startPrune(node: string, req: http.IncomingMessage, res: http.ServerResponse, who: string): Promise<void> {
    let body = '';
    try {
      for await (const chunk of req) {
        body += chunk;
        if (body.length > 4096) return this.json(res, 413, { error: 'request body too large' });
      }
    } catch {
      this.reject('http body');
      return void res.destroy(); // cut off midway: there is no one to answer
    }
    if (!req.complete) return void res.destroy();
    let args: { untilMs?: unknown; dryRun?: unknown };
    try {
      const parsed: unknown = body ? JSON.parse(body) : {};
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      args = parsed as typeof args;
    } catch {
      return this.json(res, 400, { error: 'body must be JSON: {"untilMs": N, "dryRun": bool}' });
    }
    const untilMs = args.untilMs ?? 72 * 3_600_000;
    if (typeof untilMs !== 'number' || !Number.isFinite(untilMs) || untilMs < 0) return this.json(res, 400, { error: 'untilMs must be a number of milliseconds >= 0' });
    if (args.dryRun !== undefined && typeof args.dryRun !== 'boolean') return this.json(res, 400, { error: 'dryRun must be true or false' });
    const agent = this.byNode.get(node);
    if (!agent) return this.json(res, 404, { error: `no agent is connected for node ${node}` });
    if ([...this.commands.values()].some((c) => c.node === node)) return this.json(res, 409, { error: `a prune is already running on ${node}` });
    const id = randomUUID();
    const dryRun = args.dryRun === true;
    this.opts.log.info({ node, commandId: id, requestedBy: who, untilMs, dryRun }, 'prune requested');
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.write(encodePruneLine({ type: 'accepted', commandId: id, node, untilMs, dryRun }));
    const timer = setTimeout(() => this.finishCommand(id, { type: 'error', message: `no result from ${node} within ${this.opts.commandTimeoutMs} ms` }), this.opts.commandTimeoutMs);
    this.commands.set(id, { node, res, timer });
    res.on('close', () => {
      if (this.commands.has(id)) this.opts.log.warn({ node, commandId: id }, 'prune requester went away; the agent carries on');
    });
    this.send(agent.ws, { v: 1, type: 'command', id, command: 'prune', untilMs, dryRun, requestedBy: who });
  }

  private finishCommand(id: string, last: Extract<PruneLine, { type: 'result' | 'error' }>): void {
    const cmd = this.commands.get(id);
    if (!cmd) return;
    this.commands.delete(id);
    clearTimeout(cmd.timer);
    this.opts.log.info({ node: cmd.node, commandId: id, outcome: last }, 'prune finished');
    cmd.res.end(encodePruneLine(last));
  }

  private metrics(): string {
    // Only when run with --expose-gc (benchmarks): report the live heap, not garbage awaiting collection.
    (globalThis as { gc?: () => void }).gc?.();
    const nodes = this.fleet.connectedNodes();
    // Label values from known sets only: a check name an agent made up is counted as "other".
    const byCheck = new Map<string, number>();
    for (const c of this.fleet.countsByCheck()) {
      const key = `${KNOWN_CHECKS.has(c.check) ? c.check : 'other'}\0${c.severity}`;
      byCheck.set(key, (byCheck.get(key) ?? 0) + c.count);
    }
    const journal = this.journal?.health();
    const bytes = this.fleet.bytes();
    const metrics: Metric[] = [
      { name: 'nodewarden_aggregator_nodes', help: 'Nodes known, by whether their agent is connected', type: 'gauge', samples: [{ labels: { connected: 'true' }, value: nodes.connected }, { labels: { connected: 'false' }, value: nodes.total - nodes.connected }] },
      // By check and severity only: a node label would be one series per node and check (per-node detail is /api/findings).
      { name: 'nodewarden_aggregator_findings', help: 'Active findings in the cluster by check and severity', type: 'gauge', samples: [...byCheck].map(([k, value]) => { const [check, severity] = k.split('\0') as [string, string]; return { labels: { check, severity }, value }; }) },
      { name: 'nodewarden_aggregator_tailers', help: 'Connected tailers', type: 'gauge', samples: [{ labels: {}, value: this.tailers.size }] },
      { name: 'nodewarden_aggregator_tailer_buffered_bytes', help: 'Bytes waiting to be sent to tailers', type: 'gauge', samples: [{ labels: {}, value: [...this.tailers].reduce((n, c) => n + c.ws.bufferedAmount, 0) }] },
      { name: 'nodewarden_aggregator_messages_total', help: 'Messages received from agents and tailers', type: 'counter', samples: [{ labels: {}, value: this.counters.messages }] },
      { name: 'nodewarden_aggregator_transitions_total', help: 'Finding transitions fanned out', type: 'counter', samples: [{ labels: {}, value: this.counters.transitions }] },
      { name: 'nodewarden_aggregator_rejected_total', help: 'Connections and messages rejected, by reason', type: 'counter', samples: [...this.counters.rejected].map(([reason, v]) => ({ labels: { reason }, value: v })) },
      { name: 'nodewarden_aggregator_errors_total', help: 'Requests, connections and writes that failed and were refused, by where and error code', type: 'counter', samples: [...this.counters.errors].map(([k, v]) => { const [where, code] = k.split('\0') as [string, string]; return { labels: { where, code }, value: v }; }) },
      { name: 'nodewarden_aggregator_connections_dropped_total', help: 'Connections dropped at accept because maxConnections were open', type: 'counter', samples: [{ labels: {}, value: this.counters.dropped }] },
      { name: 'nodewarden_aggregator_token_reloads_total', help: 'Times a changed token directory was loaded', type: 'counter', samples: [{ labels: {}, value: this.counters.tokenReloads }] },
      { name: 'nodewarden_aggregator_active_bytes', help: 'Serialized bytes of all active findings held', type: 'gauge', samples: [{ labels: {}, value: bytes.active }] },
      { name: 'nodewarden_aggregator_history_bytes', help: 'Serialized bytes of the history held', type: 'gauge', samples: [{ labels: {}, value: bytes.history }] },
      ...(journal
        ? [
            { name: 'nodewarden_aggregator_journal_ok', help: '1 when the journal is being written, 0 while writes fail', type: 'gauge' as const, samples: [{ labels: {}, value: journal.ok ? 1 : 0 }] },
            { name: 'nodewarden_aggregator_journal_write_failures_total', help: 'Journal writes that failed', type: 'counter' as const, samples: [{ labels: {}, value: journal.writeFailures }] },
            { name: 'nodewarden_aggregator_journal_bytes', help: 'Size of the journal file', type: 'gauge' as const, samples: [{ labels: {}, value: journal.bytes }] },
          ]
        : []),
      { name: 'nodewarden_aggregator_heap_used_bytes', help: 'V8 heap in use', type: 'gauge', samples: [{ labels: {}, value: process.memoryUsage().heapUsed }] },
      { name: 'nodewarden_aggregator_resident_memory_bytes', help: 'Resident memory of the aggregator', type: 'gauge', samples: [{ labels: {}, value: process.memoryUsage().rss }] },
      { name: 'nodewarden_aggregator_history_size', help: 'Transitions kept in history', type: 'gauge', samples: [{ labels: {}, value: this.fleet.historySize() }] },
    ];
    return renderMetrics(metrics);
  }
}
