// pods: "why is this pod stuck?" A pod bound to this node that is Terminating past its deadline, or whose
// container has waited too long to be created or started, gets a targeted diagnosis at once (the
// runbooks' walk: finalizers, immutable files, held mounts, drift, the runtime and its filesystems,
// kubelet's volumes) and one finding that leads with the cause and carries the whole walk. Crash loops
// come from the same watch: restartCount changes seen across runs (the history is this collector's data,
// handed back as ctx.previous) say which containers restart, and their last termination says why.
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import type { Collector, DiagnosisStep, PodContainerStatus, PodDiagnosis, PodInfo, PodStorageLimits, RuntimeContainer, CollectorContext } from './types.js';
import { bandSpec, clearBelowSpec, severityWithHysteresis } from './common/bands.js';
import { formatBytes, shellQuote } from './common/text.js';

export const podsConfigSpec = s.object({
  terminatingMargin: s.duration({ default: '1m', doc: 'a deleted pod is stuck once it outlives its deletionTimestamp (deletion + grace period) by this much' }),
  waitingFor: s.duration({ default: '10m', min: 1000, doc: 'a container waiting to be created or started for longer than this is stuck' }),
  waitingReasons: s.list(s.string({ doc: 'reason' }), {
    default: ['ContainerCreating', 'PodInitializing', 'CreateContainerError', 'RunContainerError'],
    doc: "waiting reasons that mean the node has not created or started the container (image pulls and crash loops are not the node's)",
  }),
  kubeletRootDir: s.string({ default: '/var/lib/kubelet', nonEmpty: true, doc: "kubelet's --root-dir: the pods' volumes live under it" }),
  runtimeRootDirs: s.list(s.string({ doc: 'directory' }), { default: ['/var/lib/docker', '/var/lib/containerd'], doc: 'container runtime roots whose filesystems must not be full or read-only' }),
  maxDiagnoses: s.number({ default: 20, min: 1, integer: true, doc: 'stuck pods diagnosed per cycle; the rest wait for the next cycles' }),
  restartWindow: s.duration({ default: '10m', min: 60_000, doc: 'restarts within this window count toward a crash loop and pod.restarts; a loop resolves after running this long without a restart' }),
  crashLoopRestarts: s.number({ default: 2, min: 2, integer: true, doc: 'restarts of one container within restartWindow that make a crash loop (one restart, a rollout or a single OOM, is not a loop)' }),
  restartsWarning: s.number({ default: 10, min: 1, integer: true, doc: 'pod.restarts is a warning when more containers than this restarted within restartWindow (info otherwise)' }),
  maxTrackedContainers: s.number({ default: 5000, min: 10, integer: true, doc: 'containers whose restarts are remembered between cycles; the ones with the oldest restarts are dropped first' }),
  podLogsDir: s.string({ default: '/var/log/pods', nonEmpty: true, doc: "kubelet's pod log directory, named in pod.crashLoop's message (NAMESPACE_POD_UID/CONTAINER/ under it)" }),
  ephemeral: bandSpec("pod.ephemeral: a pod's local storage (writable layers, logs, emptyDirs) against its ephemeral-storage limits and emptyDir sizeLimits, which kubelet evicts it at", 80, 95),
  ephemeralClearBelow: clearBelowSpec('pod.ephemeral'),
  ephemeralTimeout: s.duration({ default: '10s', min: 1000, doc: "pod.ephemeral's walk of the limited pods' directories: past this deadline the measurement is partial and judged on nothing" }),
  ephemeralMaxEntries: s.number({ default: 500_000, min: 1000, integer: true, doc: "pod.ephemeral's walk stops after this many entries (all limited pods together) and judges nothing that cycle" }),
});
export type PodsConfig = Infer<typeof podsConfigSpec>;

export interface Stuck {
  kind: 'terminating' | 'waiting';
  /** Since when it should have been gone (terminating) or has been waiting. */
  since: string;
  /** How far past the limit, in milliseconds (evidence only: it changes every cycle). */
  overdueMs: number;
  /** For waiting: the container and its reason. */
  container?: string;
  reason?: string;
}

export interface PodsData {
  pods: number;
  /** pod.ephemeral's last samples by pod UID, for the growth rate next cycle. */
  ephemeral?: Record<string, EphemeralSample>;
  /** Why pod.ephemeral judged nothing this cycle (no native module, a partial walk, a runtime not answering). */
  ephemeralNote?: string;
  stuck: string[];
  /** Stuck pods not diagnosed this cycle (over maxDiagnoses). */
  deferred: number;
  /** Restart history by `UID/CONTAINER`, carried to the next cycle (ctx.previous). */
  restarts?: RestartHistory;
}

