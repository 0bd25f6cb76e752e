// The agent's own HTTP endpoints on the host network (0.0.0.0:9742): /healthz for kubelet's liveness
// probe, /readyz for readiness, /metrics for Prometheus. Anyone on the node network can connect, so the
// listener has its own limits: a connection must send its request headers within a deadline, an idle
// connection is closed, and past a cap a new connection evicts the oldest idle one. Idle sockets can
// then never take the file descriptors the collectors need (1,100 of them made every collector fail with
// EMFILE before).
import http from 'node:http';
import type { Socket } from 'node:net';
import { listenFailure } from '../../protocol/address.js';
import { renderMetrics, type Metric } from '../../protocol/metrics.js';
import { formatDuration } from '../../protocol/schema.js';
import type { CollectorStatus } from '../runner.js';
import type { StreamClient } from './aggregator-link.js';
import type { Exporter, RunnerView } from './exporter.js';
import type { KernelLog } from '../../collectors/types.js';

export interface ListenerLimits {
  /** Connections open at once; past it a new connection evicts the oldest idle one. */
  maxConnections: number;
  /** A connection that has not sent its request headers by then is closed. */
  headersTimeoutMs: number;
  /** A connection with no traffic for this long is closed. */
  idleTimeoutMs: number;
}

export const LISTENER_LIMITS: ListenerLimits = { maxConnections: 64, headersTimeoutMs: 5_000, idleTimeoutMs: 10_000 };

export interface AgentServerOptions {
  /** The active findings (/metrics) and the collectors' last runs (/healthz). */
  runner: Pick<RunnerView, 'active' | 'statuses'>;
  node: string;
  stream?: StreamClient;
  /** /healthz fails once the configured aggregator has been unreachable this long. */
  restartAfterUnreachableMs?: number;
  limits?: Partial<ListenerLimits>;
  /** Where AgentServer.start() listens; without it, it does not. */
  listen?: { host: string; port: number };
  /** The kernel log reader: its health in /healthz, its counted losses in /metrics. */
  kmsg?: Pick<KernelLog, 'health'>;
}

/** Liveness: collecting, and not cut off from the configured aggregator for longer than the restart window. */
export function health(opts: AgentServerOptions, now = Date.now()): { live: boolean; ready: boolean; body: Record<string, unknown> } {
  const link = opts.stream?.state(now);
  const window = opts.restartAfterUnreachableMs ?? 10 * 60_000;
  const cutOff = link !== undefined && !link.connected && (link.downForMs ?? 0) > window;
  const status = cutOff ? 'unreachable' : 'ok';
  const body: Record<string, unknown> = {
    status,
    node: opts.node,
    ...(cutOff ? { reason: `the aggregator at ${link.url} has been unreachable for ${Math.round((link.downForMs ?? 0) / 1000)} s (restart window ${formatDuration(window)}): a restart may help` } : {}),
    aggregator: link ?? 'none',
    collectors: opts.runner.statuses(),
    ...(opts.kmsg ? { kmsg: opts.kmsg.health() } : {}),
  };
  return { live: !cutOff, ready: link === undefined || link.connected, body };
}

/**
 * The endpoints as an exporter: the collectors' runs counted from the status events it is handed,
 * listening from start() to stop().
 */
export class AgentServer implements Exporter {
  readonly name = 'http';
  readonly server: http.Server;
  /** Where it answers once started (the port the kernel chose for port 0). */
  address: { host: string; port: number } | undefined;
  /** Runs by collector and outcome, and each collector's last duration in seconds, for /metrics. */
  private readonly runs = new Map<string, number>();
  private readonly durations = new Map<string, number>();

  constructor(private readonly opts: AgentServerOptions) {
    this.server = createEndpoints(opts, this.runs, this.durations);
  }

  onStatus(st: CollectorStatus): void {
    const key = `${st.name}\0${st.status}`;
    this.runs.set(key, (this.runs.get(key) ?? 0) + 1);
    this.durations.set(st.name, st.durationMs / 1000);
  }

