// kubelet: its own health (`GET http://127.0.0.1:10248/healthz` under a timeout) and the cause of a
// PLEG that is not healthy, named from this node's evidence before the node goes NotReady. kubelet's
// PLEG relists every container through the runtime every second; when a relist takes longer than 3
// minutes kubelet reports "PLEG is not healthy" and the node NotReady, with nothing about why (k/k
// #61117). The why is nearly always the runtime: a `docker ps` that hangs, a containerd that does not
// answer, one container the runtime cannot inspect. The agent times its own runtime calls, so it can say
// so as soon as the runtime stops answering, minutes before kubelet gives up. Nothing is restarted.
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { httpRequest, HttpRequestError } from '../protocol/http-request.js';
import type { Collector, HostAccess, RuntimeState } from './types.js';

export const kubeletConfigSpec = s.object({
  healthzUrl: s.string({ default: 'http://127.0.0.1:10248/healthz', pattern: /^http:\/\/[^/\s]+\/\S*$/, patternDoc: 'an http:// URL', doc: "kubelet's healthz endpoint (--healthz-bind-address, --healthz-port)" }),
  healthzTimeout: s.duration({ default: '3s', min: 100, doc: 'how long kubelet may take to answer its healthz' }),
  plegThreshold: s.duration({ default: '3m', min: 1000, doc: "kubelet's PLEG threshold: a relist that takes longer makes the node NotReady" }),
  plegWarnAfter: s.duration({ default: '30s', min: 0, doc: 'how long the runtime must not answer before the PLEG forecast fires (a planned restart takes less; as runtime.restartGrace)' }),
});
export type KubeletConfig = Infer<typeof kubeletConfigSpec>;

export interface KubeletData {
  /** ok, failing (non-200), hung (no answer in time), absent (nothing listens and no kubelet process). */
  healthz: 'ok' | 'failing' | 'hung' | 'absent' | 'not-listening';
  status?: number;
  body?: string;
  kubeletPid?: number;
  /** When the runtime was first seen not answering, by runtime name (ms since epoch). */
  runtimeStuckSince?: Record<string, number>;
}

/** Pure: the healthz body's failed checks (`[-]pleg failed: ...`), or the whole first line. */
export function failedChecks(body: string): string[] {
  const failed = body.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('[-]')).map((l) => l.slice(3));
  return failed.length > 0 ? failed : body.trim() ? [body.trim().split('\n')[0]!.slice(0, 300)] : [];
}

const secs = (ms: number) => (ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 60_000).toFixed(1)} min`);

/**
 * Pure: what this node says about the runtime kubelet's PLEG waits on: runtimes that do not answer,
 * since when; or the latencies of those that do.
 */
export function runtimeCause(states: readonly RuntimeState[], stuckSince: Readonly<Record<string, number>>, now: number): { stuck: { name: string; forMs: number; status: string; error?: string }[]; latencies: string } {
  const stuck = states
    .filter((r) => r.status === 'unresponsive' || r.status === 'down' || r.status === 'error')
    .map((r) => ({ name: r.name, forMs: now - (stuckSince[r.name] ?? now), status: r.status, ...(r.error ? { error: r.error } : {}) }));
  const latencies = states.filter((r) => r.status === 'ok').map((r) => `${r.name} ${r.latencyMs ?? '?'} ms`).join(', ');
  return { stuck, latencies };
}

/** Pure: the findings from kubelet's healthz and the runtime's state. */
export function evaluateKubelet(d: KubeletData, states: readonly RuntimeState[], config: KubeletConfig, now: number): Observation[] {
  const out: Observation[] = [];
  const cause = runtimeCause(states, d.runtimeStuckSince ?? {}, now);
  const because = cause.stuck.length > 0
    ? `the container runtime does not answer: ${cause.stuck.map((c) => `${c.name} ${c.status} for ${secs(c.forMs)}`).join(', ')} (the agent's own calls to it time out)`
    : `no runtime call of the agent's is slow (${cause.latencies || 'no runtime answered'})`;
  const runtimeRemedy = cause.stuck.length > 0
    ? `nodewarden check --only runtime,drift; ps -eo pid,stat,etime,cmd | grep -E '[d]ockerd|[c]ontainerd'  # a frozen runtime (state T or D) is the usual cause; restart it only after draining the node`
    : `journalctl -u kubelet --since -10min | grep -iE 'pleg|relist|runtime' | tail -20`;
  if (d.healthz === 'failing' || d.healthz === 'hung') {
    const failed = d.healthz === 'hung' ? [`no answer within ${secs(config.healthzTimeout)}`] : failedChecks(d.body ?? '');
    const pleg = failed.some((f) => /pleg/i.test(f));
    out.push({
      check: 'kubelet.unhealthy',
      severity: 'critical',
      subject: 'kubelet',
      message: `kubelet's healthz ${d.healthz === 'hung' ? 'does not answer' : `answers ${d.status}`}: ${failed.slice(0, 3).join('; ')}.${pleg ? ` PLEG is not healthy, and on this node ${because}.` : ''}`,
      evidence: { url: config.healthzUrl, status: d.status ?? null, failed, runtime: cause.stuck, latencies: cause.latencies, kubeletPid: d.kubeletPid ?? null },
      remedy: pleg ? runtimeRemedy : `systemctl status kubelet; journalctl -u kubelet --since -10min | tail -50`,
    });
  }
  // Before kubelet gives up: the runtime has stopped answering and kubelet is here.
  const worst = cause.stuck.length > 0 ? cause.stuck.reduce((a, b) => (b.forMs > a.forMs ? b : a)) : undefined;
  if (d.healthz !== 'absent' && worst && worst.forMs >= config.plegWarnAfter && !out.some((o) => /PLEG/.test(o.message))) {
    const left = config.plegThreshold - worst.forMs;
    out.push({
      check: 'kubelet.pleg',
      severity: left <= config.plegThreshold / 3 ? 'critical' : 'warning',
      subject: 'pleg',
      message: `${worst.name} has not answered for ${secs(worst.forMs)}: kubelet's PLEG relists through it, so kubelet will report "PLEG is not healthy" and the node NotReady ${left > 0 ? `in about ${secs(left)}` : 'now'} if it does not recover (threshold ${secs(config.plegThreshold)}).`,
      evidence: { runtime: cause.stuck, plegThresholdMs: config.plegThreshold },
      remedy: runtimeRemedy,
    });
  }
  return out;
}

