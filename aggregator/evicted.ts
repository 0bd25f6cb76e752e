// Evicted pods: the runbooks' `kubectl get pods | grep Evicted | awk | xargs kubectl delete pod` loop.
// Lists pods kubelet evicted (phase Failed, reason Evicted) with their node and message, and deletes
// them when asked (`nodewarden evicted`), or on a schedule in the aggregator (`--evicted-cleanup`).
// Uses @kubernetes/client-node for the kubeconfig (contexts, exec plugins, in-cluster).
import { loadKubeConfig } from '../protocol/kubeconfig.js';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { NodewardenError, errorMessage } from '../protocol/errors.js';

export interface EvictedPod {
  namespace: string;
  name: string;
  node: string;
  message: string;
  evictedAt: string;
}

export interface EvictedQuery {
  /** A namespace, or undefined for every namespace. */
  namespace?: string;
  olderThanMs: number;
  now?: number;
}

/** When the pod was evicted: its last condition change, else its containers' end, else its creation. */
function evictedAt(p: V1Pod): string {
  const times = [
    ...(p.status?.conditions ?? []).map((c) => c.lastTransitionTime),
    ...(p.status?.containerStatuses ?? []).map((c) => c.state?.terminated?.finishedAt),
  ]
    .filter((x): x is Date => x instanceof Date || typeof x === 'string')
    .map((x) => new Date(x).getTime())
    .filter(Number.isFinite);
  const t = times.length ? Math.max(...times) : p.metadata?.creationTimestamp ? new Date(p.metadata.creationTimestamp).getTime() : 0;
  return new Date(t).toISOString();
}

export async function kubeApi(): Promise<{ api: CoreV1Api; namespace: string; server: string }> {
  const k = await import('@kubernetes/client-node');
  const kc = await loadKubeConfig('evicted');
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new NodewardenError('NW_ERR_CONFIG', 'no current cluster: set KUBECONFIG, use a kubeconfig with a current-context, or run in a pod');
  const ctx = kc.getContextObject(kc.getCurrentContext());
  return { api: kc.makeApiClient(k.CoreV1Api), namespace: ctx?.namespace ?? 'default', server: cluster.server };
}

function apiError(err: unknown, what: string): NodewardenError {
  const e = err as { code?: number; body?: unknown; message?: string };
  let message = e.message ?? String(err);
  try {
    const body = typeof e.body === 'string' ? (JSON.parse(e.body) as { message?: string }) : (e.body as { message?: string } | undefined);
    if (body?.message) message = body.message;
  } catch {
    // keep the message
  }
  return new NodewardenError('NW_ERR_RUNTIME', `${what}: ${e.code ? `${e.code} ` : ''}${message}`);
}

export async function listEvicted(api: CoreV1Api, q: EvictedQuery): Promise<EvictedPod[]> {
  const fieldSelector = 'status.phase=Failed';
  let pods: V1Pod[];
  try {
    const list = q.namespace === undefined ? await api.listPodForAllNamespaces({ fieldSelector }) : await api.listNamespacedPod({ namespace: q.namespace, fieldSelector });
    pods = list.items;
  } catch (err) {
    throw apiError(err, `listing pods${q.namespace ? ` in ${q.namespace}` : ''}`);
  }
  const now = q.now ?? Date.now();
  return pods
    .filter((p) => p.status?.reason === 'Evicted')
    .map((p) => ({ namespace: p.metadata?.namespace ?? '', name: p.metadata?.name ?? '', node: p.spec?.nodeName ?? '', message: p.status?.message ?? '', evictedAt: evictedAt(p) }))
    .filter((p) => now - Date.parse(p.evictedAt) >= q.olderThanMs)
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
}

/** Deletes each pod; returns the ones that failed with why. */
export async function deleteEvicted(api: CoreV1Api, pods: readonly EvictedPod[], onDeleted: (p: EvictedPod) => void): Promise<{ pod: EvictedPod; error: string }[]> {
  const failed: { pod: EvictedPod; error: string }[] = [];
  for (const p of pods) {
    try {
      await api.deleteNamespacedPod({ name: p.name, namespace: p.namespace });
      onDeleted(p);
    } catch (err) {
      failed.push({ pod: p, error: apiError(err, `deleting ${p.namespace}/${p.name}`).message });
    }
  }
  return failed;
}

/** One cleanup round: evicted pods older than `olderThanMs` are deleted, each logged; it never throws. */
export async function cleanUpEvicted(api: CoreV1Api, olderThanMs: number, log: Logger): Promise<void> {
  try {
    const pods = await listEvicted(api, { olderThanMs });
    const failed = await deleteEvicted(api, pods, (p) => log.info({ namespace: p.namespace, pod: p.name, node: p.node, evictedAt: p.evictedAt }, 'deleted evicted pod'));
    log.info({ found: pods.length, failed: failed.length }, 'evicted-pod cleanup done');
    for (const f of failed) log.warn({ pod: `${f.pod.namespace}/${f.pod.name}`, error: f.error }, 'could not delete evicted pod');
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'evicted-pod cleanup failed');
  }
}

export interface EvictedCleanupOptions {
  everyMs: number;
  olderThanMs: number;
  log: Logger;
}

/** The aggregator's `--evicted-cleanup`: a round now, then one every `everyMs`; returns the stop. */
export function scheduleEvictedCleanup(api: CoreV1Api, opts: EvictedCleanupOptions): () => void {
  const round = () => void cleanUpEvicted(api, opts.olderThanMs, opts.log);
  const timer = setInterval(round, opts.everyMs);
  round();
  return () => clearInterval(timer);
}
