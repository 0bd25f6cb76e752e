// pods: "why is this pod stuck?" A pod bound to this node that is Terminating past its deadline, or whose
// container has waited too long to be created or started, gets a targeted diagnosis at once (the
// runbooks' walk: finalizers, immutable files, held mounts, drift, the runtime and its filesystems,
// kubelet's volumes) and one finding that leads with the cause and carries the whole walk.
import type { Observation } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import type { Collector, DiagnosisStep, PodDiagnosis, PodInfo } from './types.js';

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
  stuck: string[];
  /** Stuck pods not diagnosed this cycle (over maxDiagnoses). */
  deferred: number;
}

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

export const pods: Collector<PodsConfig, PodsData> = {
  name: 'pods',
  description: 'Pods on this node stuck Terminating or waiting to start, each with a diagnosis of why',
  checks: ['pod.stuck'],
  conditions: { 'pod.stuck': null }, // the Pod gets an Event instead
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
    const stuck = state.pods
      .map((pod) => ({ pod, stuck: stuckState(pod, now, ctx.config) }))
      .filter((x): x is { pod: PodInfo; stuck: Stuck } => x.stuck !== undefined)
      .sort((a, b) => b.stuck.overdueMs - a.stuck.overdueMs);
    const active = ctx.active?.() ?? [];
    const observations: Observation[] = [];
    for (const { pod, stuck: st } of stuck.slice(0, ctx.config.maxDiagnoses)) {
      if (ctx.signal.aborted) break;
      observations.push(podStuckObservation(pod, st, await ctx.pods.diagnose(pod, active, ctx.signal)));
    }
    // Over the cap (a node-wide failure): the rest are named, undiagnosed, in the same order every cycle.
    for (const { pod, stuck: st } of stuck.slice(ctx.config.maxDiagnoses)) {
      observations.push(podStuckObservation(pod, st, { steps: [], containers: [] }));
    }
    return { kind: 'ok', observations, data: { pods: state.pods.length, stuck: stuck.map((x) => `${x.pod.namespace}/${x.pod.name}`), deferred: Math.max(0, stuck.length - ctx.config.maxDiagnoses) } };
  },
};