/** The pid of a process named kubelet, or undefined. */
async function findKubelet(host: HostAccess): Promise<number | undefined> {
  for (const pid of await host.pids()) {
    const comm = await host.readText(host.procPath(pid, 'comm'));
    if (comm?.trim() === 'kubelet') return pid;
  }
  return undefined;
}

export const kubelet: Collector<KubeletConfig, KubeletData> = {
  name: 'kubelet',
  description: "kubelet's healthz, and the cause of a PLEG that is not healthy (or about to be) from the runtime's own answers",
  checks: ['kubelet.unhealthy', 'kubelet.pleg'],
  conditions: { 'kubelet.unhealthy': 'NodewardenKubeletUnhealthy', 'kubelet.pleg': 'NodewardenKubeletUnhealthy' },
  defaultIntervalMs: 15_000,
  defaultTimeoutMs: 10_000,
  waitsFor: ['runtime.timeout', 'healthzTimeout'],
  configSpec: kubeletConfigSpec,
  async collect(ctx) {
    const { config } = ctx;
    const data: KubeletData = { healthz: 'ok' };
    try {
      const r = await httpRequest({ what: `kubelet GET ${config.healthzUrl}`, url: config.healthzUrl, timeoutMs: config.healthzTimeout, maxBody: 64 * 1024, peer: 'kubelet', signal: ctx.signal });
      data.status = r.status;
      if (r.status !== 200) {
        data.healthz = 'failing';
        data.body = r.body.toString('utf8').slice(0, 4000);
      }
    } catch (err) {
      const failure = err instanceof HttpRequestError ? err.failure : undefined;
      if (failure === 'timeout') data.healthz = 'hung';
      else {
        const pid = await findKubelet(ctx.host);
        if (pid === undefined) return { kind: 'no-data', reason: `no kubelet on this node (nothing answers ${config.healthzUrl} and no process is named kubelet)` };
        data.kubeletPid = pid;
        data.healthz = 'not-listening';
      }
    }
    // The runtime's state as the agent's own probe last saw it (a frozen one is not asked again here).
    const snap = await ctx.runtime.snapshot();
    const now = ctx.now();
    const before = ctx.previous?.runtimeStuckSince ?? {};
    const since: Record<string, number> = {};
    for (const r of snap.runtimes) {
      if (r.status === 'unresponsive' || r.status === 'down' || r.status === 'error') since[r.name] = before[r.name] ?? now;
    }
    data.runtimeStuckSince = since;
    if (data.healthz === 'not-listening') {
      // kubelet runs but its healthz is elsewhere or off: its PLEG can still be forecast.
      return { kind: 'ok', observations: evaluateKubelet({ ...data, healthz: 'ok' }, snap.runtimes, config, now), data };
    }
    return { kind: 'ok', observations: evaluateKubelet(data, snap.runtimes, config, now), data };
  },
};
