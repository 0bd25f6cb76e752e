// The pods bound to this node, from the API server: a paged list, then a watch from its resourceVersion
// (fieldSelector spec.nodeName), re-listed when the watch expires (410 Gone), reconnected with backoff.
// Each pod is kept reduced to what the stuck and crash-loop checks and the diagnosis read (PodInfo), keyed by uid, so
// a re-list replaces the set whole: nothing lost, nothing duplicated, memory bounded by the pod count.
import type { EphemeralEviction, Log, PodContainerStatus, PodInfo, PodListState, PodStorageLimits } from '../../collectors/types.js';
import { NodewardenError } from '../../protocol/errors.js';
import { sleep } from '../../protocol/deadline.js';
import { BackgroundLoop } from './background.js';
import { KubeError, type KubeClient } from './client.js';
import { parseQuantity } from './quantity.js';

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A termination (state.terminated or lastState.terminated) reduced to what a crash loop's meaning reads. */
function termination(raw: unknown): PodContainerStatus['lastTermination'] | undefined {
  const t = obj(raw);
  if (!t) return undefined;
  const out: NonNullable<PodContainerStatus['lastTermination']> = {};
  const reason = str(t['reason']);
  if (reason) out.reason = reason.slice(0, 128);
  const exitCode = num(t['exitCode']);
  if (exitCode !== undefined) out.exitCode = exitCode;
  const signal = num(t['signal']);
  if (signal !== undefined) out.signal = signal;
  const finishedAt = str(t['finishedAt']);
  if (finishedAt) out.finishedAt = finishedAt;
  return out;
}

/** Pure: a probe in one line, bounded: `HTTP GET :8080/healthz every 10s, timeout 1s, 3 failures`. */
export function describeProbe(raw: unknown): string | undefined {
  const p = obj(raw);
  if (!p) return undefined;
  const port = (h: Json | undefined) => {
    const v = h?.['port'];
    return typeof v === 'number' || typeof v === 'string' ? `:${String(v).slice(0, 32)}` : '';
  };
  const http = obj(p['httpGet']);
  const tcp = obj(p['tcpSocket']);
  const grpc = obj(p['grpc']);
  const exec = obj(p['exec']);
  const what = http
    ? `${str(http['scheme']) === 'HTTPS' ? 'HTTPS' : 'HTTP'} GET ${port(http)}${(str(http['path']) ?? '/').slice(0, 120)}`
    : tcp
      ? `TCP ${port(tcp)}`
      : grpc
        ? `gRPC ${port(grpc)}`
        : exec
          ? `exec ${arr(exec['command']).filter((a): a is string => typeof a === 'string').join(' ').slice(0, 120)}`
          : undefined;
  if (!what) return undefined;
  // The API server's defaults when a field is unset.
  return `${what} every ${num(p['periodSeconds']) ?? 10}s, timeout ${num(p['timeoutSeconds']) ?? 1}s, ${num(p['failureThreshold']) ?? 3} failures`;
}

