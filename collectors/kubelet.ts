// kubelet: its own health (`GET http://127.0.0.1:10248/healthz` under a timeout) and the cause of a
// PLEG that is not healthy, named from this node's evidence before the node goes NotReady. kubelet's
// PLEG relists every container through the runtime every second; when a relist takes longer than 3
// minutes kubelet reports "PLEG is not healthy" and the node NotReady, with nothing about why (k/k
// #61117). The why is nearly always the runtime: a `docker ps` that hangs, a containerd that does not
// answer, one container the runtime cannot inspect. The agent times its own runtime calls, so it can say
// so as soon as the runtime stops answering, minutes before kubelet gives up. Once kubelet has said it (the
// Node's Ready condition from the API server, `PLEG is not healthy: ...`), kubelet.pleg turns critical,
// quotes kubelet and names the cause; any other NotReady is kubelet.notReady with kubelet's own reason.
// Both clear only when a fresh read of the Node says Ready again. Nothing is restarted.
import type { Evidence, Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { httpRequest, HttpRequestError } from '../protocol/http-request.js';
import type { Collector, HostAccess, NodeReady, NodeReadyState, RuntimeState } from './types.js';

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
  /**
   * No kubelet found: the pids whose comm was read then, and when. The next search reads only new pids
   * (a process does not become kubelet by exec under an old pid in practice: kubelet is started anew),
   * and reads them all again every KUBELET_RESCAN_MS.
   */
  notKubelet?: { pids: number[]; at: number };
  /** When the runtime was first seen not answering, by runtime name (ms since epoch). */
  runtimeStuckSince?: Record<string, number>;
  /**
   * The Node's Ready condition as last read from the API server, and when; `stale` says why it is not
   * fresh (the API server did not answer: the last answer stands, a finding never clears by time alone).
   * Absent without an API server.
   */
  node?: { ready: NodeReady | undefined; readAt: number; stale?: string };
}

/** Pure: the Node's Ready condition to judge: a fresh read, else the last good one (this run's or the previous run's). */
export function nodeReadyToJudge(state: NodeReadyState | undefined, previous: KubeletData['node'] | undefined): KubeletData['node'] | undefined {
  if (!state || state.status === 'absent') return undefined;
  if (state.status === 'synced') return { ready: state.ready, readAt: state.readAt };
  const last = state.last && (!previous || state.last.readAt >= previous.readAt) ? state.last : previous;
  return last ? { ready: last.ready, readAt: last.readAt, stale: state.reason } : undefined;
}

/** kubelet's NotReady that names its PLEG (`PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s`). */
export const isPlegNotReady = (r: NodeReady | undefined): boolean => r !== undefined && r.status !== 'True' && /PLEG is not healthy/i.test(r.message);

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
export function runtimeCause(states: readonly RuntimeState[], stuckSince: Readonly<Record<string, number>>, now: number): { stuck: { name: string; forMs: number; status: string; error?: string }[]; latencies: string; slow: { name: string; latencyMs: number }[] } {
  const stuck = states
    .filter((r) => r.status === 'unresponsive' || r.status === 'down' || r.status === 'error')
    // The error names the call that hung or failed (`docker GET /_ping: no answer ... within 5000 ms`,
    // an inspect of one container the runtime cannot answer for); the model's note about holding off is not news.
    .map((r) => ({ name: r.name, forMs: now - (stuckSince[r.name] ?? now), status: r.status, ...(r.error ? { error: r.error.replace(/ \(at [^)]*not asked again[^)]*\)$/, '').slice(0, 300) } : {}) }));
  const latencies = states.filter((r) => r.status === 'ok').map((r) => `${r.name} ${r.latencyMs ?? '?'} ms`).join(', ');
  const slow = states.filter((r) => r.status === 'ok' && (r.latencyMs ?? 0) >= SLOW_RUNTIME_CALL_MS).map((r) => ({ name: r.name, latencyMs: r.latencyMs! }));
  return { stuck, latencies, slow };
}

/**
 * A runtime call this slow answers, but a relist makes one such call per container (docker inspects every
 * one), so on a node with 100 containers a 1 s call is a relist of minutes: PLEG's 3-minute threshold.
 */
export const SLOW_RUNTIME_CALL_MS = 1000;

/** Pure: what this node shows about the runtime, in one clause: `docker unresponsive for 45 s (docker GET /_ping: ...)`. */
function describeCause(cause: ReturnType<typeof runtimeCause>): string {
  if (cause.stuck.length > 0) return `the container runtime does not answer: ${cause.stuck.map((c) => `${c.name} ${c.status} for ${secs(c.forMs)}${c.error ? ` (${c.error})` : ''}`).join(', ')} (the agent's own calls to it)`;
  if (cause.slow.length > 0) return `the container runtime answers slowly: ${cause.slow.map((c) => `${c.name} took ${c.latencyMs} ms to answer the agent's probe`).join(', ')}, and kubelet's relist makes such a call for every container`;
  return `no runtime call of the agent's is slow (${cause.latencies || 'no runtime answered'})`;
}

