// `--agent-auth kubernetes`: an agent presents its pod's bound, projected service-account token
// (audience `nodewarden`); the aggregator asks the API server who it is with a TokenReview and takes
// the node from the token itself (the `authentication.kubernetes.io/node-name` extra, in bound tokens
// since Kubernetes 1.30), falling back to the named pod's spec.nodeName (checked against the pod uid
// the token names). Such a credential speaks for that one node only. Nodes deleted from the cluster
// are found here too (GET node: 404).
import { loadKubeConfig } from '../protocol/kubeconfig.js';
import { createHash } from 'node:crypto';
import { NodewardenError } from '../protocol/errors.js';
import { withDeadline } from '../protocol/deadline.js';
import type { Identity } from './auth.js';

export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

/** The three API calls used, so tests and the real client meet in one place. */
export interface KubeAuthApi {
  tokenReview(token: string, audiences: string[]): Promise<{ authenticated?: boolean; error?: string; audiences?: string[]; user?: { username?: string; extra?: Record<string, string[]> } }>;
  /** spec.nodeName and metadata.uid of a pod; undefined when it does not exist. */
  pod(namespace: string, name: string): Promise<{ nodeName?: string; uid?: string } | undefined>;
  /** Whether a Node of that name exists. */
  nodeExists(name: string): Promise<boolean>;
}

export interface KubeAuthOptions {
  audience: string;
  /** Service accounts whose tokens may speak for a node, as "NAMESPACE:NAME". */
  serviceAccounts: string[];
  timeoutMs: number;
  /** How long a positive review is reused for the same token. */
  cacheMs: number;
  /** TokenReviews in flight at once; more are refused (503) rather than queued. */
  maxInFlight: number;
  /** How long a refused token (401/403) is answered from memory without a new TokenReview. Default 60 s. */
  negativeCacheMs?: number;
  /** TokenReviews in flight at once for one remote address. Default 2. */
  maxInFlightPerAddress?: number;
  /** Part of maxInFlight kept for tokens that were reviewed positively before. Default a quarter. */
  reservedForKnown?: number;
  /** Reviews of new tokens one remote address may cause: a burst, then this many per second. Default 10, then 1/s. */
  perAddressRate?: { burst: number; perSecond: number };
  now?: () => number;
}

export type Review = { ok: true; identity: Identity } | { ok: false; status: 401 | 403 | 503; reason: string };

const CACHE_MAX = 20_000;
/** A JWT: three base64url parts. Anything else is not worth a TokenReview. */
const JWT = /^[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+$/;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(p, ms, () => new NodewardenError('NW_ERR_TIMEOUT', `${what}: no answer from the API server within ${ms} ms`), { unref: true });
}

/**
 * Why the bounds: every TokenReview costs the API server, and before they existed JWT-shaped garbage from
 * unauthenticated clients became one review each (1,647 in 2.3 s) while real agents got 503. So a
 * refused token is remembered for a while (negative cache), and the same token presented again while
 * its review is in flight waits for that review; one address may have only a few reviews in flight, and
 * reviews of new tokens from one address are rate-limited (a burst, then one a second: two in flight
 * against a fast API server would still be hundreds a second); and part of the global in-flight budget is kept for tokens this aggregator has accepted before
 * (an agent whose cached review expired, or that reconnects after a restart of its link), so a flood of
 * new tokens cannot starve the agents that already belong.
 */
export class KubeAgentAuth {
  private readonly cache = new Map<string, { identity: Identity; until: number }>();
  private readonly refused = new Map<string, { review: Review; until: number }>();
  /** Token hashes that were once accepted: they may use the reserved part of the in-flight budget. */
  private readonly known = new Set<string>();
  private readonly perAddress = new Map<string, number>();
  /** Each address's bucket of reviews of new tokens. */
  private readonly addressRate = new Map<string, { tokens: number; at: number }>();
  /** Reviews in flight by token hash: the same token presented again meanwhile waits for that answer. */
  private readonly asking = new Map<string, Promise<Review>>();
  private inFlight = 0;
  /** Reviews answered without asking the API server, by why: for /metrics and tests. */
  readonly stats = { reviews: 0, negativeHits: 0, joined: 0, refusedPerAddress: 0, refusedAddressRate: 0, refusedBusy: 0 };
  private readonly now: () => number;

