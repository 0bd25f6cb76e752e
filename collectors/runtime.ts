// runtime: does each container runtime answer? A dockerd stuck like the runbooks' "docker ps hangs"
// makes kubelet's PLEG go unhealthy and every pod on the node turns Unknown soon after.
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { PERMISSION_DENIED, type Collector, type RuntimeState } from './types.js';

export const runtimeConfigSpec = s.object({});
export type RuntimeCheckConfig = Infer<typeof runtimeConfigSpec>;

export interface RuntimeCheckData {
  runtimes: RuntimeState[];
}

const REMEDY: Record<RuntimeState['name'], string> = {
  docker:
    "timeout 10 docker ps >/dev/null || echo hung; journalctl -u docker --since '-15min' | tail -50; kill -USR1 $(pidof dockerd)  # dumps goroutine stacks to the log; then drain the node and systemctl restart docker",
  containerd:
    "timeout 10 ctr version || echo hung; journalctl -u containerd --since '-15min' | tail -50  # then drain the node and systemctl restart containerd",
};

const DOWN_REMEDY: Record<RuntimeState['name'], string> = {
  docker: "systemctl status docker; journalctl -u docker --since '-15min' | tail -50; systemctl start docker",
  containerd: "systemctl status containerd; journalctl -u containerd --since '-15min' | tail -50; systemctl start containerd",
};

function messageFor(r: RuntimeState): string {
  const consequence = 'kubelet cannot see its containers, PLEG goes unhealthy and every pod on this node turns Unknown soon.';
  switch (r.status) {
    case 'unresponsive':
      return `${r.name} does not answer on ${r.socket} (no reply within ${r.latencyMs ?? '?'} ms): ${consequence}`;
    case 'down':
      return r.downReason === 'refused'
        ? `${r.name} is down: ${r.socket} refuses connections (nothing listens on it): ${consequence}`
        : `${r.name} is down: ${r.error ?? `${r.socket} is gone`}: ${consequence}`;
    default:
      return `${r.name} answers on ${r.socket} with errors (${r.error ?? 'unknown error'}): kubelet cannot manage its containers.`;
  }
}

/**
 * Pure: a finding for every runtime that belongs on this node and does not work: it does not answer
 * in time (runtime.unresponsive), or it is down (runtime.down: socket gone or refusing connections).
 */
export function evaluateRuntimes(runtimes: readonly RuntimeState[]): Observation[] {
  return runtimes
    .filter((r) => r.status === 'unresponsive' || r.status === 'error' || r.status === 'down')
    .map((r) => ({
      check: r.status === 'down' ? 'runtime.down' : 'runtime.unresponsive',
      severity: 'critical' as const,
      subject: r.name,
      message: messageFor(r),
      evidence: { runtime: r.name, socket: r.socket, status: r.status, error: r.error ?? null, latencyMs: r.latencyMs ?? null, ...(r.downReason ? { downReason: r.downReason } : {}) },
      remedy: r.status === 'down' ? DOWN_REMEDY[r.name] : REMEDY[r.name],
    }));
}

export const runtime: Collector<RuntimeCheckConfig, RuntimeCheckData> = {
  name: 'runtime',
  description: 'Whether dockerd and containerd answer their API sockets in time',
  checks: ['runtime.unresponsive', 'runtime.down'],
  conditions: { 'runtime.unresponsive': 'NodewardenRuntimeUnresponsive', 'runtime.down': 'NodewardenRuntimeUnresponsive' },
  defaultIntervalMs: 15_000,
  // Longer than runtime.timeout, so the runtime's own deadline reports first.
  defaultTimeoutMs: 12_000,
  waitsFor: ['runtime.timeout'],
  configSpec: runtimeConfigSpec,
  async collect(ctx) {
    const runtimes = await ctx.runtime.ping();
    if (runtimes.every((r) => r.status === 'absent')) return { kind: 'no-data', reason: 'no docker or containerd socket on this node' };
    // Not allowed to connect (not root) is not an outage: we cannot look, and say so; nobody is paged.
    const forbidden = runtimes.filter((r) => r.status === 'forbidden');
    if (forbidden.length > 0 && runtimes.every((r) => r.status === 'forbidden' || r.status === 'absent')) {
      return { kind: 'unavailable', reason: `${PERMISSION_DENIED}: ${forbidden.map((r) => r.socket).join(', ')}` };
    }
    return { kind: 'ok', observations: evaluateRuntimes(runtimes), data: { runtimes } };
  },
};