/** Pure: the findings from kubelet's healthz, the Node's Ready condition (when the API server is read) and the runtime's state. */
export function evaluateKubelet(d: KubeletData, states: readonly RuntimeState[], config: KubeletConfig, now: number, node = 'this node'): Observation[] {
  const out: Observation[] = [];
  const cause = runtimeCause(states, d.runtimeStuckSince ?? {}, now);
  const because = describeCause(cause);
  const runtimeRemedy = cause.stuck.length > 0 || cause.slow.length > 0
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
  // kubelet has said it: the Node is NotReady. PLEG gets its cause from this node's evidence.
  const ready = d.node?.ready;
  if (ready && ready.status !== 'True') {
    const quoted = `"${ready.message || ready.reason || 'no message'}"`;
    const since = ready.lastTransitionTime ? ` since ${ready.lastTransitionTime}` : '';
    const evidence: Evidence = { ready: ready.status, reason: ready.reason, kubeletMessage: ready.message, lastTransitionTime: ready.lastTransitionTime ?? null, nodeReadAt: new Date(d.node!.readAt).toISOString(), runtime: cause.stuck, slow: cause.slow, latencies: cause.latencies, staleBecause: d.node?.stale ?? null };
    if (isPlegNotReady(ready)) {
      out.push({
        check: 'kubelet.pleg',
        severity: 'critical',
        subject: 'pleg',
        message: `${node} is NotReady${since}: kubelet says ${quoted}. On this node ${because}.`,
        evidence,
        remedy: runtimeRemedy,
      });
    } else {
      out.push({
        check: 'kubelet.notReady',
        severity: 'critical',
        subject: 'node',
        message: `${node} is NotReady (Ready=${ready.status}${ready.reason ? `, ${ready.reason}` : ''})${since}: ${quoted}.${cause.stuck.length > 0 ? ` On this node ${because}.` : ''}`,
        evidence,
        remedy: `kubectl describe node ${node === 'this node' ? '$(hostname)' : node}; systemctl status kubelet; journalctl -u kubelet --since -10min | tail -50  # kubelet's own account; nodewarden restarts nothing`,
      });
    }
  }
  // Before kubelet gives up: the runtime has stopped answering and kubelet is here.
  const worst = cause.stuck.length > 0 ? cause.stuck.reduce((a, b) => (b.forMs > a.forMs ? b : a)) : undefined;
  if (d.healthz !== 'absent' && worst && worst.forMs >= config.plegWarnAfter && !out.some((o) => /PLEG/.test(o.message) || o.check === 'kubelet.pleg')) {
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

/** How often a node without kubelet has every process's comm read again (in between, only new pids). */
export const KUBELET_RESCAN_MS = 5 * 60_000;

/**
 * The pid of a process named kubelet, or undefined with the pids looked at. On a node with no kubelet
 * (nothing answers its healthz) this ran every 15 s over every process, a fifth of the agent's reads
 * of /proc under churn; now over the pids that are new since the last search.
 */
async function findKubelet(host: HostAccess, before: KubeletData['notKubelet'], now: number): Promise<{ pid?: number; notKubelet?: { pids: number[]; at: number } }> {
  const pids = await host.pids();
  const known = before && now - before.at < KUBELET_RESCAN_MS ? new Set(before.pids) : undefined;
  for (const pid of pids) {
    if (known?.has(pid)) continue;
    const comm = await host.readText(host.procPath(pid, 'comm'));
    if (comm?.trim() === 'kubelet') return { pid };
  }
  return { notKubelet: { pids, at: known ? before!.at : now } };
}

export const kubelet: Collector<KubeletConfig, KubeletData> = {
  name: 'kubelet',
  description: "kubelet's healthz and the Node's Ready condition; the cause of a PLEG that is not healthy (or about to be) from the runtime's own answers",
  checks: ['kubelet.unhealthy', 'kubelet.pleg', 'kubelet.notReady'],
  // kubelet.notReady sets no condition of ours: kubelet's own Ready condition already says it (the finding's Event goes on the Node).
  conditions: { 'kubelet.unhealthy': 'NodewardenKubeletUnhealthy', 'kubelet.pleg': 'NodewardenKubeletUnhealthy', 'kubelet.notReady': null },
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
        const { pid, notKubelet } = await findKubelet(ctx.host, ctx.previous?.notKubelet, ctx.now());
        if (pid === undefined) return { kind: 'no-data', reason: `no kubelet on this node (nothing answers ${config.healthzUrl} and no process is named kubelet)`, ...(notKubelet ? { carry: { healthz: 'absent', notKubelet } } : {}) };
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
    // The Node as the agent last read it (in the background, under the API client's timeout); no API server: not judged.
    const node = nodeReadyToJudge(ctx.kube?.ready(), ctx.previous?.node);
    if (node) data.node = node;
    if (data.healthz === 'not-listening') {
      // kubelet runs but its healthz is elsewhere or off: its PLEG can still be forecast.
      return { kind: 'ok', observations: evaluateKubelet({ ...data, healthz: 'ok' }, snap.runtimes, config, now, ctx.node), data };
    }
    return { kind: 'ok', observations: evaluateKubelet(data, snap.runtimes, config, now, ctx.node), data };
  },
};