function containerStatus(raw: unknown): PodContainerStatus | undefined {
  const c = obj(raw);
  const name = str(c?.['name']);
  if (!c || !name) return undefined;
  const state = obj(c['state']) ?? {};
  const which = (['waiting', 'running', 'terminated'] as const).find((k) => obj(state[k]));
  const detail = which ? obj(state[which])! : {};
  const out: PodContainerStatus = { name, state: which ?? 'unknown' };
  const id = str(c['containerID']);
  if (id) out.containerId = id.replace(/^[a-z-]+:\/\//, '');
  const reason = str(detail['reason']);
  if (reason) out.reason = reason;
  const message = str(detail['message']);
  if (message) out.message = message.slice(0, 512);
  const finishedAt = str(obj(obj(c['lastState'])?.['terminated'])?.['finishedAt']) ?? (which === 'terminated' ? str(detail['finishedAt']) : undefined);
  if (finishedAt) out.finishedAt = finishedAt;
  const restarts = num(c['restartCount']);
  if (restarts !== undefined && restarts >= 0) out.restartCount = restarts;
  const last = (which === 'terminated' ? termination(detail) : undefined) ?? termination(obj(c['lastState'])?.['terminated']);
  if (last) out.lastTermination = last;
  return out;
}

/** What a crash loop's meaning reads from one container's spec: its memory limit and liveness probe. */
function withSpec(status: PodContainerStatus, specs: Map<string, Json>): PodContainerStatus {
  const spec = specs.get(status.name);
  if (!spec) return status;
  const limit = obj(obj(spec['resources'])?.['limits'])?.['memory'];
  if (typeof limit === 'string' || typeof limit === 'number') status.memoryLimit = String(limit).slice(0, 32);
  const probe = describeProbe(spec['livenessProbe']);
  if (probe) status.livenessProbe = probe;
  return status;
}

/**
 * Pure: the pod's local-storage limits from its spec (containers' ephemeral-storage limits, emptyDirs
 * with their sizeLimit and medium), or undefined when it sets none: then kubelet never evicts it for its
 * own use, and pod.ephemeral has nothing to compare against.
 */
export function storageLimits(spec: Json): PodStorageLimits | undefined {
  const containers = arr(spec['containers']).flatMap((c) => {
    const name = str(obj(c)?.['name']);
    if (!name) return [];
    const limit = parseQuantity(obj(obj(obj(c)?.['resources'])?.['limits'])?.['ephemeral-storage']);
    return [limit === undefined ? { name } : { name, limit }];
  });
  const emptyDirs = arr(spec['volumes']).flatMap((v) => {
    const name = str(obj(v)?.['name']);
    const ed = obj(obj(v)?.['emptyDir']);
    if (!name || !ed) return [];
    const sizeLimit = parseQuantity(ed['sizeLimit']);
    return [{ name, memory: ed['medium'] === 'Memory', ...(sizeLimit === undefined ? {} : { sizeLimit }) }];
  });
  const limited = containers.some((c) => c.limit !== undefined) || emptyDirs.some((e) => e.sizeLimit !== undefined && !e.memory);
  return limited ? { containers: containers.slice(0, 64), emptyDirs: emptyDirs.slice(0, 64) } : undefined;
}

/**
 * Pure: which local-storage bound kubelet evicted a pod for, from status.reason Evicted and the sentence
 * kubelet's eviction manager writes in status.message; undefined for any other pod or eviction (memory, pids).
 */
export function ephemeralEviction(reason: string | undefined, message: string | undefined): EphemeralEviction | undefined {
  if (reason !== 'Evicted' || !message) return undefined;
  const withLimit = (e: EphemeralEviction, raw: string | undefined): EphemeralEviction => {
    const limit = parseQuantity(raw);
    return limit === undefined ? e : { ...e, limit };
  };
  const emptyDir = /Usage of EmptyDir volume "([^"]{1,253})" exceeds the limit "([^"]{1,64})"/.exec(message);
  if (emptyDir) return withLimit({ scope: 'emptyDir', volume: emptyDir[1]!, usage: [] }, emptyDir[2]);
  const container = /Container (\S{1,253}) exceeded its local ephemeral storage limit "([^"]{1,64})"/.exec(message);
  if (container) return withLimit({ scope: 'container', container: container[1]!, usage: [] }, container[2]);
  const pod = /Pod ephemeral local storage usage exceeds the total limit of containers (\S{1,64}?)\.?(?:\s|$)/.exec(message);
  if (pod) return withLimit({ scope: 'pod', usage: [] }, pod[1]);
  if (!message.includes('low on resource: ephemeral-storage')) return undefined;
  const usage = [...message.matchAll(/Container (\S{1,253}) was using (\S{1,64}), which exceeds its request of (\S{1,64}?)\.?(?:\s|$)/g)].flatMap((m) => {
    const bytes = parseQuantity(m[2]);
    const request = parseQuantity(m[3]);
    return bytes === undefined || request === undefined ? [] : [{ container: m[1]!, bytes, request }];
  });
  return { scope: 'node-pressure', usage: usage.slice(0, 64) };
}

