// The agent's own HTTP endpoints: /healthz for kubelet's probes and /metrics for Prometheus.
import http from 'node:http';
import { renderMetrics, type Metric } from '../../protocol/metrics.js';
import type { CollectorStatus, Runner } from '../runner.js';
import type { StreamClient } from './aggregator-link.js';

export function createAgentServer(opts: { runner: Runner; node: string; stream?: StreamClient }): http.Server {
  const runs = new Map<string, number>();
  const durations = new Map<string, number>();
  opts.runner.on('status', (st: CollectorStatus) => {
    const key = `${st.name}\0${st.status}`;
    runs.set(key, (runs.get(key) ?? 0) + 1);
    durations.set(st.name, st.durationMs / 1000);
  });
  const node = opts.node;
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      // Healthy means collecting; a missing aggregator is reported, not fatal (we keep collecting).
      const body = JSON.stringify({ status: 'ok', node, collectors: opts.runner.statuses(), aggregator: opts.stream ? (opts.stream.connected ? 'connected' : 'disconnected') : 'none' });
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(body);
    }
    if (path === '/metrics') {
      const bySev = new Map<string, number>();
      for (const f of opts.runner.active()) bySev.set(`${f.check}\0${f.severity}`, (bySev.get(`${f.check}\0${f.severity}`) ?? 0) + 1);
      const mem = process.memoryUsage();
      const metrics: Metric[] = [
        { name: 'nodewarden_findings', help: 'Active findings by check and severity', type: 'gauge', samples: [...bySev].map(([k, v]) => { const [check, severity] = k.split('\0') as [string, string]; return { labels: { node, check, severity }, value: v }; }) },
        { name: 'nodewarden_collector_duration_seconds', help: 'Duration of the last run of each collector', type: 'gauge', samples: [...durations].map(([collector, v]) => ({ labels: { node, collector }, value: v })) },
        { name: 'nodewarden_collector_runs_total', help: 'Collector runs by outcome (ok, no-data, unavailable, failed, timeout)', type: 'counter', samples: [...runs].map(([k, v]) => { const [collector, status] = k.split('\0') as [string, string]; return { labels: { node, collector, status }, value: v }; }) },
        { name: 'nodewarden_collector_failures_total', help: 'Collector runs that failed or timed out', type: 'counter', samples: [...new Set([...runs.keys()].map((k) => k.split('\0')[0]!))].map((collector) => ({ labels: { node, collector }, value: (runs.get(`${collector}\0failed`) ?? 0) + (runs.get(`${collector}\0timeout`) ?? 0) })) },
        { name: 'nodewarden_aggregator_connected', help: '1 when the agent is connected to its aggregator', type: 'gauge', samples: [{ labels: { node }, value: opts.stream?.connected ? 1 : 0 }] },
        { name: 'nodewarden_process_resident_memory_bytes', help: 'Resident memory of the agent', type: 'gauge', samples: [{ labels: { node }, value: mem.rss }] },
      ];
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(renderMetrics(metrics));
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
}
