// The aggregator: agents stream findings in over WebSocket, tailers subscribe, admins send commands.
// Tokens are checked before the WebSocket upgrade; every message is validated; a bad client is closed
// with a reason and never disturbs the others.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { renderMetrics, type Metric } from '../protocol/metrics.js';
import {
  CLOSE,
  MAX_MESSAGE_BYTES,
  WireError,
  decodeAgentMessage,
  decodeTailerMessage,
  encode,
  matchesFilter,
  type AggregatorToAgent,
  type AggregatorToTailer,
  type TailFilter,
} from '../protocol/wire.js';
import { Authenticator, type Token } from './auth.js';
import { Fleet, type TimedTransition } from './fleet.js';
import { Journal } from './journal.js';

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
  version: string;
  log: Logger;
}

interface Conn {
  ws: WebSocket;
  alive: boolean;
  tokens: number;
  lastRefill: number;
  who: string;
}

interface AgentConn extends Conn {
  node?: string;
}

interface TailConn extends Conn {
  filter?: TailFilter;
  /** Transitions held back while the active set is still being sent (they come after it). */
  held?: string[];
}

interface PendingCommand {
  node: string;
  res: http.ServerResponse;
  timer: NodeJS.Timeout;
}

const SLOW_TAILER_BYTES = 16 * 1024 * 1024;
/** Findings per chunk of a tailer's initial active set; the next chunk goes when this one is written. */
const ACTIVE_CHUNK = 1000;
/** Transitions held for one tailer while its active set is sent, before it is dropped as too slow. */
const MAX_HELD = 100_000;

export class Aggregator {
  readonly fleet: Fleet;
  private readonly auth: Authenticator;
  private readonly server: http.Server;
  private readonly wss: WebSocketServer;
  private readonly agents = new Set<AgentConn>();
  private readonly byNode = new Map<string, AgentConn>();
  private readonly tailers = new Set<TailConn>();
  private readonly commands = new Map<string, PendingCommand>();
  private readonly journal: Journal | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly counters = { messages: 0, rejected: new Map<string, number>(), transitions: 0 };
  private readonly opts: Required<Omit<AggregatorOptions, 'tls' | 'journal'>> & Pick<AggregatorOptions, 'tls' | 'journal'>;