/** Pure: a Pod object from the API reduced to PodInfo; undefined when it is not a pod we can use. */
export function toPodInfo(raw: unknown): PodInfo | undefined {
  const pod = obj(raw);
  const meta = obj(pod?.['metadata']);
  const uid = str(meta?.['uid']);
  const namespace = str(meta?.['namespace']);
  const name = str(meta?.['name']);
  if (!pod || !meta || !uid || !namespace || !name) return undefined;
  const spec = obj(pod['spec']) ?? {};
  const status = obj(pod['status']) ?? {};
  const specs = new Map<string, Json>();
  for (const c of [...arr(spec['initContainers']), ...arr(spec['containers'])]) {
    const n = str(obj(c)?.['name']);
    if (n) specs.set(n, obj(c)!);
  }
  const info: PodInfo = {
    uid,
    namespace,
    name,
    finalizers: arr(meta['finalizers']).filter((f): f is string => typeof f === 'string'),
    owners: arr(meta['ownerReferences']).flatMap((o) => {
      const kind = str(obj(o)?.['kind']);
      const n = str(obj(o)?.['name']);
      return kind && n ? [`${kind}/${n}`] : [];
    }),
    containers: [...arr(status['initContainerStatuses']), ...arr(status['containerStatuses'])].flatMap((c) => {
      const st = containerStatus(c);
      return st ? [withSpec(st, specs)] : [];
    }),
    volumes: arr(spec['volumes']).flatMap((v) => str(obj(v)?.['name']) ?? []),
  };
  const set = <K extends keyof PodInfo>(k: K, v: PodInfo[K] | undefined) => {
    if (v !== undefined) info[k] = v;
  };
  set('resourceVersion', str(meta['resourceVersion']));
  set('creationTimestamp', str(meta['creationTimestamp']));
  set('deletionTimestamp', str(meta['deletionTimestamp']));
  set('deletionGracePeriodSeconds', num(meta['deletionGracePeriodSeconds']));
  set('terminationGracePeriodSeconds', num(spec['terminationGracePeriodSeconds']));
  set('startTime', str(status['startTime']));
  set('nodeName', str(spec['nodeName']));
  set('phase', str(status['phase']));
  set('storage', storageLimits(spec));
  set('eviction', ephemeralEviction(str(status['reason']), str(status['message'])?.slice(0, 4096)));
  return info;
}

/** The watch's resourceVersion is too old (410 Gone): only a fresh list can go on from here. */
class WatchExpired extends Error {}

export interface PodWatcherOptions {
  client: KubeClient;
  node: string;
  log: Log;
  /** Pods per list page (the API server's limit/continue). */
  pageSize?: number;
  /** How long the server keeps one watch open (timeoutSeconds) before we open the next. */
  watchSeconds?: number;
  /** Reconnect backoff: full jitter, doubling from initialMs to maxMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  random?: () => number;
}

export class PodWatcher extends BackgroundLoop {
  private pods = new Map<string, PodInfo>();
  private rv: string | undefined;
  private synced = false;
  private reason = 'the first list of pods has not completed yet';
  private readonly selector: string;
  stats = { lists: 0, watches: 0, expired: 0, events: 0, errors: 0 };

  constructor(private readonly opts: PodWatcherOptions) {
    super();
    this.selector = encodeURIComponent(`spec.nodeName=${opts.node}`);
  }

  /** The pods as last seen; `synced` while the watch is open on top of a complete list. */
  state(): PodListState {
    const pods = [...this.pods.values()];
    return this.synced && this.rv !== undefined ? { status: 'synced', pods, resourceVersion: this.rv } : { status: 'unsynced', reason: this.reason, pods };
  }

