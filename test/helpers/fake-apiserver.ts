// A local stand-in for the Kubernetes API server (one cannot run here), speaking its protocol for the
// endpoints nodewarden uses: nodes and their status subresource (GET, PUT, PATCH with strategic merge,
// JSON merge and JSON patch; resourceVersion conflicts answer 409), events (POST), pods (get; list with
// field selectors and limit/continue pages; watch from a resourceVersion with bookmarks and timeoutSeconds,
// answering 410 Gone once the events it asks for were compacted away; graceful deletion with
// deletionTimestamp and finalizers; DELETE), events (list with field selectors and pages), TokenReviews
// of service-account tokens it issued (bound to a pod, with an audience, and with or without the
// node-name extra as before and since Kubernetes 1.30), and RBAC per bearer token (403 Status objects
// naming the missing permission).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { kubeAuthApi, type KubeAuthApi } from '../../aggregator/kube-auth.js';

type Json = Record<string, unknown>;
export interface Rule { verbs: string[]; resources: string[] }

function status(code: number, reason: string, message: string): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** RFC 7386 JSON merge patch: objects merge, everything else (lists included) replaces, null deletes. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Json = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Json) } : {};
  for (const [k, v] of Object.entries(patch as Json)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Strategic merge patch as the API server applies it to NodeStatus: conditions merge by their `type` key. */
export function strategicMergePatch(target: unknown, patch: unknown, path = ''): unknown {
  if (Array.isArray(patch) && (path === '.status.conditions' || path === '.status.addresses')) {
    const key = path.endsWith('conditions') ? 'type' : 'type';
    const list = Array.isArray(target) ? [...(target as Json[])] : [];
    for (const item of patch as Json[]) {
      const i = list.findIndex((x) => x[key] === item[key]);
      if (i >= 0) list[i] = strategicMergePatch(list[i], item, `${path}[]`) as Json;
      else list.push(item);
    }
    return list;
  }
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Json = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Json) } : {};
  for (const [k, v] of Object.entries(patch as Json)) {
    if (v === null) delete out[k];
    else out[k] = strategicMergePatch(out[k], v, `${path}.${k}`);
  }
  return out;
}

/** RFC 6902 JSON patch (add, replace, remove, test) on JSON pointers. */
export function jsonPatch(doc: Json, ops: { op: string; path: string; value?: unknown }[]): Json {
  const out = structuredClone(doc);
  for (const op of ops) {
    const parts = op.path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop()!;
    let parent: Json | unknown[] = out;
    for (const p of parts) parent = (parent as Json)[p] as Json | unknown[];
    const arr = Array.isArray(parent);
    if (op.op === 'test' && JSON.stringify((parent as Json)[last]) !== JSON.stringify(op.value)) throw new Error(`test failed at ${op.path}`);
    if (op.op === 'add' && arr) (parent as unknown[]).splice(last === '-' ? (parent as unknown[]).length : Number(last), 0, op.value);
    else if (op.op === 'add' || op.op === 'replace') (parent as Json)[last] = op.value;
    else if (op.op === 'remove') {
      if (arr) (parent as unknown[]).splice(Number(last), 1);
      else delete (parent as Json)[last];
    }
  }
  return out;
}

function fieldSelectorMatches(obj: Json, selector: string | null): boolean {
  if (!selector) return true;
  return selector.split(',').every((term) => {
    const m = /^([\w.]+)(!=|==|=)(.*)$/.exec(term.trim());
    if (!m) return false;
    const value = m[1]!.split('.').reduce<unknown>((o, k) => (o as Json | undefined)?.[k], obj);
    return m[2] === '!=' ? String(value ?? '') !== m[3] : String(value ?? '') === m[3];
  });
}

