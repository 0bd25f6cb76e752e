// Shared by the aggregator (evicted, --agent-auth kubernetes) and the CLI, so it lives with the contract.
// Where the Kubernetes API server is, found one way for every command that talks to it: $KUBECONFIG,
// then ~/.kube/config, then the pod's own service account (in-cluster). Without any of them,
// @kubernetes/client-node falls back to http://localhost:8080 and fails with "HTTP protocol is not
// allowed when skipTLSVerify is not set or false", which tells a user nothing: this says in one line
// what it tried.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NodewardenError } from './errors.js';

export type ApiServerSource = { kind: 'kubeconfig'; from: string } | { kind: 'in-cluster' };

const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export function locateApiServer(what: string, env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = existsSync): ApiServerSource {
  const tried: string[] = [];
  const fromEnv = env['KUBECONFIG'];
  if (fromEnv) {
    const files = fromEnv.split(path.delimiter).filter(Boolean);
    if (files.some((f) => exists(f))) return { kind: 'kubeconfig', from: `$KUBECONFIG (${fromEnv})` };
    tried.push(`$KUBECONFIG (${fromEnv}: no such file)`);
  } else tried.push('$KUBECONFIG (unset)');
  const home = path.join(env['HOME'] || os.homedir(), '.kube', 'config');
  if (exists(home)) return { kind: 'kubeconfig', from: home };
  tried.push(`${home} (not there)`);
  if (env['KUBERNETES_SERVICE_HOST'] && exists(SA_TOKEN)) return { kind: 'in-cluster' };
  tried.push(env['KUBERNETES_SERVICE_HOST'] ? `in-cluster (${SA_TOKEN} missing)` : 'in-cluster (not in a pod: KUBERNETES_SERVICE_HOST unset)');
  throw new NodewardenError('NW_ERR_CONFIG', `${what}: no Kubernetes API server found; tried ${tried.join(', ')}. Set KUBECONFIG to a kubeconfig file, or run it in a pod`);
}

/** A client-node KubeConfig loaded from where locateApiServer found the API server. */
export async function loadKubeConfig(what: string): Promise<import('@kubernetes/client-node').KubeConfig> {
  const source = locateApiServer(what);
  const k = await import('@kubernetes/client-node');
  const kc = new k.KubeConfig();
  try {
    if (source.kind === 'in-cluster') kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (err) {
    throw new NodewardenError('NW_ERR_CONFIG', `${what}: cannot load the kubeconfig from ${source.kind === 'in-cluster' ? 'the pod' : source.from}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return kc;
}
