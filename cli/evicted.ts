// `nodewarden evicted [--namespace NS | --all-namespaces] [--older-than 1h] [--delete]`.
import { deleteEvicted, kubeApi, listEvicted } from '../aggregator/evicted.js';
import { formatUptime, table, truncate } from './format.js';

export interface EvictedCliOptions {
  namespace?: string;
  allNamespaces: boolean;
  olderThanMs: number;
  delete: boolean;
  json: boolean;
  columns?: number;
}

/** Exit code: 0 done (or nothing to do), 1 some deletions failed. */
export async function runEvicted(opts: EvictedCliOptions, out: (s: string) => void): Promise<number> {
  const { api, namespace } = await kubeApi();
  const ns = opts.allNamespaces ? undefined : (opts.namespace ?? namespace);
  const now = Date.now();
  const pods = await listEvicted(api, { ...(ns !== undefined ? { namespace: ns } : {}), olderThanMs: opts.olderThanMs, now });
  if (opts.json && !opts.delete) {
    out(`${JSON.stringify(pods, null, 2)}\n`);
    return 0;
  }
  if (!opts.json) {
    if (pods.length === 0) out(`No evicted pods${ns ? ` in ${ns}` : ''} older than ${formatUptime(opts.olderThanMs / 1000)}.\n`);
    else
      out(
        `${table(
          ['NAMESPACE', 'NAME', 'NODE', 'AGE', 'MESSAGE'],
          pods.map((p) => [p.namespace, p.name, p.node, formatUptime((now - Date.parse(p.evictedAt)) / 1000), truncate(p.message, Math.max(40, (opts.columns ?? 160) - 90))]),
        )}\n`,
      );
  }
  if (!opts.delete) return 0;
  const failed = await deleteEvicted(api, pods, (p) => out(opts.json ? `${JSON.stringify({ deleted: p })}\n` : `deleted ${p.namespace}/${p.name}\n`));
  for (const f of failed) out(opts.json ? `${JSON.stringify({ failed: f.pod, error: f.error })}\n` : `failed ${f.pod.namespace}/${f.pod.name}: ${f.error}\n`);
  return failed.length > 0 ? 1 : 0;
}