/** One container's restarts as seen across cycles. */
export interface RestartTrack {
  /** Its restartCount when last seen. */
  count: number;
  /** When it was last seen (ms since the epoch). */
  seenAt: number;
  /** When its restarts within the window happened (ms), oldest first. */
  times: number[];
  /** It was reported as a crash loop last cycle: it stays one until a whole window passes without a restart. */
  looping?: boolean;
}
export type RestartHistory = Record<string, RestartTrack>;

const ms = (iso: string | undefined) => (iso === undefined ? NaN : Date.parse(iso));

/**
 * Pure: whether a pod is stuck. The API server sets deletionTimestamp to the deletion time plus the grace
 * period (deletionGracePeriodSeconds), so "deleted + grace + margin" is deletionTimestamp + margin.
 */
export function stuckState(pod: PodInfo, now: number, config: Pick<PodsConfig, 'terminatingMargin' | 'waitingFor' | 'waitingReasons'>): Stuck | undefined {
  const deadline = ms(pod.deletionTimestamp);
  if (Number.isFinite(deadline)) {
    const over = now - (deadline + config.terminatingMargin);
    return over > 0 ? { kind: 'terminating', since: pod.deletionTimestamp!, overdueMs: over } : undefined;
  }
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed') return undefined;
  for (const c of pod.containers) {
    if (c.state !== 'waiting' || !c.reason || !config.waitingReasons.includes(c.reason)) continue;
    const since = c.finishedAt ?? pod.startTime ?? pod.creationTimestamp;
    const over = now - ms(since) - config.waitingFor;
    if (Number.isFinite(over) && over > 0) return { kind: 'waiting', since: since!, overdueMs: over, container: c.name, reason: c.reason };
  }
  return undefined;
}

const NODE_CAUSES = new Set<DiagnosisStep['cause']>(['immutable', 'mount-held', 'drift', 'runtime', 'volumes']);
const CAUSE_NAMES: Record<DiagnosisStep['cause'], string> = {
  finalizers: 'finalizers',
  immutable: 'immutable or append-only files',
  'mount-held': 'mounts held in other namespaces',
  drift: 'runtime drift',
  runtime: 'runtime health and full or read-only filesystems',
  volumes: 'volumes kubelet has not unmounted',
};

function describeStuck(pod: PodInfo, stuck: Stuck): string {
  const grace = pod.deletionGracePeriodSeconds ?? pod.terminationGracePeriodSeconds;
  return stuck.kind === 'terminating'
    ? `Terminating (due to be gone at ${stuck.since}${grace === undefined ? '' : `, grace period ${grace}s`})`
    : `with container ${stuck.container} waiting in ${stuck.reason} since ${stuck.since}`;
}