  /** Resolves once a list has completed (or the watcher stops); for start-up and tests. */
  async whenSynced(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (!this.synced && !this.stopped && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    return this.synced;
  }

  protected async loop(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      try {
        if (this.rv === undefined) await this.relist();
        await this.watch();
        attempt = 0;
      } catch (err) {
        if (this.stopped) break;
        if (err instanceof WatchExpired) {
          // Expected from time to time: events older than the server keeps. List again at once.
          this.stats.expired++;
          this.opts.log.info({ resourceVersion: this.rv }, 'pod watch expired (410 Gone); listing again');
          this.rv = undefined;
          continue;
        }
        this.stats.errors++;
        this.synced = false;
        this.reason = `cannot list or watch this node's pods: ${err instanceof Error ? err.message : String(err)}`;
        const cap = Math.min(this.opts.maxBackoffMs ?? 30_000, (this.opts.initialBackoffMs ?? 500) * 2 ** attempt);
        attempt = Math.min(attempt + 1, 16);
        const delay = Math.round((this.opts.random ?? Math.random)() * cap);
        this.opts.log.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: delay }, 'pod watch failed');
        await sleep(delay, this.controller.signal);
      }
    }
  }

  /** A complete list, page by page; replaces the set whole. A continue token that expired starts over. */
  private async relist(): Promise<void> {
    const limit = this.opts.pageSize ?? 100;
    for (let tries = 0; ; tries++) {
      const next = new Map<string, PodInfo>();
      let cont: string | undefined;
      let rv: string | undefined;
      try {
        do {
          // Each pod is reduced as soon as it has arrived; the page is never held whole (docs/design.md).
          const page = await this.opts.client.list(`/api/v1/pods?fieldSelector=${this.selector}&limit=${limit}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`, (item) => {
            const info = toPodInfo(item);
            if (info) next.set(info.uid, info);
          });
          const meta = obj(page['metadata']) ?? {};
          cont = str(meta['continue']) || undefined;
          rv = str(meta['resourceVersion']) ?? rv;
        } while (cont);
      } catch (err) {
        if (err instanceof KubeError && err.status === 410 && tries < 3) continue;
        throw err;
      }
      if (rv === undefined) throw new NodewardenError('NW_ERR_PARSE', 'the pod list has no resourceVersion');
      this.stats.lists++;
      this.pods = next;
      this.rv = rv;
      this.synced = true;
      return;
    }
  }

  /** One watch from this.rv until the server ends it; applies every event as it comes. */
  private async watch(): Promise<void> {
    const seconds = this.opts.watchSeconds ?? 300;
    this.stats.watches++;
    try {
      await this.opts.client.stream(
        `/api/v1/pods?fieldSelector=${this.selector}&watch=1&allowWatchBookmarks=true&timeoutSeconds=${seconds}&resourceVersion=${encodeURIComponent(this.rv ?? '')}`,
        (ev) => this.apply(ev),
        {
          // The server closes after `seconds`; silence well past that means a dead connection.
          idleMs: seconds * 1000 + this.opts.client.timeoutMs,
          signal: this.controller.signal,
          onOpen: () => {
            this.synced = true;
          },
        },
      );
    } catch (err) {
      if (err instanceof KubeError && err.status === 410) throw new WatchExpired();
      throw err;
    }
  }

  private apply(ev: Json): void {
    const type = str(ev['type']);
    const object = obj(ev['object']);
    if (type === 'ERROR') {
      const code = num(object?.['code']);
      if (code === 410) throw new WatchExpired();
      throw new KubeError(code ?? 500, str(object?.['reason']) ?? '', `pod watch: ${str(object?.['message']) ?? 'error event'}`);
    }
    const rv = str(obj(object?.['metadata'])?.['resourceVersion']);
    if (type === 'BOOKMARK') {
      if (rv) this.rv = rv;
      return;
    }
    const info = toPodInfo(object);
    if (!info) return;
    this.stats.events++;
    if (type === 'DELETED') this.pods.delete(info.uid);
    else if (type === 'ADDED' || type === 'MODIFIED') this.pods.set(info.uid, info);
    if (rv) this.rv = rv;
  }
}