  constructor(
    private readonly api: KubeAuthApi,
    private readonly opts: KubeAuthOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** Who a bearer token is, as an agent bound to its node; never throws. */
  async review(token: string, address = ''): Promise<Review> {
    if (!JWT.test(token) || token.length > 16_384) return { ok: false, status: 401, reason: 'not a service-account token' };
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.cache.get(key);
    if (hit && hit.until > this.now()) return { ok: true, identity: hit.identity };
    const no = this.refused.get(key);
    if (no && no.until > this.now()) {
      this.stats.negativeHits++;
      return no.review;
    }
    const asking = this.asking.get(key);
    if (asking) {
      this.stats.joined++;
      return asking;
    }
    const known = this.known.has(key);
    const reserved = this.opts.reservedForKnown ?? Math.max(1, Math.floor(this.opts.maxInFlight / 4));
    if (this.inFlight >= this.opts.maxInFlight || (!known && this.inFlight >= this.opts.maxInFlight - reserved)) {
      this.stats.refusedBusy++;
      return { ok: false, status: 503, reason: 'too many token reviews in flight; retry' };
    }
    const mine = this.perAddress.get(address) ?? 0;
    if (!known && mine >= (this.opts.maxInFlightPerAddress ?? 2)) {
      this.stats.refusedPerAddress++;
      return { ok: false, status: 503, reason: 'too many token reviews in flight from this address; retry' };
    }
    if (!known && !this.takeAddressRate(address)) {
      this.stats.refusedAddressRate++;
      return { ok: false, status: 503, reason: 'too many token reviews from this address; retry later' };
    }
    const pending = this.reviewNow(token, key, address, mine);
    this.asking.set(key, pending);
    try {
      return await pending;
    } finally {
      this.asking.delete(key);
    }
  }

  /** Takes one review from the address's bucket; false when it is empty. */
  private takeAddressRate(address: string): boolean {
    const rate = this.opts.perAddressRate ?? { burst: 10, perSecond: 1 };
    const now = this.now();
    let b = this.addressRate.get(address);
    if (!b) {
      if (this.addressRate.size >= CACHE_MAX) this.addressRate.clear();
      this.addressRate.set(address, (b = { tokens: rate.burst, at: now }));
    }
    b.tokens = Math.min(rate.burst, b.tokens + ((now - b.at) / 1000) * rate.perSecond);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private async reviewNow(token: string, key: string, address: string, mine: number): Promise<Review> {
    this.inFlight++;
    this.perAddress.set(address, mine + 1);
    this.stats.reviews++;
    const answer = await this.ask(token);
    this.inFlight--;
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(address, left);
    else this.perAddress.delete(address);
    if (answer.ok) {
      if (this.cache.size >= CACHE_MAX) this.cache.clear();
      this.cache.set(key, { identity: answer.identity, until: this.now() + this.opts.cacheMs });
      if (this.known.size >= CACHE_MAX) this.known.clear();
      this.known.add(key);
      this.refused.delete(key);
    } else if (answer.status !== 503) {
      if (this.refused.size >= CACHE_MAX) this.refused.clear();
      this.refused.set(key, { review: answer, until: this.now() + (this.opts.negativeCacheMs ?? 60_000) });
      this.known.delete(key);
    }
    return answer;
  }

  /** One TokenReview (and, for tokens without the node extra, one pod lookup); never throws. */
  private async ask(token: string): Promise<Review> {
    try {
      const status = await withTimeout(this.api.tokenReview(token, [this.opts.audience]), this.opts.timeoutMs, 'TokenReview');
      if (!status.authenticated) return { ok: false, status: 401, reason: `the API server did not authenticate the token${status.error ? `: ${status.error.slice(0, 200)}` : ''}` };
      if (status.audiences && !status.audiences.includes(this.opts.audience)) return { ok: false, status: 401, reason: `the token is not for audience ${this.opts.audience}` };
      const username = status.user?.username ?? '';
      const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username);
      if (!m || !this.opts.serviceAccounts.includes(`${m[1]}:${m[2]}`)) return { ok: false, status: 403, reason: `${username || 'this user'} is not an agent service account (${this.opts.serviceAccounts.join(', ')})` };
      const extra = status.user?.extra ?? {};
      let node = extra[NODE_NAME_EXTRA]?.[0];
      if (!node) {
        // Before Kubernetes 1.30 a bound token names its pod, not its node: ask the pod.
        const podName = extra[POD_NAME_EXTRA]?.[0];
        const podUid = extra[POD_UID_EXTRA]?.[0];
        if (!podName) return { ok: false, status: 403, reason: 'the token is not bound to a pod (use a projected service-account token, not a Secret-based one)' };
        const pod = await withTimeout(this.api.pod(m[1]!, podName), this.opts.timeoutMs, `GET pod ${m[1]}/${podName}`);
        if (!pod || (podUid && pod.uid !== podUid)) return { ok: false, status: 401, reason: `the pod ${m[1]}/${podName} the token was issued to no longer exists` };
        node = pod.nodeName;
        if (!node) return { ok: false, status: 403, reason: `the pod ${m[1]}/${podName} is not scheduled on a node` };
      }
      return { ok: true, identity: { role: 'agent', name: `${m[1]}/${extra[POD_NAME_EXTRA]?.[0] ?? m[2]}`, node } };
    } catch (err) {
      return { ok: false, status: 503, reason: `cannot check the token with the API server: ${err instanceof Error ? err.message.slice(0, 200) : 'error'}` };
    }
  }

  /** Whether a node still exists; undefined when the API server could not say. */
  async nodeExists(node: string): Promise<boolean | undefined> {
    try {
      return await withTimeout(this.api.nodeExists(node), this.opts.timeoutMs, `GET node ${node}`);
    } catch {
      return undefined;
    }
  }
}

/** The API through @kubernetes/client-node, configured as `nodewarden evicted` is ($KUBECONFIG, ~/.kube/config, in-cluster). */
export async function kubeAuthApi(): Promise<{ api: KubeAuthApi; server: string }> {
  const k = await import('@kubernetes/client-node');
  const kc = await loadKubeConfig('--agent-auth kubernetes');
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new NodewardenError('NW_ERR_CONFIG', '--agent-auth kubernetes: no current cluster: set KUBECONFIG, use a kubeconfig with a current-context, or run in a pod');
  const authn = kc.makeApiClient(k.AuthenticationV1Api);
  const core = kc.makeApiClient(k.CoreV1Api);
  const status = (err: unknown) => (err as { code?: number }).code;
  return {
    server: cluster.server,
    api: {
      async tokenReview(token, audiences) {
        const r = await authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } });
        return r.status ?? {};
      },
      async pod(namespace, name) {
        try {
          const p = await core.readNamespacedPod({ namespace, name });
          return { ...(p.spec?.nodeName ? { nodeName: p.spec.nodeName } : {}), ...(p.metadata?.uid ? { uid: p.metadata.uid } : {}) };
        } catch (err) {
          if (status(err) === 404) return undefined;
          throw new NodewardenError('NW_ERR_RUNTIME', `GET pod ${namespace}/${name}: ${status(err) ?? ''} ${err instanceof Error ? err.message.slice(0, 200) : ''}`);
        }
      },
      async nodeExists(name) {
        try {
          await core.readNode({ name });
          return true;
        } catch (err) {
          if (status(err) === 404) return false;
          throw new NodewardenError('NW_ERR_RUNTIME', `GET node ${name}: ${status(err) ?? ''}`);
        }
      },
    },
  };
}