/** Pure: the pod.stuck finding for one stuck pod and its diagnosis. Message and remedy hold no clock, so they stay the same across cycles. */
export function podStuckObservation(pod: PodInfo, stuck: Stuck, diagnosis: PodDiagnosis): Observation {
  const subject = `${pod.namespace}/${pod.name}`;
  const found = diagnosis.steps.filter((st) => st.found);
  const cause = found[0];
  const state = describeStuck(pod, stuck);
  let message: string;
  if (cause) {
    const more = found.length > 1 ? ` Also found: ${found.slice(1).map((f) => CAUSE_NAMES[f.cause]).join(', ')} (see evidence).` : '';
    message = `${cause.summary}: pod ${subject} is stuck ${state}.${more}`;
  } else if (diagnosis.steps.length === 0) {
    message = `Pod ${subject} is stuck ${state}; it was not diagnosed: more pods are stuck on this node than collectors.pods.maxDiagnoses, a sign of a node-wide cause (see the other pod.stuck findings).`;
  } else {
    const ruledOut = diagnosis.steps.filter((st) => st.checked).map((st) => CAUSE_NAMES[st.cause]);
    const unchecked = diagnosis.steps.filter((st) => !st.checked).map((st) => CAUSE_NAMES[st.cause]);
    message =
      `nodewarden found no cause on this node for pod ${subject}, stuck ${state}: it ruled out ${ruledOut.join(', ') || 'nothing'}` +
      `${unchecked.length ? ` and could not check ${unchecked.join(', ')}` : ''}; look at kubelet's log and the pod's events.`;
  }
  const obs: Observation = {
    check: 'pod.stuck',
    severity: cause && NODE_CAUSES.has(cause.cause) ? 'critical' : 'warning',
    subject,
    message,
    evidence: {
      pod: { namespace: pod.namespace, name: pod.name, uid: pod.uid, nodeName: pod.nodeName ?? null, phase: pod.phase ?? null, deletionTimestamp: pod.deletionTimestamp ?? null, gracePeriodSeconds: pod.deletionGracePeriodSeconds ?? pod.terminationGracePeriodSeconds ?? null, finalizers: pod.finalizers, owners: pod.owners },
      stuck: { kind: stuck.kind, since: stuck.since, overdueSeconds: Math.round(stuck.overdueMs / 1000), container: stuck.container ?? null, reason: stuck.reason ?? null },
      cause: cause?.cause ?? null,
      walk: diagnosis.steps.map((st) => ({ cause: st.cause, checked: st.checked, found: st.found, summary: st.summary, remedy: st.remedy ?? null, facts: st.facts })),
      containers: diagnosis.containers,
    },
    remedy: cause?.remedy ?? `kubectl -n ${pod.namespace} describe pod ${pod.name}; journalctl -u kubelet --since '-30min' | grep ${pod.uid}`,
    workload: { pod: pod.name, namespace: pod.namespace, podUid: pod.uid },
  };
  return obs;
}

type RestartConfig = Pick<PodsConfig, 'restartWindow' | 'crashLoopRestarts' | 'restartsWarning' | 'maxTrackedContainers' | 'podLogsDir'>;
/** Restart times kept per container: enough to count any sane threshold within the window. */
const MAX_TIMES = 64;
const finished = (c: PodContainerStatus) => ms(c.lastTermination?.finishedAt ?? c.finishedAt);

/**
 * Pure: the restart history after seeing these pods at `now`. A restart is dated by the finishedAt of the
 * termination before it; when the count jumped by more than one between two looks, the ones in between
 * are dated at the earlier look (the earliest they can have been), so they never make a loop by guesswork.
 * A container first seen with restarts counts only its last one, and only if it finished within the window
 * (an old restartCount says nothing about now). Pods gone from the watch are forgotten; over
 * maxTrackedContainers, the containers whose last restart is oldest (or that never restarted) are forgotten first.
 */
export function trackRestarts(podList: readonly PodInfo[], history: RestartHistory | undefined, now: number, config: Pick<PodsConfig, 'restartWindow' | 'maxTrackedContainers'>): RestartHistory {
  const since = now - config.restartWindow;
  const next: [string, RestartTrack][] = [];
  for (const pod of podList) {
    for (const c of pod.containers) {
      const count = c.restartCount;
      // Containers that never restarted are tracked too: a jump from 0 to 3 between two looks is three restarts.
      if (count === undefined || count < 0) continue;
      const key = `${pod.uid}/${c.name}`;
      const prev = history?.[key];
      const end = finished(c);
      const last = Number.isFinite(end) && end <= now ? end : now;
      let times = (prev?.times ?? []).filter((x) => x > since);
      if (!prev) times = count > 0 && last > since && Number.isFinite(end) ? [last] : [];
      else if (count > prev.count) {
        const between = Math.min(count - prev.count - 1, MAX_TIMES);
        times.push(...Array<number>(between).fill(Math.min(prev.seenAt, last)), last);
        times = times.filter((x) => x > since).sort((a, b) => a - b);
      } else if (count < prev.count) times = []; // not the container we knew
      const track: RestartTrack = { count, seenAt: now, times: times.slice(-MAX_TIMES) };
      if (prev?.looping) track.looping = true;
      next.push([key, track]);
    }
  }
  if (next.length > config.maxTrackedContainers) {
    const newest = (t: RestartTrack) => t.times[t.times.length - 1] ?? 0;
    next.sort((a, b) => newest(b[1]) - newest(a[1]));
    next.length = config.maxTrackedContainers;
  }
  return Object.fromEntries(next);
}

const SIGNALS: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 11: 'SIGSEGV', 15: 'SIGTERM' };