/** A service-account token the fake issued, as the TokenRequest API would (a JWT-shaped opaque string here). */
interface IssuedToken {
  namespace: string;
  serviceAccount: string;
  audiences: string[];
  pod?: { name: string; uid: string; node?: string };
  /** Bound tokens carry the node-name extra since Kubernetes 1.30; false mimics an older cluster. */
  nodeExtra: boolean;
  expired?: boolean;
}

export class FakeApiServer {
  readonly nodes = new Map<string, Json>();
  private readonly issued = new Map<string, IssuedToken>();
  readonly pods = new Map<string, Json>();
  readonly events: Json[] = [];
  readonly requests: { method: string; path: string; query?: string; contentType?: string }[] = [];
  private readonly rbac = new Map<string, { user: string; rules: Rule[] }>();
  private rv = 100;
  private conflicts = 0;
  private server: http.Server | undefined;
  /** Pod watch events, oldest first; compact() forgets them, as etcd's compaction does. */
  private podEvents: { rv: number; type: string; object: Json }[] = [];
  /** Called once right after the next complete pod list has been answered. */
  afterList: (() => void) | undefined;
  /** Pod events up to and including this resourceVersion are forgotten (compact()). */
  private compactedThrough = 0;
  private readonly watches = new Set<{ res: http.ServerResponse; selector: string | null; ns: string | undefined }>();
  url = '';

  grant(token: string, user: string, rules: Rule[]): void {
    this.rbac.set(token, { user, rules });
  }

  /** The token expires: from now on a call that presents it is 401 Unauthorized. */
  revoke(token: string): void {
    this.rbac.delete(token);
  }

  /** The next `n` writes to a node answer 409 Conflict, as when kubelet updates it at the same time. */
  conflictNext(n: number): void {
    this.conflicts = n;
  }

  /**
   * A projected service-account token for a pod (audience and pod binding as kubelet requests them);
   * the pod must have been added, and its node is taken from it.
   */
  issueToken(opts: { namespace: string; serviceAccount: string; audiences: string[]; pod?: string; nodeExtra?: boolean }): string {
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = `${b64({ alg: 'RS256', kid: 'fake' })}.${b64({ sub: `system:serviceaccount:${opts.namespace}:${opts.serviceAccount}`, aud: opts.audiences, jti: randomBytes(8).toString('hex') })}.${randomBytes(32).toString('base64url')}`;
    const pod = opts.pod ? this.pods.get(`${opts.namespace}/${opts.pod}`) : undefined;
    const issued: IssuedToken = { namespace: opts.namespace, serviceAccount: opts.serviceAccount, audiences: opts.audiences, nodeExtra: opts.nodeExtra ?? true };
    if (opts.pod) {
      if (!pod) throw new Error(`no pod ${opts.namespace}/${opts.pod}`);
      const nodeName = (pod['spec'] as Json | undefined)?.['nodeName'] as string | undefined;
      issued.pod = { name: opts.pod, uid: String((pod['metadata'] as Json)['uid']), ...(nodeName ? { node: nodeName } : {}) };
    }
    this.issued.set(token, issued);
    return token;
  }

