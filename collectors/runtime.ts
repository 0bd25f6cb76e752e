// runtime: does each container runtime answer? A dockerd stuck like the runbooks' "docker ps hangs"
// makes kubelet's PLEG go unhealthy and every pod on the node turns Unknown soon after.
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { PERMISSION_DENIED, type Collector, type HostAccess, type RuntimeState } from './types.js';

export const runtimeConfigSpec = s.object({
  restartGrace: s.duration({ default: '30s', doc: "a runtime that does not answer while its daemon process is younger than this, or is down with no daemon for less than this, is 'restarting' (info), not paged; critical after it" }),
});
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

/** How a runtime that does not work got there, for the restart grace: since when, and its daemon's age. */
export interface Restarting {
  /** When this runtime was first seen not working in this episode (ms since the epoch). */
  badSince: number;
  /** Seconds since its youngest daemon process started; undefined when none runs. */
  daemonAgeS?: number;
  /** A daemon process is stopped by a signal (state T): frozen, not restarting. */
  stopped?: boolean;
}

/**
 * Pure: a finding for every runtime that belongs on this node and does not work: it does not answer
 * in time (runtime.unresponsive), or it is down (runtime.down: socket gone or refusing connections).
 * A planned restart is not a page: while its daemon process is younger than the grace (a fresh dockerd
 * warming up), or it has failed for less than the grace (a daemon shutting down stops answering, then
 * removes its socket before the new one makes it), the finding is info and says "restarting"; past it,
 * critical. A daemon stopped by a signal (state T: frozen) is critical at once.
 */
export function evaluateRuntimes(runtimes: readonly RuntimeState[], restarting: ReadonlyMap<string, Restarting> = new Map(), now = Date.now(), graceMs = 0): Observation[] {
  return runtimes
    .filter((r) => r.status === 'unresponsive' || r.status === 'error' || r.status === 'down')
    .map((r) => {
      const episode = restarting.get(r.name);
      const young = episode?.daemonAgeS !== undefined && episode.daemonAgeS * 1000 < graceMs;
      // Failing for moments: a daemon shutting down stops answering, then removes its socket, and the
      // new one is not there yet. A daemon stopped by a signal (frozen) is paged at once.
      const recent = episode !== undefined && now - episode.badSince < graceMs;
      const inGrace = graceMs > 0 && !episode?.stopped && (young || recent);
      return {
        check: r.status === 'down' ? 'runtime.down' : 'runtime.unresponsive',
        severity: inGrace ? ('info' as const) : ('critical' as const),
        subject: r.name,
        message: inGrace
          ? `${r.name} is restarting or stalled (${young ? `its daemon started ${episode!.daemonAgeS} s ago` : `it stopped answering ${Math.round((now - episode!.badSince) / 1000)} s ago`}): ${r.status === 'down' ? 'its socket is not there yet' : 'it does not answer yet'}. Critical if it is not back within the ${Math.round(graceMs / 1000)} s grace.`
          : messageFor(r),
        evidence: { runtime: r.name, socket: r.socket, status: r.status, error: r.error ?? null, latencyMs: r.latencyMs ?? null, ...(r.downReason ? { downReason: r.downReason } : {}), ...(episode ? { failingSince: new Date(episode.badSince).toISOString(), daemonAgeSeconds: episode.daemonAgeS ?? null } : {}) },
        remedy: r.status === 'down' ? DOWN_REMEDY[r.name] : REMEDY[r.name],
      };
    });
}

/** Per runtime access (one per agent): since when each runtime has not worked. */
const episodes = new WeakMap<object, Map<string, number>>();

/** The daemon pids last found per host and name: re-read first, so a stuck runtime costs two reads, not a /proc walk. */
const daemonPids = new WeakMap<HostAccess, Map<string, number[]>>();

/**
 * The daemon processes named `comm`: seconds since the youngest started, and whether one is stopped (T).
 * The pids found last time are read first; the whole process table only when none of them is that
 * daemon any more (on a loaded node the walk took over a second, and the run timed out behind a
 * frozen containerd).
 */
async function daemonState(host: HostAccess, comm: string): Promise<{ ageS?: number; stopped: boolean }> {
  const uptime = Number((await host.readText(host.procPath('uptime')))?.split(' ')[0]);
  if (!Number.isFinite(uptime)) return { stopped: false };
  let known = daemonPids.get(host);
  if (!known) daemonPids.set(host, (known = new Map()));
  const look = async (pids: readonly number[]) => {
    let youngest: number | undefined;
    let stopped = false;
    const found: number[] = [];
    for (const pid of pids) {
      const stat = await host.readText(host.procPath(pid, 'stat'));
      if (!stat) continue;
      const close = stat.lastIndexOf(')');
      if (stat.slice(stat.indexOf('(') + 1, close) !== comm) continue;
      found.push(pid);
      // Field 3 is the state; field 22, starttime, in clock ticks since boot (USER_HZ is 100 on Linux).
      const fields = stat.slice(close + 2).split(' ');
      if (fields[0] === 'T') stopped = true;
      const age = Math.max(0, Math.round(uptime - Number(fields[19]) / 100));
      if (Number.isFinite(age) && (youngest === undefined || age < youngest)) youngest = age;
    }
    return { found, state: { ...(youngest !== undefined ? { ageS: youngest } : {}), stopped } };
  };
  const cached = known.get(comm);
  if (cached && cached.length > 0) {
    const r = await look(cached);
    if (r.found.length > 0) return r.state;
  }
  const r = await look(await host.pids());
  known.set(comm, r.found);
  return r.state;
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
    let since = episodes.get(ctx.runtime);
    if (!since) episodes.set(ctx.runtime, (since = new Map()));
    const now = ctx.now();
    const restarting = new Map<string, Restarting>();
    for (const r of runtimes) {
      if (r.status !== 'unresponsive' && r.status !== 'error' && r.status !== 'down') {
        since.delete(r.name);
        continue;
      }
      if (!since.has(r.name)) since.set(r.name, now);
      const daemon = await daemonState(ctx.host, r.name === 'docker' ? 'dockerd' : 'containerd');
      restarting.set(r.name, { badSince: since.get(r.name)!, stopped: daemon.stopped, ...(daemon.ageS !== undefined ? { daemonAgeS: daemon.ageS } : {}) });
    }
    return { kind: 'ok', observations: evaluateRuntimes(runtimes, restarting, now, ctx.config.restartGrace), data: { runtimes } };
  },
};
