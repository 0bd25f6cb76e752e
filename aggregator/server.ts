// The aggregator: agents stream findings in over WebSocket, tailers subscribe, admins send commands.
// This file is the HTTP(S) server and the wiring: routes, the WebSocket upgrade with its credentials
// (checked before the upgrade), and the parts that do each job: agents.ts (the agent protocol),
// tailers.ts (fan-out to tailers), commands.ts (prune brokering), connections.ts (what every
// WebSocket peer goes through), limits.ts (the bounds, docs/reference.md "Limits"), metrics.ts (/metrics),
// and the web view: web.ts (its files, CSP), sessions.ts (cookie sessions for browsers), web-feed.ts
// (one live socket per tab).
// Every handler (HTTP route, upgrade, each message type, journal I/O) turns any failure into a refusal
// of that one request or connection, logged with a code and counted in
// nodewarden_aggregator_errors_total; the server and everyone else carry on.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Logger } from 'pino';
import { NodewardenError, errnoCode, errorMessage } from '../protocol/errors.js';
import { AGGREGATOR_FEATURES, CLOSE, FEATURES_HEADER, MAX_MESSAGE_BYTES, NODE_NAME, type TailFilter } from '../protocol/wire.js';
import { FINDING_STATES, SEVERITIES } from '../protocol/finding.js';
import { Agents } from './agents.js';
import { Authenticator, type Identity, type Token } from './auth.js';
import { CommandBroker, parsePruneRequest } from './commands.js';
import { listenFailure } from '../protocol/address.js';
import { ConnectionGate } from './gate.js';
import { Connections } from './connections.js';
import { Fleet, LimitError, type TimedTransition } from './fleet.js';
import { Journal } from './journal.js';
import type { KubeAgentAuth } from './kube-auth.js';
import { resolveLimits, type AggregatorLimits, type RateLimit } from './limits.js';
import { AggregatorCounters, renderAggregatorMetrics, type Where } from './metrics.js';
import { Tailers } from './tailers.js';
import { CSRF_HEADER, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_TTL_MS, Sessions, sameOrigin, type Session } from './sessions.js';
import { SECURITY_HEADERS, defaultWebDir, loadWebAssets, type WebAsset } from './web.js';
import { WebFeed } from './web-feed.js';

/** The web view's settings (docs/reference.md, "Web view"). */
export interface WebOptions {
  /** Where the built page is (default: dist/web of this package); no files means no page, the API stays. */
  dir?: string;
  sessionTtlMs: number;
  maxSessions: number;
  /** How often a tab gets its coalesced delta. */
  flushMs: number;
  /** Changes one tab may have queued before it gets a fresh snapshot instead. */
  maxPending: number;
  /** Open tabs at once; more are refused (503). */
  maxTabs: number;
}

export const DEFAULT_WEB: WebOptions = { sessionTtlMs: DEFAULT_SESSION_TTL_MS, maxSessions: DEFAULT_MAX_SESSIONS, flushMs: 250, maxPending: 5_000, maxTabs: 256 };

/** The largest login or prune request body. */
const MAX_SMALL_BODY = 4096;

/** Reads a small request body; 'too large' past `max`, 'cut' when the peer went away mid-body. */
async function readSmallBody(req: http.IncomingMessage, max: number): Promise<string | { refused: 'too large' | 'cut' }> {
  let body = '';
  try {
    for await (const chunk of req) {
      body += chunk;
      if (body.length > max) return { refused: 'too large' };
    }
  } catch {
    return { refused: 'cut' };
  }
  return req.complete ? body : { refused: 'cut' };
}

export { DEFAULT_LIMITS, type AggregatorLimits } from './limits.js';

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
  rateLimit?: RateLimit;
  /** Longest a prune may take before the CLI is told it timed out. */
  commandTimeoutMs?: number;
  limits?: Partial<AggregatorLimits>;
  /** `--agent-auth kubernetes`: agents may also present a bound service-account token. */
  kubeAuth?: KubeAgentAuth;
  /** How often nodes without an agent are checked against the cluster (Kubernetes mode). */
  nodeSweepMs?: number;
  web?: Partial<WebOptions>;
  version: string;
  log: Logger;
}