/** Pure: what the last termination means, in one sentence, from the reason, exit code and the container's spec. */
export function terminationMeaning(pod: PodInfo, c: PodContainerStatus, logsDir: string): string {
  const t = c.lastTermination;
  const code = t?.exitCode;
  const logs = `its last log lines: kubectl logs -p -n ${pod.namespace} ${pod.name} -c ${c.name}, or on the node ${logsDir.replace(/\/+$/, '')}/${pod.namespace}_${pod.name}_${pod.uid}/${c.name}/`;
  const probe = c.livenessProbe ? `its liveness probe (${c.livenessProbe}) failing` : undefined;
  if (!t || (t.reason === undefined && code === undefined)) return `its last termination is not in the pod's status; ${logs}`;
  const what = `last terminated ${t.reason ?? 'with no reason'}${code === undefined ? '' : ` (exit code ${code})`}`;
  if (t.reason === 'OOMKilled') {
    return c.memoryLimit
      ? `${what}: it was killed at its memory limit of ${c.memoryLimit} (resources.limits.memory); raise the limit or find what grows`
      : `${what}: it has no memory limit (resources.limits.memory), so it was killed when the pod's or the node's memory ran out`;
  }
  if (code === 137) return `${what}: killed by SIGKILL: ${probe ? `${probe}, or a signal` : 'a failing liveness probe or a signal (it has no liveness probe, so a signal: another process, or the runtime)'}`;
  if (code === 143) return `${what}: stopped by SIGTERM: ${probe ? `kubelet restarting it after ${probe}, or a signal` : 'a signal (it has no liveness probe)'}`;
  const signal = code !== undefined && code > 128 ? SIGNALS[code - 128] : undefined;
  return `${what}: the application exited with code ${code ?? 'unknown'}${signal ? ` (128 + ${code! - 128}: ${signal})` : ''}; ${logs}`;
}

const minutes = (msec: number) => (msec === 60_000 ? '1 minute' : msec % 60_000 === 0 ? `${msec / 60_000} minutes` : `${Math.round(msec / 1000)} s`);

/**
 * Pure: pod.crashLoop for each container that restarted crashLoopRestarts times within the window or that
 * kubelet holds in CrashLoopBackOff (once reported, until it runs a whole window without restarting), and
 * pod.restarts for the node. Returns the history with each container's `looping` as reported now. Message
 * and remedy hold no count and no clock: they change when the cause does, not at every restart.
 */
export function evaluateRestarts(podList: readonly PodInfo[], history: RestartHistory, now: number, config: RestartConfig, node: string): { observations: Observation[]; history: RestartHistory } {
  const since = now - config.restartWindow;
  const observations: Observation[] = [];
  const out: RestartHistory = {};
  const restarted: { subject: string; recent: number }[] = [];
  for (const pod of podList) {
    const done = pod.phase === 'Succeeded' || pod.phase === 'Failed';
    for (const c of pod.containers) {
      const key = `${pod.uid}/${c.name}`;
      const track = history[key];
      const recent = track?.times.filter((x) => x > since).length ?? 0;
      const subject = `${pod.namespace}/${pod.name}/${c.name}`;
      if (recent > 0) restarted.push({ subject, recent });
      const backoff = c.state === 'waiting' && c.reason === 'CrashLoopBackOff';
      const looping = !done && (backoff || recent >= config.crashLoopRestarts || (track?.looping === true && recent > 0));
      if (track) {
        out[key] = { ...track };
        delete out[key]!.looping;
        if (looping) out[key]!.looping = true;
      }
      if (!looping) continue;
      observations.push({
        check: 'pod.crashLoop',
        severity: 'warning',
        subject,
        // Not the state (it flips between running and CrashLoopBackOff) nor the counts: those are evidence.
        message: `Container ${c.name} of pod ${pod.namespace}/${pod.name} is crash-looping (restarted ${config.crashLoopRestarts} or more times within ${minutes(config.restartWindow)}, or held in CrashLoopBackOff); ${terminationMeaning(pod, c, config.podLogsDir)}.`,
        evidence: {
          pod: { namespace: pod.namespace, name: pod.name, uid: pod.uid, nodeName: pod.nodeName ?? null, owners: pod.owners },
          container: c.name,
          state: c.state,
          waitingReason: c.state === 'waiting' ? (c.reason ?? null) : null,
          restartCount: c.restartCount ?? null,
          restartsInWindow: recent,
          windowSeconds: Math.round(config.restartWindow / 1000),
          restartTimes: (track?.times ?? []).filter((x) => x > since).map((x) => new Date(x).toISOString()),
          lastTermination: c.lastTermination ? { reason: c.lastTermination.reason ?? null, exitCode: c.lastTermination.exitCode ?? null, signal: c.lastTermination.signal ?? null, finishedAt: c.lastTermination.finishedAt ?? null } : null,
          memoryLimit: c.memoryLimit ?? null,
          livenessProbe: c.livenessProbe ?? null,
        },
        remedy: `kubectl logs -p -n ${pod.namespace} ${pod.name} -c ${c.name} --tail=100; kubectl describe pod -n ${pod.namespace} ${pod.name}`,
        workload: { pod: pod.name, namespace: pod.namespace, podUid: pod.uid, containerName: c.name, ...(c.containerId ? { containerId: c.containerId } : {}) },
      });
    }
  }
  if (restarted.length > 0) {
    restarted.sort((a, b) => b.recent - a.recent || a.subject.localeCompare(b.subject));
    const n = restarted.length;
    const top = restarted.slice(0, 5).map((r) => `${r.subject} (${r.recent})`).join(', ');
    observations.push({
      check: 'pod.restarts',
      severity: n > config.restartsWarning ? 'warning' : 'info',
      subject: 'containers',
      message: `${n} container${n === 1 ? '' : 's'} on this node restarted in the last ${minutes(config.restartWindow)}: ${top}${n > 5 ? ` and ${n - 5} more` : ''} (restarts in brackets).`,
      evidence: { containers: n, windowSeconds: Math.round(config.restartWindow / 1000), warnAbove: config.restartsWarning, top: restarted.slice(0, 20).map((r) => ({ container: r.subject, restarts: r.recent })) },
      remedy: `kubectl get pods -A -o wide --field-selector spec.nodeName=${node} --sort-by='.status.containerStatuses[0].restartCount'`,
    });
  }
  return { observations, history: out };
}