  constructor(opts: AggregatorOptions) {
    this.opts = {
      historyLimit: 10_000,
      silentAfterMs: 30_000,
      heartbeatMs: 10_000,
      rateLimit: { perSecond: 200, burst: 2000 },
      commandTimeoutMs: 15 * 60_000,
      ...opts,
    };
    this.auth = new Authenticator(opts.tokens);
    this.fleet = new Fleet({ historyLimit: this.opts.historyLimit, silentAfterMs: this.opts.silentAfterMs });
    if (opts.journal) {
      this.journal = new Journal(opts.journal, this.opts.historyLimit);
      const { transitions, skipped } = this.journal.load();
      this.fleet.restore(transitions);
      opts.log.info({ journal: opts.journal, transitions: transitions.length, skipped }, 'journal loaded');
    }
    this.fleet.on('transition', (t: TimedTransition) => this.broadcast(t));
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.http(req, res);
    this.server = opts.tls ? https.createServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }, handler) : http.createServer(handler);
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
    this.server.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
  }

  async start(): Promise<{ host: string; port: number; url: string }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatMs);
    this.heartbeat.unref();
    const addr = this.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : this.opts.port;
    const scheme = this.opts.tls ? 'wss' : 'ws';
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    this.opts.log.info({ host: this.opts.host, port, tls: Boolean(this.opts.tls) }, 'aggregator listening');
    return { host: this.opts.host, port, url: `${scheme}://${host}:${port}` };
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const c of [...this.agents, ...this.tailers]) c.ws.close(CLOSE.GOING_AWAY, 'aggregator shutting down');
    for (const [id, cmd] of this.commands) this.finishCommand(id, { type: 'error', message: 'aggregator shutting down' });
    this.fleet.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
  }

  // ---- WebSocket connections ----

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    const role = path === '/api/agent' ? 'agent' : path === '/api/tail' ? 'tail' : undefined;
    const reject = (status: number, text: string) => {
      this.reject(`upgrade ${status}`);
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      socket.destroy();
    };
    if (!role) return reject(404, 'no such endpoint');
    const token = this.auth.identify(req.headers.authorization);
    // Rejected before a single message is read.
    if (!Authenticator.allows(token, role)) return reject(401, `a valid ${role} bearer token is required`);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = { ws, alive: true, tokens: this.opts.rateLimit.burst, lastRefill: Date.now(), who: token!.name };
      ws.on('pong', () => (conn.alive = true));
      ws.on('error', () => ws.terminate());
      if (role === 'agent') this.onAgent(conn);
      else this.onTailer(conn);
    });
  }

  private reject(reason: string): void {
    this.counters.rejected.set(reason, (this.counters.rejected.get(reason) ?? 0) + 1);
  }

  private close(conn: Conn, code: number, reason: string): void {
    this.reject(`close ${code}`);
    this.opts.log.warn({ who: conn.who, code, reason }, 'closing connection');
    conn.ws.close(code, reason.slice(0, 120));
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
      const e = err instanceof WireError ? err : new WireError(CLOSE.MALFORMED, String(err));
      this.close(conn, e.closeCode, e.reason);
      return undefined;
    }
  }

  private onAgent(conn: AgentConn): void {
    this.agents.add(conn);
    const helloTimer = setTimeout(() => this.close(conn, CLOSE.MALFORMED, 'expected hello within 10 s'), 10_000);
    conn.ws.on('message', (raw: Buffer) => {
      const msg = this.receive(conn, raw, decodeAgentMessage);
      if (!msg) return;
      if (msg.type === 'hello') {
        clearTimeout(helloTimer);
        if (conn.node) return this.close(conn, CLOSE.MALFORMED, 'hello sent twice');
        const previous = this.byNode.get(msg.node);
        if (previous && previous !== conn) this.close(previous, CLOSE.REPLACED, `another agent connected for node ${msg.node}`);
        conn.node = msg.node;
        this.byNode.set(msg.node, conn);
        this.fleet.connect(msg.node, { agentVersion: msg.agentVersion, collectors: msg.collectors });
        this.send(conn.ws, { v: 1, type: 'welcome', aggregatorVersion: this.opts.version });
        this.opts.log.info({ node: msg.node, agentVersion: msg.agentVersion, who: conn.who }, 'agent connected');
        return;
      }
      const node = conn.node;
      if (!node) return this.close(conn, CLOSE.MALFORMED, `expected hello first, got ${msg.type}`);
      this.fleet.touch(node);
      switch (msg.type) {
        case 'snapshot':
        case 'delta': {
          const findings = msg.type === 'snapshot' ? msg.findings : msg.transitions.map((t) => t.finding);
          const stranger = findings.find((f) => f.node !== node);
          if (stranger) return this.close(conn, CLOSE.MALFORMED, `finding for node ${stranger.node} on ${node}'s connection`);
          if (msg.type === 'snapshot') this.fleet.applySnapshot(node, msg.findings);
          else this.fleet.applyDelta(node, msg.transitions);
          return;
        }
        case 'status':
          this.fleet.setStatus(node, msg.collectors);
          return;
        case 'progress':
        case 'result': {
          const cmd = this.commands.get(msg.commandId);
          if (!cmd || cmd.node !== node) return; // a late answer to a command we gave up on
          if (msg.type === 'progress') cmd.res.write(`${JSON.stringify({ type: 'progress', ...msg.progress })}\n`);
          else this.finishCommand(msg.commandId, { type: 'result', ...msg.result });
          return;
        }
      }
    });
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

  private onTailer(conn: TailConn): void {
    this.tailers.add(conn);
    const subTimer = setTimeout(() => this.close(conn, CLOSE.MALFORMED, 'expected subscribe within 10 s'), 10_000);
    conn.ws.on('message', (raw: Buffer) => {
      const msg = this.receive(conn, raw, decodeTailerMessage);
      if (!msg) return;
      clearTimeout(subTimer);
      conn.filter = msg.filter;
      if (msg.sinceMs !== undefined) this.send(conn.ws, { v: 1, type: 'history', transitions: this.fleet.historySince(msg.sinceMs, msg.filter) });
      this.sendActive(conn, this.fleet.active(msg.filter));
    });
    conn.ws.on('close', () => {
      clearTimeout(subTimer);
      this.tailers.delete(conn);
    });
  }

  /**
   * The active set in chunks, each sent once the previous one is written, so a large cluster's active
   * set never sits in memory once per tailer. Live transitions wait until the set is complete.
   */
  private sendActive(conn: TailConn, findings: ReturnType<Fleet['active']>): void {
    conn.held = [];
    let offset = 0;
    const next = (err?: Error): void => {
      if (err || conn.ws.readyState !== conn.ws.OPEN) return;
      const chunk = findings.slice(offset, offset + ACTIVE_CHUNK);
      offset += ACTIVE_CHUNK;
      const more = offset < findings.length;
      conn.ws.send(encode({ v: 1, type: 'active', findings: chunk, ...(more ? { more: true } : {}) }), more ? next : undefined);
      if (!more) {
        const held = conn.held ?? [];
        conn.held = undefined;
        for (const text of held) conn.ws.send(text);
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
      if (c.ws.bufferedAmount > SLOW_TAILER_BYTES) {
        this.close(c, CLOSE.POLICY, 'tailer too slow: more than 16 MiB waiting');
        continue;
      }
      text ??= encode({ v: 1, type: 'transition', transition: t });
      if (c.held) {
        if (c.held.length >= MAX_HELD) this.close(c, CLOSE.POLICY, 'tailer too slow: its active set is not read');
        else c.held.push(text);
      } else if (c.ws.readyState === c.ws.OPEN) c.ws.send(text);
    }
  }

  private beat(): void {
    for (const c of [...this.agents, ...this.tailers]) {
      if (!c.alive) {
        this.opts.log.warn({ who: c.who, node: (c as AgentConn).node }, 'heartbeat missed; dropping connection');
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  // ---- HTTP ----

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async http(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://aggregator');
    const path = url.pathname;
    if (path === '/healthz') return this.json(res, 200, { status: 'ok', nodes: this.fleet.connectedNodes().total, agents: this.byNode.size, tailers: this.tailers.size });
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
        if (v) filter[k] = v;
      }
      if (filter.severity && !['info', 'warning', 'critical'].includes(filter.severity)) return this.json(res, 400, { error: 'severity must be info, warning or critical' });
      if (filter.state === 'resolved') {
        return this.json(res, 200, this.fleet.historySince(0, filter).filter((t) => t.type === 'resolved').map((t) => t.finding));
      }
      return this.json(res, 200, this.fleet.active(filter));
    }
    const prune = /^\/api\/nodes\/([^/]+)\/prune$/.exec(path);
    if (prune) {
      if (req.method !== 'POST') return this.json(res, 405, { error: 'POST only' });
      if (!Authenticator.allows(token, 'admin')) return this.json(res, token ? 403 : 401, { error: 'an admin bearer token is required' });
      return this.startPrune(decodeURIComponent(prune[1]!), req, res, token!.name);
    }
    return this.json(res, 404, { error: `no such endpoint ${path}` });
  }

  private async startPrune(node: string, req: http.IncomingMessage, res: http.ServerResponse, who: string): Promise<void> {
    let body = '';
    for await (const chunk of req) {
      body += chunk;
      if (body.length > 4096) return this.json(res, 413, { error: 'request body too large' });
    }
    let args: { untilMs?: unknown; dryRun?: unknown };
    try {
      args = body ? (JSON.parse(body) as typeof args) : {};
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
    res.write(`${JSON.stringify({ type: 'accepted', commandId: id, node, untilMs, dryRun })}\n`);
    const timer = setTimeout(() => this.finishCommand(id, { type: 'error', message: `no result from ${node} within ${this.opts.commandTimeoutMs} ms` }), this.opts.commandTimeoutMs);
    this.commands.set(id, { node, res, timer });
    res.on('close', () => {
      if (this.commands.has(id)) this.opts.log.warn({ node, commandId: id }, 'prune requester went away; the agent carries on');
    });
    this.send(agent.ws, { v: 1, type: 'command', id, command: 'prune', untilMs, dryRun, requestedBy: who });
  }

  private finishCommand(id: string, last: object): void {
    const cmd = this.commands.get(id);
    if (!cmd) return;
    this.commands.delete(id);
    clearTimeout(cmd.timer);
    this.opts.log.info({ node: cmd.node, commandId: id, outcome: last }, 'prune finished');
    cmd.res.end(`${JSON.stringify(last)}\n`);
  }

  private metrics(): string {
    // Only when run with --expose-gc (benchmarks): report the live heap, not garbage awaiting collection.
    (globalThis as { gc?: () => void }).gc?.();
    const nodes = this.fleet.connectedNodes();
    const metrics: Metric[] = [
      { name: 'nodewarden_aggregator_nodes', help: 'Nodes known, by whether their agent is connected', type: 'gauge', samples: [{ labels: { connected: 'true' }, value: nodes.connected }, { labels: { connected: 'false' }, value: nodes.total - nodes.connected }] },
      // By check and severity only: a node label would be one series per node and check (per-node detail is /api/findings).
      { name: 'nodewarden_aggregator_findings', help: 'Active findings in the cluster by check and severity', type: 'gauge', samples: this.fleet.countsByCheck().map((c) => ({ labels: { check: c.check, severity: c.severity }, value: c.count })) },
      { name: 'nodewarden_aggregator_tailers', help: 'Connected tailers', type: 'gauge', samples: [{ labels: {}, value: this.tailers.size }] },
      { name: 'nodewarden_aggregator_tailer_buffered_bytes', help: 'Bytes waiting to be sent to tailers', type: 'gauge', samples: [{ labels: {}, value: [...this.tailers].reduce((n, c) => n + c.ws.bufferedAmount, 0) }] },
      { name: 'nodewarden_aggregator_messages_total', help: 'Messages received from agents and tailers', type: 'counter', samples: [{ labels: {}, value: this.counters.messages }] },
      { name: 'nodewarden_aggregator_transitions_total', help: 'Finding transitions fanned out', type: 'counter', samples: [{ labels: {}, value: this.counters.transitions }] },
      { name: 'nodewarden_aggregator_rejected_total', help: 'Connections and messages rejected, by reason', type: 'counter', samples: [...this.counters.rejected].map(([reason, v]) => ({ labels: { reason }, value: v })) },
      { name: 'nodewarden_aggregator_heap_used_bytes', help: 'V8 heap in use', type: 'gauge', samples: [{ labels: {}, value: process.memoryUsage().heapUsed }] },
      { name: 'nodewarden_aggregator_resident_memory_bytes', help: 'Resident memory of the aggregator', type: 'gauge', samples: [{ labels: {}, value: process.memoryUsage().rss }] },
      { name: 'nodewarden_aggregator_history_size', help: 'Transitions kept in history', type: 'gauge', samples: [{ labels: {}, value: this.fleet.historySize() }] },
    ];
    return renderMetrics(metrics);
  }
}
