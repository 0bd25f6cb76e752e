// `nodewarden aggregator`: the server agents stream to and people tail.
import { randomBytes } from 'node:crypto';
import { createLogger } from '../agent/log.js';
import { Aggregator, DEFAULT_LIMITS, type AggregatorLimits } from '../aggregator/server.js';
import { TokenWatcher, loadTokens, type Token } from '../aggregator/auth.js';
import { NodewardenError } from '../protocol/errors.js';
import { parseHostPort } from '../protocol/address.js';
import { VERSION } from '../protocol/version.js';

export interface AggregatorCliOptions {
  listen: string;
  tokensDir?: string;
  tlsCert?: string;
  tlsKey?: string;
  journal?: string;
  history?: string;
  silentAfterMs: number;
  heartbeatMs: number;
  logLevel?: string;
  /** Delete evicted pods this often (off when absent). */
  evictedCleanupMs?: number;
  evictedOlderThanMs: number;
  /** `tokens` (default): agents present a token from DIR/agent; `kubernetes`: also a bound service-account token. */
  agentAuth?: string;
  /** NAMESPACE:NAME of the agents' service account (kubernetes mode). */
  agentServiceAccount?: string;
  maxConnections?: string;
  maxNodesPerToken?: string;
  maxFindingsPerNode?: string;
}

function count(flag: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new NodewardenError('NW_ERR_USAGE', `${flag} must be a whole number >= 1, got ${v}`);
  return n;
}

export function parseListen(listen: string): { host: string; port: number } {
  const hostPort = parseHostPort(listen);
  if (!hostPort) throw new NodewardenError('NW_ERR_USAGE', `--listen must be HOST:PORT, got ${listen}`);
  return hostPort;
}

export async function runAggregator(opts: AggregatorCliOptions): Promise<void> {
  const { host, port } = parseListen(opts.listen);
  if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new NodewardenError('NW_ERR_USAGE', '--tls-cert and --tls-key go together');
  const dir = opts.tokensDir ?? process.env['NODEWARDEN_TOKENS_DIR'];
  if (!dir) throw new NodewardenError('NW_ERR_USAGE', '--tokens-dir DIR is required (files agent, tail, admin with one token each; see docs/reference.md)');
  const agentAuth = opts.agentAuth ?? 'tokens';
  if (agentAuth !== 'tokens' && agentAuth !== 'kubernetes') throw new NodewardenError('NW_ERR_USAGE', `--agent-auth must be tokens or kubernetes, got ${agentAuth}`);
  const serviceAccount = opts.agentServiceAccount ?? 'nodewarden:nodewarden-agent';
  if (!/^[a-z0-9.-]+:[a-z0-9.-]+$/.test(serviceAccount)) throw new NodewardenError('NW_ERR_USAGE', `--agent-service-account must be NAMESPACE:NAME, got ${serviceAccount}`);
  // With Kubernetes agent auth, DIR/agent is optional (shared tokens are for nodes outside the cluster).
  const tokens: Token[] = loadTokens(dir, { allowEmpty: agentAuth === 'kubernetes' });
  const limits: Partial<AggregatorLimits> = {
    maxConnections: count('--max-connections', opts.maxConnections, DEFAULT_LIMITS.maxConnections),
    maxNodesPerToken: count('--max-nodes-per-token', opts.maxNodesPerToken, DEFAULT_LIMITS.maxNodesPerToken),
    maxFindingsPerNode: count('--max-findings-per-node', opts.maxFindingsPerNode, DEFAULT_LIMITS.maxFindingsPerNode),
  };
  const history = opts.history === undefined ? 10_000 : Number(opts.history);
  if (!Number.isInteger(history) || history < 1) throw new NodewardenError('NW_ERR_USAGE', `--history must be a whole number >= 1, got ${opts.history}`);
  const log = createLogger({ component: 'aggregator', level: opts.logLevel ?? 'info' });
  let kubeAuth: import('../aggregator/kube-auth.js').KubeAgentAuth | undefined;
  if (agentAuth === 'kubernetes') {
    const { KubeAgentAuth, kubeAuthApi } = await import('../aggregator/kube-auth.js');
    const { api, server } = await kubeAuthApi();
    kubeAuth = new KubeAgentAuth(api, { audience: 'nodewarden', serviceAccounts: [serviceAccount], timeoutMs: 10_000, cacheMs: 5 * 60_000, maxInFlight: 64 });
    log.info({ server, serviceAccount, audience: 'nodewarden' }, 'agents authenticate with bound service-account tokens (TokenReview)');
  }
  const agg = new Aggregator({
    host,
    port,
    tokens,
    ...(opts.tlsCert && opts.tlsKey ? { tls: { cert: opts.tlsCert, key: opts.tlsKey } } : {}),
    ...(opts.journal ? { journal: opts.journal } : {}),
    historyLimit: history,
    silentAfterMs: opts.silentAfterMs,
    heartbeatMs: opts.heartbeatMs,
    limits,
    ...(kubeAuth ? { kubeAuth } : {}),
    version: VERSION,
    log,
  });
  await agg.start();
  // The last resort, not the design: every handler refuses its own failures. Anything that still
  // escapes is logged with a code and counted, and the server serves on.
  process.on('uncaughtException', (err) => agg.failed('process', err, 'uncaught exception; serving on'));
  process.on('unhandledRejection', (err) => agg.failed('process', err, 'unhandled rejection; serving on'));
  // Token files are re-read when they change (a Secret volume is updated in place) and on SIGHUP.
  const watcher = new TokenWatcher(dir, { allowEmpty: agentAuth === 'kubernetes', onTokens: (t) => agg.replaceTokens(t), onError: (err) => agg.failed('tokens', err, `${err.message}; keeping the previous tokens`) }, tokens);
  watcher.start();
  process.on('SIGHUP', () => {
    log.info({ dir }, 'SIGHUP: reloading tokens');
    watcher.reload();
  });
  let stopCleanup: (() => void) | undefined;
  if (opts.evictedCleanupMs !== undefined) {
    const everyMs = opts.evictedCleanupMs;
    const olderThanMs = opts.evictedOlderThanMs;
    // Loaded only when asked for: @kubernetes/client-node costs memory (docs/design.md).
    const { kubeApi, scheduleEvictedCleanup } = await import('../aggregator/evicted.js');
    const { api } = await kubeApi();
    stopCleanup = scheduleEvictedCleanup(api, { everyMs, olderThanMs, log });
  }
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  stopCleanup?.();
  watcher.stop();
  log.info('aggregator stopping');
  await agg.stop();
  process.exit(0);
}

/** A random token, for `nodewarden up` and for the README's generation recipe. */
export function randomToken(): string {
  return randomBytes(24).toString('base64url');
}