// ---- pod.ephemeral: local storage against the limits kubelet evicts a pod at ----

/** One consumer of a pod's local storage as measured: a container's writable layer or logs, an emptyDir. */
export interface StorageConsumer {
  kind: 'writable-layer' | 'logs' | 'emptydir';
  /** The container's name, or the emptyDir volume's. */
  name: string;
  /** Host path. */
  path: string;
  bytes: number;
}

/** The previous cycle's use of each limited quantity (`emptyDir:NAME`, `container:NAME`, `pod`), and its severity. */
export interface EphemeralSample {
  at: number;
  used: Record<string, number>;
  severity?: 'warning' | 'critical';
}

interface LimitUse {
  key: string;
  used: number;
  limit: number;
  consumers: StorageConsumer[];
  what: string;
}

/** Pure: every limit the pod sets, with what counts against it (kubelet's three eviction rules). */
export function limitUses(limits: PodStorageLimits, consumers: readonly StorageConsumer[]): LimitUse[] {
  const out: LimitUse[] = [];
  const sum = (cs: readonly StorageConsumer[]) => cs.reduce((n, c) => n + c.bytes, 0);
  for (const ed of limits.emptyDirs) {
    if (ed.sizeLimit === undefined || ed.memory) continue;
    const cs = consumers.filter((c) => c.kind === 'emptydir' && c.name === ed.name);
    out.push({ key: `emptyDir:${ed.name}`, used: sum(cs), limit: ed.sizeLimit, consumers: cs, what: `emptyDir ${ed.name}'s ${formatBytes(ed.sizeLimit)} sizeLimit` });
  }
  for (const c of limits.containers) {
    if (c.limit === undefined) continue;
    const cs = consumers.filter((x) => x.kind !== 'emptydir' && x.name === c.name);
    out.push({ key: `container:${c.name}`, used: sum(cs), limit: c.limit, consumers: cs, what: `container ${c.name}'s ${formatBytes(c.limit)} ephemeral-storage limit (its writable layer and logs)` });
  }
  // kubelet's pod limit is the sum of the limits its containers set, against everything the pod writes.
  const set = limits.containers.filter((c) => c.limit !== undefined);
  if (set.length > 0) {
    const limit = set.reduce((n, c) => n + c.limit!, 0);
    const memory = new Set(limits.emptyDirs.filter((e) => e.memory).map((e) => e.name));
    const cs = consumers.filter((c) => !(c.kind === 'emptydir' && memory.has(c.name)));
    out.push({ key: 'pod', used: sum(cs), limit, consumers: cs, what: `its ${formatBytes(limit)} ephemeral-storage limit (the sum of its containers' limits, against their layers, logs and its emptyDirs)` });
  }
  return out;
}