  /** What the API server answers for spec.token and spec.audiences (authentication.k8s.io/v1). */
  private review(token: string, audiences: string[]): Json {
    const t = this.issued.get(token);
    if (!t || t.expired) return { authenticated: false, error: '[invalid bearer token, service account token has expired or is invalid]' };
    const wanted = audiences.length > 0 ? audiences : ['https://kubernetes.default.svc'];
    const matched = wanted.filter((a) => t.audiences.includes(a));
    if (matched.length === 0) return { authenticated: false, error: `[invalid bearer token, token audiences ${JSON.stringify(t.audiences)} is invalid for the target audiences ${JSON.stringify(wanted)}]` };
    if (t.pod) {
      const pod = this.pods.get(`${t.namespace}/${t.pod.name}`);
      if (!pod || (pod['metadata'] as Json)['uid'] !== t.pod.uid) return { authenticated: false, error: `[invalid bearer token, pod "${t.pod.name}" not found or uid mismatch]` };
    }
    const extra: Record<string, string[]> = {};
    if (t.pod) {
      extra['authentication.kubernetes.io/pod-name'] = [t.pod.name];
      extra['authentication.kubernetes.io/pod-uid'] = [t.pod.uid];
      if (t.nodeExtra && t.pod.node) {
        extra['authentication.kubernetes.io/node-name'] = [t.pod.node];
        extra['authentication.kubernetes.io/node-uid'] = [`uid-${t.pod.node}`];
      }
    }
    return {
      authenticated: true,
      user: { username: `system:serviceaccount:${t.namespace}:${t.serviceAccount}`, uid: `uid-sa-${t.serviceAccount}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${t.namespace}`, 'system:authenticated'], extra },
      audiences: matched,
    };
  }

  addNode(name: string, conditions: Json[] = []): void {
    this.nodes.set(name, { kind: 'Node', apiVersion: 'v1', metadata: { name, uid: `uid-${name}`, resourceVersion: String(this.rv++) }, status: { conditions } });
  }

  /** The Node's Ready condition as kubelet (or the node lifecycle controller) writes it. */
  setReady(name: string, status: 'True' | 'False' | 'Unknown', reason: string, message: string): void {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`no node ${name}`);
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const conditions = (((node['status'] as Json | undefined)?.['conditions'] as Json[] | undefined) ?? []).filter((c) => c['type'] !== 'Ready');
    conditions.push({ type: 'Ready', status, reason, message, lastHeartbeatTime: now, lastTransitionTime: now });
    this.nodes.set(name, { ...node, metadata: { ...(node['metadata'] as Json), resourceVersion: String(this.rv++) }, status: { ...(node['status'] as Json), conditions } });
  }

  /** An Event as another component (kubelet) posted it. */
  addEvent(event: Json): void {
    const meta = (event['metadata'] ?? {}) as Json;
    this.events.push({ ...event, metadata: { ...meta, resourceVersion: String(this.rv++) } });
  }

  addPod(namespace: string, name: string, nodeName: string, phase: string, extra: Json = {}): Json {
    const pod = mergePatch({ kind: 'Pod', apiVersion: 'v1', metadata: { name, namespace, uid: `uid-${name}`, creationTimestamp: new Date().toISOString(), resourceVersion: String(this.rv++) }, spec: { nodeName }, status: { phase } }, extra) as Json;
    this.pods.set(`${namespace}/${name}`, pod);
    this.podEvent('ADDED', pod);
    return pod;
  }

  /** A JSON merge patch to a pod (status, metadata...), as kubelet or a controller would write it. */
  updatePod(namespace: string, name: string, patch: Json): Json {
    const key = `${namespace}/${name}`;
    const before = this.pods.get(key);
    if (!before) throw new Error(`no pod ${key}`);
    const next = mergePatch(before, patch) as Json;
    (next['metadata'] as Json)['resourceVersion'] = String(this.rv++);
    this.pods.set(key, next);
    this.podEvent('MODIFIED', next);
    return next;
  }

  /**
   * Graceful deletion as the API server does it: the pod gets deletionTimestamp (now + grace, or `at`)
   * and deletionGracePeriodSeconds, and stays until kubelet confirms and the finalizers are gone.
   */
  markDeleted(namespace: string, name: string, opts: { graceSeconds?: number; at?: Date } = {}): Json {
    const pod = this.pods.get(`${namespace}/${name}`);
    const grace = opts.graceSeconds ?? ((pod?.['spec'] as Json | undefined)?.['terminationGracePeriodSeconds'] as number | undefined) ?? 30;
    const at = opts.at ?? new Date(Date.now() + grace * 1000);
    return this.updatePod(namespace, name, { metadata: { deletionTimestamp: at.toISOString().replace(/\.\d+Z$/, 'Z'), deletionGracePeriodSeconds: grace } });
  }

  /** The pod is gone from the API (kubelet confirmed the deletion, no finalizers left). */
  removePod(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const pod = this.pods.get(key);
    if (!pod) return;
    this.pods.delete(key);
    const gone = structuredClone(pod);
    (gone['metadata'] as Json)['resourceVersion'] = String(this.rv++);
    this.podEvent('DELETED', gone);
  }

  /** Forgets every pod event so far and ends open watches: a watch resumed from an earlier resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedThrough = this.rv - 1;
    this.podEvents = [];
    for (const w of this.watches) w.res.end();
    this.watches.clear();
  }

  /** Open watch connections right now. */
  openWatches(): number {
    return this.watches.size;
  }

  private podEvent(type: string, pod: Json): void {
    const rv = Number((pod['metadata'] as Json)['resourceVersion']);
    const ev = { rv, type, object: structuredClone(pod) };
    this.podEvents.push(ev);
    if (this.podEvents.length > 10_000) this.podEvents.splice(0, 1000);
    for (const w of this.watches) {
      if ((!w.ns || (pod['metadata'] as Json)['namespace'] === w.ns) && fieldSelectorMatches(pod, w.selector)) w.res.write(`${JSON.stringify({ type, object: ev.object })}\n`);
    }
  }

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    return this.url;
  }

  stop(): Promise<void> {
    for (const w of this.watches) w.res.end();
    this.watches.clear();
    this.server?.closeAllConnections();
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private send(res: http.ServerResponse, code: number, body: Json): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    let body = '';
    for await (const c of req) body += c;
    const contentType = String(req.headers['content-type'] ?? '').split(';')[0];
    this.requests.push({ method: req.method ?? '', path: url.pathname, query: url.search, contentType });
    const who = this.rbac.get(String(req.headers.authorization ?? '').replace(/^Bearer /, ''));
    if (!who) return this.send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    const verb = req.method === 'GET' ? (/\/(nodes|pods|events)$/.test(url.pathname) ? (url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true' ? 'watch' : 'list') : 'get') : req.method === 'PATCH' ? 'patch' : req.method === 'PUT' ? 'update' : req.method === 'POST' ? 'create' : req.method === 'DELETE' ? 'delete' : '?';
    const resource = /\/nodes\/[^/]+\/status$/.test(url.pathname) ? 'nodes/status' : /\/nodes/.test(url.pathname) ? 'nodes' : /\/events/.test(url.pathname) ? 'events' : /\/pods/.test(url.pathname) ? 'pods' : /\/tokenreviews$/.test(url.pathname) ? 'tokenreviews' : '?';
    if (!who.rules.some((r) => r.verbs.includes(verb) && r.resources.includes(resource))) {
      return this.send(res, 403, status(403, 'Forbidden', `${resource} is forbidden: User "${who.user}" cannot ${verb} resource "${resource}" in API group ""`));
    }
    let m: RegExpExecArray | null;
    if (url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews' && req.method === 'POST') {
      const tr = JSON.parse(body || '{}') as Json;
      const spec = (tr['spec'] ?? {}) as { token?: string; audiences?: string[] };
      if (tr['kind'] !== 'TokenReview' || typeof spec.token !== 'string') return this.send(res, 400, status(400, 'BadRequest', 'TokenReview spec.token is required'));
      return this.send(res, 201, { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status: this.review(spec.token, spec.audiences ?? []) });
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname)) && req.method === 'GET') {
      const pod = this.pods.get(`${m[1]}/${m[2]}`);
      if (!pod) return this.send(res, 404, status(404, 'NotFound', `pods "${m[2]}" not found`));
      return this.send(res, 200, pod);
    }
    if ((m = /^\/api\/v1\/nodes\/([^/]+)(\/status)?$/.exec(url.pathname))) {
      const node = this.nodes.get(m[1]!);
      if (!node) return this.send(res, 404, status(404, 'NotFound', `nodes "${m[1]}" not found`));
      if (req.method === 'GET') return this.send(res, 200, node);
      if (!m[2]) return this.send(res, 405, status(405, 'MethodNotAllowed', 'only the status subresource is writable here'));
      const current = (node['metadata'] as Json)['resourceVersion'];
      const incoming = JSON.parse(body || '{}') as Json;
      const given = Array.isArray(incoming) ? undefined : (incoming['metadata'] as Json | undefined)?.['resourceVersion'];
      if (this.conflicts > 0 || (given !== undefined && given !== current) || (req.method === 'PUT' && given === undefined)) {
        if (this.conflicts > 0) this.conflicts--;
        return this.send(res, 409, status(409, 'Conflict', `Operation cannot be fulfilled on nodes "${m[1]}": the object has been modified; please apply your changes to the latest version and try again`));
      }
      let next: Json;
      if (req.method === 'PUT') next = { ...node, status: incoming['status'] };
      else if (contentType === 'application/strategic-merge-patch+json') next = strategicMergePatch(node, incoming) as Json;
      else if (contentType === 'application/merge-patch+json') next = mergePatch(node, incoming) as Json;
      else if (contentType === 'application/json-patch+json') next = jsonPatch(node, incoming as unknown as { op: string; path: string }[]);
      else return this.send(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format: ${contentType}`));
      // Only status is writable through the status subresource.
      next = { ...node, status: next['status'], metadata: { ...(node['metadata'] as Json), resourceVersion: String(this.rv++) } };
      this.nodes.set(m[1]!, next);
      return this.send(res, 200, next);
    }
    if ((m = /^\/api\/v1(?:\/namespaces\/([^/]+))?\/events$/.exec(url.pathname)) && req.method === 'GET') {
      // A list with field selectors and limit/continue pages (the events' continue token is a plain offset).
      const ns = m[1];
      const selector = url.searchParams.get('fieldSelector');
      const all = this.events.filter((e) => (!ns || (e['metadata'] as Json)['namespace'] === ns) && fieldSelectorMatches(e, selector));
      const limit = Number(url.searchParams.get('limit') ?? 0);
      const offset = Number(url.searchParams.get('continue') ?? 0) || 0;
      const items = limit > 0 ? all.slice(offset, offset + limit) : all.slice(offset);
      const metadata: Json = { resourceVersion: String(this.rv - 1) };
      if (limit > 0 && offset + limit < all.length) metadata['continue'] = String(offset + limit);
      return this.send(res, 200, { kind: 'EventList', apiVersion: 'v1', metadata, items });
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(url.pathname)) && req.method === 'POST') {
      const ev = JSON.parse(body) as Json;
      const meta = (ev['metadata'] ?? {}) as Json;
      const stored = { ...ev, metadata: { ...meta, namespace: m[1], name: meta['name'] ?? `${meta['generateName'] ?? 'event.'}${this.rv++}`, resourceVersion: String(this.rv++) } };
      this.events.push(stored);
      return this.send(res, 201, stored);
    }
    if ((m = /^\/api\/v1(?:\/namespaces\/([^/]+))?\/pods$/.exec(url.pathname)) && req.method === 'GET') {
      const ns = m[1];
      const selector = url.searchParams.get('fieldSelector');
      if (url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true') return this.watchPods(req, res, url, ns, selector);
      const all = [...this.pods.values()].filter((p) => (!ns || (p['metadata'] as Json)['namespace'] === ns) && fieldSelectorMatches(p, selector));
      // Pages: the continue token holds the offset and the list's resourceVersion; once that was
      // compacted away the token has expired (410), as etcd's compaction makes it on the real server.
      const limit = Number(url.searchParams.get('limit') ?? 0);
      let offset = 0;
      // The list's resourceVersion is the last one handed out: a watch from it gets every later change.
      let listRv = String(this.rv - 1);
      const cont = url.searchParams.get('continue');
      if (cont) {
        const tok = JSON.parse(Buffer.from(cont, 'base64').toString('utf8')) as { offset: number; rv: string };
        if (Number(tok.rv) < this.compactedThrough) return this.send(res, 410, status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.'));
        offset = tok.offset;
        listRv = tok.rv;
      }
      const items = limit > 0 ? all.slice(offset, offset + limit) : all.slice(offset);
      const more = limit > 0 && offset + limit < all.length;
      const metadata: Json = { resourceVersion: listRv };
      if (more) metadata['continue'] = Buffer.from(JSON.stringify({ offset: offset + limit, rv: listRv })).toString('base64');
      this.send(res, 200, { kind: 'PodList', apiVersion: 'v1', metadata, items });
      // A change that lands between a client's list and its watch (the window a watcher must not lose).
      if (!more && this.afterList) {
        const hook = this.afterList;
        this.afterList = undefined;
        hook();
      }
      return;
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname)) && req.method === 'GET') {
      const pod = this.pods.get(`${m[1]}/${m[2]}`);
      return pod ? this.send(res, 200, pod) : this.send(res, 404, status(404, 'NotFound', `pods "${m[2]}" not found`));
    }
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(url.pathname)) && req.method === 'DELETE') {
      const key = `${m[1]}/${m[2]}`;
      const pod = this.pods.get(key);
      if (!pod) return this.send(res, 404, status(404, 'NotFound', `pods "${m[2]}" not found`));
      this.removePod(m[1]!, m[2]!);
      return this.send(res, 200, pod);
    }
    return this.send(res, 404, status(404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`));
  }

  /** A watch: events after resourceVersion, then live ones, as JSON lines, until timeoutSeconds. */
  private watchPods(req: http.IncomingMessage, res: http.ServerResponse, url: URL, ns: string | undefined, selector: string | null): void {
    const from = Number(url.searchParams.get('resourceVersion') || this.rv - 1);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // The real API server sends the headers at once, before any event.
    res.flushHeaders();
    if (from < this.compactedThrough) {
      // The real server answers 200 and then an ERROR event carrying the 410 Status.
      res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${this.compactedThrough})`) })}\n`);
      return;
    }
    for (const ev of this.podEvents) {
      if (ev.rv <= from) continue;
      if ((!ns || (ev.object['metadata'] as Json)['namespace'] === ns) && fieldSelectorMatches(ev.object, selector)) res.write(`${JSON.stringify({ type: ev.type, object: ev.object })}\n`);
    }
    const w = { res, selector, ns };
    this.watches.add(w);
    const seconds = Number(url.searchParams.get('timeoutSeconds') ?? 1800);
    const timer = setTimeout(() => {
      this.watches.delete(w);
      res.end();
    }, seconds * 1000);
    req.socket.on('close', () => {
      clearTimeout(timer);
      this.watches.delete(w);
    });
  }
}

/**
 * The API as `--agent-auth kubernetes` reaches `api`: $KUBECONFIG pointed at it (for the rest of test
 * `t`), as the aggregator's service account with exactly what manifests/rbac.yaml grants it.
 */
export async function aggregatorKubeApi(t: { teardown(fn: () => unknown): void }, api: FakeApiServer): Promise<KubeAuthApi> {
  api.grant('aggregator-sa-token', 'system:serviceaccount:nodewarden:nodewarden-aggregator', [
    { verbs: ['create'], resources: ['tokenreviews'] },
    { verbs: ['get'], resources: ['pods'] },
    { verbs: ['get'], resources: ['nodes'] },
  ]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-kubeconfig-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = path.join(dir, 'config');
  writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: aggregator-sa-token\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\ncurrent-context: c\n`);
  const saved = process.env['KUBECONFIG'];
  process.env['KUBECONFIG'] = kubeconfig;
  t.teardown(() => (saved === undefined ? delete process.env['KUBECONFIG'] : (process.env['KUBECONFIG'] = saved)));
  return (await kubeAuthApi()).api;
}