  /** Listens on opts.listen; rejects if the address is taken. */
  async start(): Promise<void> {
    const at = this.opts.listen;
    if (!at) return;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', (err) => reject(listenFailure(err, 'agent.listen (--listen)', at)));
      this.server.listen(at.port, at.host, () => resolve());
    });
    const addr = this.server.address();
    this.address = { host: at.host, port: typeof addr === 'object' && addr ? addr.port : at.port };
  }

  /** Resolves once every connection has ended. */
  stop(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    return new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function createEndpoints(opts: AgentServerOptions, runs: ReadonlyMap<string, number>, durations: ReadonlyMap<string, number>): http.Server {
  const limits = { ...LISTENER_LIMITS, ...opts.limits };
  const node = opts.node;
  const server = http.createServer({ headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.headersTimeoutMs * 2, keepAliveTimeout: Math.min(5_000, limits.idleTimeoutMs), connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs) }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if ((path === '/healthz' || path === '/readyz' || path === '/metrics') && req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' });
      return void res.end('GET or HEAD only\n');
    }
    if (path === '/healthz' || path === '/readyz') {
      const h = health(opts);
      const ok = path === '/healthz' ? h.live : h.ready;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(h.body));
    }
    if (path === '/metrics') {
      const bySev = new Map<string, number>();
      for (const f of opts.runner.active()) bySev.set(`${f.check}\0${f.severity}`, (bySev.get(`${f.check}\0${f.severity}`) ?? 0) + 1);
      const mem = process.memoryUsage();
      const link = opts.stream?.state();
      const metrics: Metric[] = [
        { name: 'nodewarden_findings', help: 'Active findings by check and severity', type: 'gauge', samples: [...bySev].map(([k, v]) => { const [check, severity] = k.split('\0') as [string, string]; return { labels: { node, check, severity }, value: v }; }) },
        { name: 'nodewarden_collector_duration_seconds', help: 'Duration of the last run of each collector', type: 'gauge', samples: [...durations].map(([collector, v]) => ({ labels: { node, collector }, value: v })) },
        { name: 'nodewarden_collector_runs_total', help: 'Collector runs by outcome (ok, no-data, unavailable, failed, timeout)', type: 'counter', samples: [...runs].map(([k, v]) => { const [collector, status] = k.split('\0') as [string, string]; return { labels: { node, collector, status }, value: v }; }) },
        { name: 'nodewarden_collector_failures_total', help: 'Collector runs that failed or timed out', type: 'counter', samples: [...new Set([...runs.keys()].map((k) => k.split('\0')[0]!))].map((collector) => ({ labels: { node, collector }, value: (runs.get(`${collector}\0failed`) ?? 0) + (runs.get(`${collector}\0timeout`) ?? 0) })) },
        { name: 'nodewarden_aggregator_connected', help: '1 when the agent is connected to its aggregator', type: 'gauge', samples: [{ labels: { node }, value: link?.connected ? 1 : 0 }] },
        { name: 'nodewarden_aggregator_disconnected_seconds', help: 'How long the agent has been without its aggregator (0 when connected)', type: 'gauge', samples: [{ labels: { node }, value: Math.round((link?.downForMs ?? 0) / 1000) }] },
        { name: 'nodewarden_listener_connections_refused_total', help: 'Connections this listener closed because it was at its cap of open connections', type: 'counter', samples: [{ labels: { node }, value: refused }] },
        ...kmsgMetrics(opts.kmsg, node),
        { name: 'nodewarden_process_resident_memory_bytes', help: 'Resident memory of the agent', type: 'gauge', samples: [{ labels: { node }, value: mem.rss }] },
      ];
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(renderMetrics(metrics));
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  // At the cap, a new connection evicts the oldest one that is not in the middle of a request: a flood
  // of idle sockets cannot lock kubelet's probe out, and the agent's fds stay bounded.
  let refused = 0;
  const open = new Set<Socket>();
  const busy = new WeakSet<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    if (open.size <= limits.maxConnections) return;
    refused++;
    const victim = [...open].find((s) => !busy.has(s) && s !== socket) ?? socket;
    open.delete(victim);
    victim.destroy();
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    busy.add(req.socket);
    res.once('close', () => busy.delete(req.socket));
  });
  // Any connection silent for idleTimeoutMs (no request at all, or idle between requests) is destroyed.
  server.setTimeout(limits.idleTimeoutMs, (socket) => socket.destroy());
  server.on('clientError', (_err, socket) => socket.destroy());
  return server;
}

/** The kernel log reader's totals: records read, records the ring overwrote unread, EPIPE answers, read errors. */
function kmsgMetrics(kmsg: Pick<KernelLog, 'health'> | undefined, node: string): Metric[] {
  if (!kmsg) return [];
  const h = kmsg.health();
  const counter = (name: string, help: string, key: string): Metric => ({ name, help, type: 'counter', samples: [{ labels: { node }, value: h.totals[key] ?? 0 }] });
  return [
    counter('nodewarden_kmsg_records_total', 'Kernel log records read from /dev/kmsg', 'records'),
    counter('nodewarden_kmsg_lost_records_total', 'Kernel log records overwritten in the ring before they were read (sequence gaps)', 'lost'),
    counter('nodewarden_kmsg_overflows_total', 'Ring buffer overflows (EPIPE) seen by the kernel log reader', 'overflows'),
    counter('nodewarden_kmsg_errors_total', 'Kernel log open or read errors (the reader reopens /dev/kmsg on its next run)', 'errors'),
    { name: 'nodewarden_kmsg_up', help: '1 when the last kernel log read succeeded', type: 'gauge', samples: [{ labels: { node }, value: h.ok ? 1 : 0 }] },
  ];
}