const describeConsumer = (c: StorageConsumer): string => (c.kind === 'emptydir' ? `emptyDir ${c.name}` : c.kind === 'logs' ? `the logs of ${c.name}` : `the writable layer of ${c.name}`);

/**
 * Pure: pod.ephemeral for one pod, from its limits, its measured consumers and the last cycle's sample:
 * the limit closest to being passed (kubelet evicts the pod at any of them), over the band.
 */
export function evaluateEphemeral(pod: PodInfo, limits: PodStorageLimits, consumers: readonly StorageConsumer[], previous: EphemeralSample | undefined, now: number, config: Pick<PodsConfig, 'ephemeral' | 'ephemeralClearBelow'>): { observation?: Observation; sample: EphemeralSample } {
  const uses = limitUses(limits, consumers);
  const sample: EphemeralSample = { at: now, used: Object.fromEntries(uses.map((u) => [u.key, u.used])) };
  const worst = uses.filter((u) => u.limit > 0).sort((a, b) => b.used / b.limit - a.used / a.limit)[0];
  if (!worst) return { sample };
  const pct = (worst.used / worst.limit) * 100;
  const severity = severityWithHysteresis(pct, config.ephemeral, config.ephemeralClearBelow, previous?.severity);
  if (!severity || severity === 'info') return { sample };
  sample.severity = severity;
  const before = previous?.used[worst.key];
  const minutes = previous ? (now - previous.at) / 60_000 : 0;
  // A rate from two samples at least 10 s apart; only growth is worth saying.
  const rate = before !== undefined && minutes >= 1 / 6 ? (worst.used - before) / minutes : undefined;
  const top = [...worst.consumers].sort((a, b) => b.bytes - a.bytes)[0];
  const left = worst.limit - worst.used;
  const growth = rate !== undefined && rate > 0 ? `, growing ${formatBytes(rate)}/min${left > 0 ? ` (the limit in about ${Math.max(1, Math.round(left / rate))} min)` : ''}` : '';
  const where = top && worst.key === 'pod' ? `, most in ${describeConsumer(top)} (${formatBytes(top.bytes)})` : top && worst.key.startsWith('container:') && worst.consumers.length > 1 ? ` (${worst.consumers.map((c) => `${c.kind === 'logs' ? 'logs' : 'writable layer'} ${formatBytes(c.bytes)}`).join(', ')})` : '';
  const podName = `${pod.namespace}/${pod.name}`;
  const observation: Observation = {
    check: 'pod.ephemeral',
    severity,
    subject: podName,
    message:
      `Pod ${podName} uses ${formatBytes(worst.used)} of ${worst.what} (${Math.floor(pct)}%)${where}${growth}: ` +
      (worst.used >= worst.limit ? 'past it, kubelet evicts the pod at its next eviction check.' : 'kubelet evicts the pod when it passes the limit.'),
    evidence: {
      limit: worst.key,
      usedBytes: worst.used,
      limitBytes: worst.limit,
      percent: Math.round(pct * 10) / 10,
      ratePerMinute: rate === undefined ? null : Math.round(rate),
      consumers: worst.consumers.slice(0, 10).map((c) => ({ kind: c.kind, name: c.name, path: c.path, bytes: c.bytes })),
    },
    remedy: `kubectl -n ${shellQuote(pod.namespace)} describe pod ${shellQuote(pod.name)}${top ? `; du -sh ${shellQuote(top.path)}` : ''}  # what writes there, or raise the limit in the pod's spec`,
    workload: { pod: pod.name, namespace: pod.namespace, podUid: pod.uid },
  };
  return { observation, sample };
}