/** TLS: forward-secret AEAD suites only (ECDHE with GCM or ChaCha20-Poly1305 in 1.2; 1.3's own). */
export const TLS_CIPHERS = ['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305', 'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256'].join(':');

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
  private readonly counters = new AggregatorCounters();
  private readonly connections: Connections;
  private readonly agents: Agents;
  private readonly tailers: Tailers;
  private readonly commands: CommandBroker;
  private readonly journal: Journal | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private sweep: NodeJS.Timeout | undefined;
  private readonly limits: AggregatorLimits;
  private readonly gate: ConnectionGate;
  private readonly sessions: Sessions;
  readonly web: WebFeed;
  private readonly webOptions: WebOptions;
  private readonly assets: Map<string, WebAsset>;
  private readonly opts: Required<Omit<AggregatorOptions, 'tls' | 'journal' | 'kubeAuth' | 'limits' | 'web'>> & Pick<AggregatorOptions, 'tls' | 'journal' | 'kubeAuth'>;

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
    this.limits = resolveLimits(opts.limits);
    this.auth = new Authenticator(opts.tokens);
    this.fleet = new Fleet({
      historyLimit: this.opts.historyLimit,
      historyMaxBytes: this.limits.maxHistoryBytes,
      maxFindingsPerNode: this.limits.maxFindingsPerNode,
      maxActiveBytes: this.limits.maxActiveBytes,
      silentAfterMs: this.opts.silentAfterMs,
    });
    this.connections = new Connections({ log: opts.log, counters: this.counters, rateLimit: this.opts.rateLimit });
    this.commands = new CommandBroker({ timeoutMs: this.opts.commandTimeoutMs, log: opts.log });
    this.tailers = new Tailers({ fleet: this.fleet, connections: this.connections, limits: this.limits });
    this.webOptions = { ...DEFAULT_WEB, ...opts.web };
    this.sessions = new Sessions({ ttlMs: this.webOptions.sessionTtlMs, max: this.webOptions.maxSessions });
    this.web = new WebFeed({ fleet: this.fleet, connections: this.connections, flushMs: this.webOptions.flushMs, maxPending: this.webOptions.maxPending, maxBufferedBytes: 1024 * 1024, tickMs: 5_000, handshakeTimeoutMs: this.limits.handshakeTimeoutMs });
    this.assets = loadWebAssets(this.webOptions.dir ?? defaultWebDir());
    this.agents = new Agents({
      fleet: this.fleet,
      connections: this.connections,
      commands: this.commands,
      limits: this.limits,
      ...(opts.kubeAuth ? { kubeAuth: opts.kubeAuth } : {}),
      version: opts.version,
      forget: (node, why) => this.forgetNode(node, why),
      onClaim: (token, node) => this.journal?.append({ type: 'claim', token, node }),
      log: opts.log,
    });
    if (opts.journal) {
      this.journal = new Journal({
        file: opts.journal,
        maxBytes: this.limits.maxJournalBytes,
        writeTimeoutMs: this.limits.journalWriteTimeoutMs,
        state: () => ({ history: this.fleet.historyEntries(), nodes: this.fleet.state(), claims: this.agents.claims() }),
        onFailure: (code, err) => this.failed('journal', err, `journal ${opts.journal} cannot be written (${code}); serving on, retrying every 10 s`),
      });
      const fleet = this.fleet;
      const { records, skipped, repairedBytes } = this.journal.load({
        transition: (t) => fleet.restoreTransition(t),
        node: (n, info) => fleet.restoreNode(n, info),
        active: (f) => fleet.restoreActive(f),
        forget: (n) => fleet.forget(n),
        claim: (token, node) => this.agents.restoreClaim(token, node),
      });
      this.fleet.restored();
      opts.log.info({ journal: opts.journal, records, skipped, repairedBytes, nodes: this.fleet.nodeCount(), history: this.fleet.historySize() }, 'journal loaded');
    }
    this.fleet.on('transition', (t: TimedTransition) => {
      this.counters.transitions++;
      this.journal?.append(t);
      this.tailers.broadcast(t);
    });
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res);
    // Node checks headersTimeout only every connectionsCheckingInterval (30 s by default): check every second.
    const httpOptions = { headersTimeout: this.limits.handshakeTimeoutMs, requestTimeout: 60_000, keepAliveTimeout: this.limits.idleTimeoutMs, connectionsCheckingInterval: 1_000 };
    this.server = opts.tls ? https.createServer({ ...tlsOptions(opts.tls), ...httpOptions, handshakeTimeout: this.limits.handshakeTimeoutMs }, handler) : http.createServer(httpOptions, handler);
    this.gate = new ConnectionGate({ maxConnections: this.limits.maxConnections, maxUnauthenticated: this.limits.maxUnauthenticated, maxUnauthenticatedPerAddress: this.limits.maxUnauthenticatedPerAddress, deadlineMs: this.limits.handshakeTimeoutMs, counters: this.counters });
    // Every TCP connection (TLS or not) goes through the gate at accept: an absolute deadline for the
    // TLS handshake plus the whole request head or upgrade, and the unauthenticated pool's bounds.
    this.server.on('connection', (socket: Socket) => this.gate.admit(socket));
    this.server.on('clientError', (err: Error, socket: Duplex) => this.onClientError(err, socket));
    // With a 'tlsClientError' listener Node leaves the socket to us: without destroy() a peer that never
    // sends a ClientHello (or goes away during the handshake) stays in CLOSE-WAIT for ever.
    this.server.on('tlsClientError', (_err: Error, socket: Duplex) => {
      this.counters.reject('tls handshake');
      socket.destroy();
    });
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
      this.server.once('error', (err) => reject(listenFailure(err, '--listen', { host: this.opts.host, port: this.opts.port })));
      this.server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.server.on('error', (err) => this.failed('http', err));
    this.web.start();
    this.heartbeat = setInterval(() => this.connections.beat(), this.opts.heartbeatMs);
    this.heartbeat.unref();
    if (this.opts.kubeAuth) {
      this.sweep = setInterval(() => void this.agents.sweepDeletedNodes(), this.opts.nodeSweepMs);
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
    this.web.stop();
    for (const c of this.connections.all()) c.ws.close(CLOSE.GOING_AWAY, 'aggregator shutting down');
    this.commands.stop();
    this.fleet.close();
    await this.journal?.close();
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
    this.sessions.revokeExcept((s) => still.has(`${s.role}\0${s.secret}`));
    for (const c of this.connections.all()) {
      if (c.secret !== undefined && !still.has(`${c.who.role}\0${c.secret}`)) this.connections.close(c, CLOSE.UNAUTHORIZED, 'the token of this connection was revoked');
    }
  }

  /** Logs a failure with its code and counts it; the caller refuses what failed. */
  failed(where: Where, err: unknown, what?: string): void {
    this.connections.failed(where, err, what);
  }

  private forgetNode(node: string, why: string): boolean {
    const known = this.fleet.forget(node);
    if (known) {
      this.journal?.append({ type: 'forget', node });
      this.opts.log.info({ node, why }, 'node forgotten');
    }
    return known;
  }

  // ---- connections ----

  private onClientError(err: Error, socket: Duplex): void {
    const code = (err as { code?: string }).code ?? '';
    this.counters.reject(code === 'HPE_HEADER_OVERFLOW' ? 'http 431' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'http 408' : 'http 400');
    if (!socket.writable || code === 'ECONNRESET') return void socket.destroy();
    const status = code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    // end() only half-closes: a slowloris peer that never closes its side would keep the socket. The
    // answer is flushed, then the socket is destroyed (at the latest a second later).
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
    setTimeout(() => socket.destroy(), 1_000).unref();
  }

  private async upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    // The request head is complete; the gate's deadline still runs until the credential is accepted.
    const path = (req.url ?? '').split('?')[0];
    const role = path === '/api/agent' ? 'agent' : path === '/api/tail' ? 'tail' : undefined;
    const reject = (status: number, text: string) => {
      this.counters.reject(`upgrade ${status}`);
      if (socket.writable) socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      socket.destroy();
    };
    if (path === '/api/web') return this.upgradeWeb(req, socket, head, reject);
    if (!role) return reject(404, 'no such endpoint');
    let who: Identity | undefined = this.auth.identify(req.headers.authorization);
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    // Rejected before a single message is read.
    if (!who && role === 'agent' && this.opts.kubeAuth && bearer) {
      const review = await this.opts.kubeAuth.review(bearer, req.socket.remoteAddress ?? '');
      if (!review.ok) {
        if (review.status === 503) this.failed('kubernetes', new NodewardenError('NW_ERR_RUNTIME', review.reason));
        return reject(review.status, review.reason);
      }
      who = review.identity;
      if (socket.destroyed) return;
    }
    if (!who || !Authenticator.allows(who, role)) return reject(401, `a valid ${role} bearer token is required`);
    this.gate.established(req.socket);
    const identity = { role: who.role, name: who.name, ...((who as Identity).node ? { node: (who as Identity).node! } : {}) };
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = this.connections.add(ws, identity, (who as Partial<Token>).secret);
      if (role === 'agent') this.agents.add(conn);
      else this.tailers.add(conn);
    });
  }

  /** A browser tab's live feed: its session cookie, from the page's own origin (a cross-site page cannot open it). */
  private upgradeWeb(req: http.IncomingMessage, socket: Duplex, head: Buffer, reject: (status: number, text: string) => void): void {
    if (!sameOrigin(req, Boolean(this.opts.tls))) return reject(403, 'the web feed is for the page on this origin');
    const session = this.sessions.fromRequest(req);
    if (!session || !Authenticator.allows(session, 'tail')) return reject(401, 'log in first (POST /api/session)');
    if (this.web.size >= this.webOptions.maxTabs) return reject(503, `${this.webOptions.maxTabs} web tabs are open already`);
    this.gate.established(req.socket);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.web.add(this.connections.add(ws, { role: session.role, name: session.name }, session.secret)));
  }

  // ---- HTTP ----

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) return void res.end();
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...SECURITY_HEADERS });
    res.end(text);
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    // A whole request head arrived: the deadline no longer applies (keep-alive idling is Node's
    // keepAliveTimeout, a later request's head Node's headersTimeout).
    this.gate.established(req.socket);
    req.on('error', () => undefined); // a body cut off midway: the route sees it end early
    res.on('error', () => undefined);
    this.route(req, res).catch((err) => {
      this.failed('http', err);
      if (!res.headersSent) this.json(res, err instanceof LimitError ? 429 : 500, { error: err instanceof LimitError ? err.message : 'internal error; see the aggregator log' });
      else res.destroy();
    });
  }

  /** What /healthz says of connections: open ones, and what the gate and the stall deadline refused (a probe or an operator sees an attack without Prometheus). */
  private health(): Record<string, number> {
    const c = this.counters;
    return { ...this.gate.counts(), evicted: c.evicted, dropped: c.dropped, handshakeTimeouts: c.rejected.get('handshake timeout') ?? 0, stalledReaders: c.rejected.get('reader stalled') ?? 0 };
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    let url: URL;
    try {
      if (!target.startsWith('/') || target.startsWith('//')) throw new Error('not origin-form');
      url = new URL(target, 'http://aggregator');
    } catch {
      this.counters.reject('http 400');
      return this.json(res, 400, { error: 'the request target must be a path such as /api/findings' });
    }
    const path = url.pathname;
    if ((path === '/healthz' || path === '/metrics') && req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return this.json(res, 405, { error: 'GET or HEAD only' });
    }
    if (path === '/healthz') {
      const journal = this.journal?.health();
      return this.json(res, 200, { status: journal && !journal.ok ? 'degraded' : 'ok', nodes: this.fleet.nodeCount(), agents: this.agents.size, tailers: this.tailers.size, connections: this.health(), web: { tabs: this.web.size, sessions: this.sessions.size, resyncs: this.web.resyncs }, ...(journal ? { journal } : {}), ...(this.opts.kubeAuth ? { tokenReviews: this.opts.kubeAuth.stats } : {}) });
    }
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      const journal = this.journal?.health();
      return void res.end(renderAggregatorMetrics({ fleet: this.fleet, counters: this.counters, tailers: this.tailers.size, tailerBufferedBytes: this.tailers.bufferedBytes(), connections: this.gate.counts(), ...(this.opts.kubeAuth ? { tokenReviews: this.opts.kubeAuth.stats } : {}), ...(journal ? { journal } : {}) }));
    }
    const asset = this.assets.get(path);
    if (asset && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': asset.type, 'content-length': asset.body.length, 'cache-control': 'no-cache', ...SECURITY_HEADERS });
      return void res.end(req.method === 'HEAD' ? undefined : asset.body);
    }
    if (path === '/') return this.json(res, 404, { error: 'the web view is not built into this package (npm run build)' });
    if (path === '/api/session') return this.session(req, res);
    // A bearer token (the CLI), else a browser's session cookie. A token in the URL is never read.
    const bearer = this.auth.identify(req.headers.authorization);
    const session = bearer ? undefined : this.sessions.fromRequest(req);
    const token = bearer ?? session;
    // What a session changes must come from the page itself: its origin and its CSRF value.
    if (session && req.method !== 'GET' && req.method !== 'HEAD' && !(sameOrigin(req, Boolean(this.opts.tls)) && Sessions.csrfOk(session, req))) {
      this.counters.reject('http csrf');
      return this.json(res, 403, { error: `a change from the web view needs its ${CSRF_HEADER} header and the page's own Origin` });
    }
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
      if (this.agents.connected(node)) return this.json(res, 409, { error: `an agent is connected for ${node}; stop it first, or it comes right back` });
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
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', ...SECURITY_HEADERS });
    // A reader that takes nothing for readerStallMs is dropped: it would pin this copy of the findings.
    const drained = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(stall);
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        const stall = setTimeout(() => {
          this.counters.reject('reader stalled');
          res.destroy();
          done();
        }, this.limits.readerStallMs);
        stall.unref();
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

  /**
   * /api/session: POST exchanges a tail or admin token (JSON body `{"token"}` or an Authorization
   * header) for a session cookie; GET says who the cookie is (and its CSRF value, which only this
   * origin can read); DELETE logs out.
   */
  private async session(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const tls = Boolean(this.opts.tls);
    const describe = (s: Session) => ({ role: s.role, name: s.name, csrf: s.csrf, expiresAt: new Date(s.expiresAt).toISOString() });
    if (req.method === 'GET') {
      const s = this.sessions.fromRequest(req);
      return s ? this.json(res, 200, describe(s)) : this.json(res, 401, { error: 'no session' });
    }
    if (req.method === 'DELETE') {
      const s = this.sessions.fromRequest(req);
      if (s && !(sameOrigin(req, tls) && Sessions.csrfOk(s, req))) return this.json(res, 403, { error: `logging out needs the ${CSRF_HEADER} header and the page's own Origin` });
      if (s) this.sessions.end(s.id);
      res.setHeader('set-cookie', Sessions.clearCookie(tls));
      return this.json(res, 200, { loggedOut: true });
    }
    if (req.method !== 'POST') {
      res.setHeader('allow', 'GET, POST, DELETE');
      return this.json(res, 405, { error: 'GET, POST or DELETE' });
    }
    // Only the page logs in: its own origin, a JSON body (a cross-site form cannot send one without a preflight).
    if (!sameOrigin(req, tls)) return this.json(res, 403, { error: "log in from the web view's own origin" });
    if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) return this.json(res, 415, { error: 'the body must be application/json: {"token": "..."}' });
    const body = await readSmallBody(req, MAX_SMALL_BODY);
    if (typeof body !== 'string') {
      this.counters.reject('http body');
      return body.refused === 'too large' ? this.json(res, 413, { error: 'request body too large' }) : void res.destroy();
    }
    let secret: string | undefined = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!secret) {
      try {
        const parsed: unknown = JSON.parse(body);
        const t = typeof parsed === 'object' && parsed !== null && Object.prototype.hasOwnProperty.call(parsed, 'token') ? (parsed as { token: unknown }).token : undefined;
        if (typeof t === 'string' && t.length <= 1024) secret = t;
      } catch {
        return this.json(res, 400, { error: 'the body must be JSON: {"token": "..."}' });
      }
    }
    const who = secret && !/\s/.test(secret) ? this.auth.identify(`Bearer ${secret}`) : undefined;
    if (!who || !Authenticator.allows(who, 'tail')) {
      this.counters.reject('web login');
      return this.json(res, 401, { error: 'a tail or admin token is required' });
    }
    const s = this.sessions.create(who, who.secret);
    this.opts.log.info({ who: who.name, role: who.role }, 'web session started');
    res.setHeader('set-cookie', this.sessions.cookie(s, tls));
    return this.json(res, 200, describe(s));
  }

  /** POST /api/nodes/NODE/prune: the body is read and checked here, the command is the broker's. */
  private async startPrune(node: string, req: http.IncomingMessage, res: http.ServerResponse, who: string): Promise<void> {
    const body = await readSmallBody(req, MAX_SMALL_BODY);
    if (typeof body !== 'string') {
      if (body.refused === 'too large') return this.json(res, 413, { error: 'request body too large' });
      this.counters.reject('http body');
      return void res.destroy(); // cut off midway: there is no one to answer
    }
    const args = parsePruneRequest(body);
    if ('error' in args) return this.json(res, 400, { error: args.error });
    if (!this.agents.connected(node)) return this.json(res, 404, { error: `no agent is connected for node ${node}` });
    if (this.commands.busy(node)) return this.json(res, 409, { error: `a prune is already running on ${node}` });
    this.commands.start(node, args, who, res, (msg) => this.agents.send(node, msg));
  }
}