/** The directories to measure for a limited pod: its emptyDirs (not memory-backed), its containers' writable layers and logs. */
export function storageRoots(pod: PodInfo, limits: PodStorageLimits, containers: readonly RuntimeContainer[], config: Pick<PodsConfig, 'kubeletRootDir' | 'podLogsDir'>): Omit<StorageConsumer, 'bytes'>[] {
  const roots: Omit<StorageConsumer, 'bytes'>[] = [];
  const kubelet = config.kubeletRootDir.replace(/\/+$/, '');
  for (const ed of limits.emptyDirs) if (!ed.memory) roots.push({ kind: 'emptydir', name: ed.name, path: `${kubelet}/pods/${pod.uid}/volumes/kubernetes.io~empty-dir/${ed.name}` });
  const logs = `${config.podLogsDir.replace(/\/+$/, '')}/${pod.namespace}_${pod.name}_${pod.uid}`;
  for (const c of limits.containers) {
    roots.push({ kind: 'logs', name: c.name, path: `${logs}/${c.name}` });
    // The container's writable layers (every instance the runtime still holds: restarts leave the old one until GC).
    for (const rc of containers) {
      if (rc.workload.podUid !== pod.uid || rc.workload.containerName !== c.name) continue;
      if (rc.storage.upperDir) roots.push({ kind: 'writable-layer', name: c.name, path: rc.storage.upperDir });
      if (rc.manager === 'docker' && rc.storage.containerDir) roots.push({ kind: 'logs', name: c.name, path: rc.storage.containerDir });
    }
  }
  return roots;
}

/**
 * pod.ephemeral for every pod that sets a local-storage limit: one walk of their directories (never the
 * others': a node's unlimited pods cost nothing), judged against the limits. While the measurement cannot
 * be trusted (partial walk, a runtime that cannot say which layers are the pod's) what fired stays.
 */
async function ephemeralFindings(ctx: CollectorContext<PodsConfig, PodsData>, podList: readonly PodInfo[], now: number): Promise<{ observations: Observation[]; samples?: Record<string, EphemeralSample>; note?: string }> {
  const limited = podList.filter((p) => p.storage && !p.deletionTimestamp && p.phase !== 'Succeeded' && p.phase !== 'Failed');
  if (limited.length === 0) return { observations: [] };
  const kept = (): Observation[] =>
    (ctx.active?.() ?? [])
      .filter((f) => f.check === 'pod.ephemeral' && limited.some((p) => `${p.namespace}/${p.name}` === f.subject))
      .map((f) => ({ check: f.check, severity: f.severity, subject: f.subject, message: f.message, evidence: f.evidence, remedy: f.remedy, ...(f.workload ? { workload: f.workload } : {}) }));
  const held = (note: string) => ({ observations: kept(), ...(ctx.previous?.ephemeral ? { samples: ctx.previous.ephemeral } : {}), note });
  if (!ctx.walker) return held(`${limited.length} pod(s) with storage limits not measured: the native module is not built (npm rebuild)`);
  const snap = await ctx.runtime.snapshot();
  const blind = snap.runtimes.filter((r) => r.status !== 'ok' && r.status !== 'absent');
  if (blind.length > 0) return held(`pods' storage not judged while ${blind.map((r) => `${r.name} is ${r.status}`).join(' and ')} (their writable layers cannot be found)`);
  const plans = limited.map((pod) => ({ pod, roots: storageRoots(pod, pod.storage!, snap.containers, ctx.config) }));
  const roots = plans.flatMap((p) => p.roots);
  const walked = await ctx.walker.walk(
    roots.map((r) => ctx.host.hostPath(r.path)),
    { threads: 2, timeoutMs: ctx.config.ephemeralTimeout, maxEntries: ctx.config.ephemeralMaxEntries, excludes: [], devices: roots.map(() => null) },
  );
  if (walked.partial) return held(`the walk of ${limited.length} limited pod(s) was partial (${walked.partial}): not judged`);
  const observations: Observation[] = [];
  const samples: Record<string, EphemeralSample> = {};
  let i = 0;
  for (const { pod, roots: mine } of plans) {
    const consumers: StorageConsumer[] = mine.map((r) => ({ ...r, bytes: walked.roots[i++]?.bytes ?? 0 }));
    const r = evaluateEphemeral(pod, pod.storage!, consumers, ctx.previous?.ephemeral?.[pod.uid], now, ctx.config);
    samples[pod.uid] = r.sample;
    if (r.observation) observations.push(r.observation);
  }
  return { observations, samples };
}

export const pods: Collector<PodsConfig, PodsData> = {
  name: 'pods',
  description: 'Pods on this node stuck Terminating or waiting to start, each with a diagnosis of why; containers restarting in a loop',
  checks: ['pod.stuck', 'pod.crashLoop', 'pod.restarts', 'pod.ephemeral'],
  // pod.stuck: the Pod gets an Event instead; a crash loop or a pod near its storage limit is the pod's own, not the node's condition.
  conditions: { 'pod.stuck': null, 'pod.crashLoop': null, 'pod.restarts': null, 'pod.ephemeral': null },
  defaultIntervalMs: 30_000,
  defaultTimeoutMs: 25_000,
  configSpec: podsConfigSpec,
  async collect(ctx) {
    if (!ctx.pods) return { kind: 'no-data', reason: 'no API server configured (kubernetes.enabled is false): the agent does not know its pods' };
    const state = ctx.pods.list();
    if (state.status === 'absent') return { kind: 'no-data', reason: state.reason };
    // Not knowing the pods is not the same as no pod being stuck: earlier findings stand.
    if (state.status === 'unsynced') return { kind: 'unavailable', reason: state.reason };
    const now = ctx.now();
    // Restarts first: cheap, and not to be skipped when the diagnoses below use up the run.
    const tracked = trackRestarts(state.pods, ctx.previous?.restarts, now, ctx.config);
    const restarts = evaluateRestarts(state.pods, tracked, now, ctx.config, ctx.node);
    const stuck = state.pods
      .map((pod) => ({ pod, stuck: stuckState(pod, now, ctx.config) }))
      .filter((x): x is { pod: PodInfo; stuck: Stuck } => x.stuck !== undefined)
      .sort((a, b) => b.stuck.overdueMs - a.stuck.overdueMs);
    const active = ctx.active?.() ?? [];
    const observations: Observation[] = [...restarts.observations];
    for (const { pod, stuck: st } of stuck.slice(0, ctx.config.maxDiagnoses)) {
      if (ctx.signal.aborted) break;
      observations.push(podStuckObservation(pod, st, await ctx.pods.diagnose(pod, active, ctx.signal)));
    }
    // Over the cap (a node-wide failure): the rest are named, undiagnosed, in the same order every cycle.
    for (const { pod, stuck: st } of stuck.slice(ctx.config.maxDiagnoses)) {
      observations.push(podStuckObservation(pod, st, { steps: [], containers: [] }));
    }
    const ephemeral = await ephemeralFindings(ctx, state.pods, now);
    observations.push(...ephemeral.observations);
    return {
      kind: 'ok',
      observations,
      data: {
        pods: state.pods.length,
        stuck: stuck.map((x) => `${x.pod.namespace}/${x.pod.name}`),
        deferred: Math.max(0, stuck.length - ctx.config.maxDiagnoses),
        restarts: restarts.history,
        ...(ephemeral.samples ? { ephemeral: ephemeral.samples } : {}),
        ...(ephemeral.note ? { ephemeralNote: ephemeral.note } : {}),
      },
    };
  },
};

/**
 * Pure: for `why`, which of an evicted pod's consumers grew past which bound, from kubelet's eviction
 * message (PodInfo.eviction): its kind, the host path to look at and the bytes kubelet named. Undefined
 * for a pod not evicted for local storage.
 */
export function describeEviction(pod: PodInfo, config: Pick<PodsConfig, 'kubeletRootDir' | 'podLogsDir'>): string | undefined {
  const e = pod.eviction;
  if (!e) return undefined;
  const id = `${pod.namespace}/${pod.name}`;
  const limit = e.limit === undefined ? '' : ` of ${formatBytes(e.limit)}`;
  const logs = (c: string) => `${config.podLogsDir.replace(/\/+$/, '')}/${pod.namespace}_${pod.name}_${pod.uid}/${c}`;
  switch (e.scope) {
    case 'emptyDir':
      return `Kubelet evicted ${id} for local storage: emptyDir ${e.volume} grew past its sizeLimit${limit} (${config.kubeletRootDir.replace(/\/+$/, '')}/pods/${pod.uid}/volumes/kubernetes.io~empty-dir/${e.volume}).`;
    case 'container':
      return `Kubelet evicted ${id} for local storage: container ${e.container}'s writable layer and logs (${logs(e.container!)}) grew past its ephemeral-storage limit${limit}.`;
    case 'pod':
      return `Kubelet evicted ${id} for local storage: its containers' writable layers, logs and emptyDirs together grew past the pod's ephemeral-storage limit${limit} (the sum of its containers' limits).`;
    case 'node-pressure': {
      const top = [...e.usage].sort((a, b) => b.bytes - b.request - (a.bytes - a.request))[0];
      const who = top ? `: container ${top.container} used ${formatBytes(top.bytes)} against a request of ${formatBytes(top.request)} (its writable layer and logs, ${logs(top.container)})` : '';
      return `Kubelet evicted ${id} because the node ran low on ephemeral storage (DiskPressure), ranking pods by use over request${who}.`;
    }
  }
}
