// The few Kubernetes API calls the agent makes (its Node, the Node's status, Events: create, and list its
// pods' probe failures; its node's pods: list and watch), over node:https with the pod's service account.
// Hand-written rather than @kubernetes/client-node: that library adds about 74 MiB of resident memory to
// an agent whose whole budget is 80 MiB (docs/design.md).
import { readFileSync } from 'node:fs';
import { NodewardenError, errnoCode, errorMessage } from '../../protocol/errors.js';
import { httpRequest, httpStream, type HttpRequestOptions } from '../../protocol/http-request.js';
import { ListItemSplitter } from './list-items.js';

export class KubeError extends NodewardenError {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super('NW_ERR_RUNTIME', message);
  }
}

/** The API server's answer to a call that failed: its Status reason and message, or the start of its text. */
function failure(what: string, status: number, text: string): KubeError {
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON: keep the text for the message
  }
  return new KubeError(status, String(json['reason'] ?? ''), `${what}: ${status} ${String(json['message'] ?? text).slice(0, 300)}`);
}

export interface KubeClientOptions {
  server: string;
  /** The bearer token, or where to get it for each call (a rotating service-account token). */
  token: string | TokenSource;
  ca?: Buffer;
  timeoutMs: number;
}

export type PatchType = 'application/strategic-merge-patch+json' | 'application/merge-patch+json' | 'application/json-patch+json';

/** A plain call's answer (a Node, an Event) is kilobytes; this bounds a broken or hostile server. */
const MAX_BODY = 64 * 1024 * 1024;

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** One of the pod's service-account files; a missing or unreadable one is NW_ERR_CONFIG, saying which. */
function readServiceAccountFile(file: string, what: 'token' | 'CA'): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new NodewardenError('NW_ERR_CONFIG', `cannot read the service account ${what} ${file}: ${errnoCode(err) === 'ENOENT' ? 'no such file (is automountServiceAccountToken false?)' : errorMessage(err)}`);
  }
}

export interface TokenSource {
  /** The token to present now. */
  get(): string;
  /** The API server refused the token (401): the next call reads it again, whatever its age. */
  refused(): void;
}

/**
 * A projected service-account token as kubelet keeps it: kubelet rewrites the file well before the token
 * expires (bound tokens live an hour by default), so a client that read it once stops authenticating.
 * Like client-go, the file is read again when the copy is a minute old, and at once after a 401; a read
 * that fails (kubelet mid-rename, a hiccup) keeps the last good token rather than failing the call.
 */
export class FileTokenSource implements TokenSource {
  private token: string;
  private readAt: number;
  /** Reads that failed and kept the old token (shown in the agent's logs by the caller's 401s, if any). */
  failedReads = 0;

  constructor(
    private readonly file: string,
    private readonly opts: { maxAgeMs?: number; now?: () => number } = {},
  ) {
    this.token = FileTokenSource.read(file);
    this.readAt = this.now();
  }

  /** The token in FILE; a missing, unreadable or empty file is NW_ERR_CONFIG. */
  static read(file: string): string {
    const token = readServiceAccountFile(file, 'token').toString('utf8').trim();
    if (!token) throw new NodewardenError('NW_ERR_CONFIG', `the service account token ${file} is empty`);
    return token;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  get(): string {
    if (this.now() - this.readAt >= (this.opts.maxAgeMs ?? 60_000)) {
      this.readAt = this.now();
      try {
        this.token = FileTokenSource.read(this.file);
      } catch {
        this.failedReads++;
      }
    }
    return this.token;
  }

  refused(): void {
    this.readAt = -Infinity;
  }
}

export class KubeClient {
  constructor(private readonly opts: KubeClientOptions) {}

  /** The pod's own service account: KUBERNETES_SERVICE_HOST/PORT, its token and CA. */
  static inCluster(opts: { server?: string; tokenFile?: string; caFile?: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): KubeClient {
    const env = opts.env ?? process.env;
    const host = env['KUBERNETES_SERVICE_HOST'];
    const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
    const server = opts.server || (host ? `https://${host.includes(':') ? `[${host}]` : host}:${port}` : '');
    if (!server) throw new NodewardenError('NW_ERR_CONFIG', 'kubernetes.enabled is true but there is no API server: not in a pod (KUBERNETES_SERVICE_HOST unset) and kubernetes.server is empty');
    const token = new FileTokenSource(opts.tokenFile ?? `${SA_DIR}/token`);
    const ca = server.startsWith('https:') ? readServiceAccountFile(opts.caFile ?? `${SA_DIR}/ca.crt`, 'CA') : undefined;
    return new KubeClient({ server, token, ...(ca ? { ca } : {}), timeoutMs: opts.timeoutMs });
  }

  /** What every call to the API server shares: its URL, the token, the CA, the timeout, and how it fails. */
  private call(method: string, path: string): HttpRequestOptions & { url: URL } {
    const url = new URL(path, this.opts.server);
    const what = `${method} ${url.pathname}`;
    const source = typeof this.opts.token === 'string' ? undefined : this.opts.token;
    return {
      what,
      url,
      method,
      ...(this.opts.ca ? { ca: this.opts.ca } : {}),
      headers: { authorization: `Bearer ${source ? source.get() : (this.opts.token as string)}`, accept: 'application/json' },
      timeoutMs: this.opts.timeoutMs,
      peer: 'the API server',
      statusError: (status, text) => {
        if (status === 401) source?.refused();
        return failure(what, status, text);
      },
    };
  }

  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', opts: { maxBody?: number; signal?: AbortSignal } = {}): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const call = this.call(method, path);
    const r = await httpRequest({
      ...call,
      headers: { ...call.headers, ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}) },
      ...(payload ? { body: payload } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      maxBody: opts.maxBody ?? MAX_BODY,
    });
    const text = r.body.toString('utf8');
    try {
      return (text ? JSON.parse(text) : {}) as T;
    } catch {
      return {} as T;
    }
  }

  /**
   * A watch: GET `path` as a stream of JSON lines, one object each, handed to `onObject`. Resolves when
   * the server ends the stream (its timeoutSeconds); rejects on an HTTP error (KubeError), when no
   * headers come within the client's timeout, or when nothing at all arrives for `idleMs` (a dead
   * connection is noticed, not waited on forever). `signal` ends it quietly.
   */
  stream(path: string, onObject: (obj: Record<string, unknown>) => void, opts: { idleMs: number; signal?: AbortSignal; maxLine?: number; onOpen?: () => void }): Promise<void> {
    const call = this.call('GET', path);
    const maxLine = opts.maxLine ?? 4 * 1024 * 1024;
    // Each event is parsed as soon as its line is complete; only an unfinished line is kept, in parts.
    let pending: string[] = [];
    let pendingChars = 0;
    return httpStream(
      { ...call, ...(opts.signal ? { signal: opts.signal } : {}) },
      {
        idle: { ms: opts.idleMs, message: `nothing from the watch within ${opts.idleMs} ms` },
        ...(opts.onOpen ? { onOpen: opts.onOpen } : {}),
        onText: (c) => {
          let from = 0;
          let nl: number;
          while ((nl = c.indexOf('\n', from)) >= 0) {
            const piece = c.slice(from, nl);
            const line = (pending.length > 0 ? pending.join('') + piece : piece).trim();
            pending = [];
            pendingChars = 0;
            from = nl + 1;
            if (line === '') continue;
            onObject(JSON.parse(line) as Record<string, unknown>);
          }
          if (from < c.length) {
            pending.push(c.slice(from));
            pendingChars += c.length - from;
          }
          if (pendingChars > maxLine) throw new NodewardenError('NW_ERR_PARSE', `${call.what}: a watch event longer than ${maxLine} bytes`);
        },
      },
    );
  }

  /**
   * A list (GET `path`), its items handed to `onItem` one by one as they arrive, each parsed on its own:
   * the page's text and its parsed tree are never held whole (docs/design.md). Resolves with the rest of
   * the list (kind, metadata) once it is complete; the same timeout as every plain call, for the whole list.
   */
  async list(path: string, onItem: (item: Record<string, unknown>) => void, opts: { signal?: AbortSignal } = {}): Promise<Record<string, unknown>> {
    const call = { ...this.call('GET', path), ...(opts.signal ? { signal: opts.signal } : {}) };
    const splitter = new ListItemSplitter((item) => onItem(JSON.parse(item) as Record<string, unknown>));
    await httpStream(call, {
      wholeBody: true,
      onText: (c) => {
        try {
          splitter.write(c);
        } catch (err) {
          throw err instanceof SyntaxError || err instanceof RangeError ? new NodewardenError('NW_ERR_PARSE', `${call.what}: ${err.message}`) : err;
        }
      },
    });
    try {
      const rest = JSON.parse(splitter.rest()) as unknown;
      if (typeof rest !== 'object' || rest === null || Array.isArray(rest)) throw new SyntaxError('not a JSON object');
      return rest as Record<string, unknown>;
    } catch (err) {
      throw new NodewardenError('NW_ERR_PARSE', `${call.what}: the list is not JSON: ${errorMessage(err)}`);
    }
  }

  /** The timeout every plain call has. */
  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  getNode(name: string, opts: { maxBody?: number; signal?: AbortSignal } = {}): Promise<KubeNode> {
    return this.request('GET', `/api/v1/nodes/${encodeURIComponent(name)}`, undefined, undefined, opts);
  }

  patchNodeStatus(name: string, patch: unknown, type: PatchType = 'application/strategic-merge-patch+json'): Promise<KubeNode> {
    return this.request('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}/status`, patch, type);
  }

  createEvent(namespace: string, event: unknown): Promise<unknown> {
    return this.request('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, event);
  }
}

export interface NodeCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  lastHeartbeatTime: string;
}

export interface KubeNode {
  metadata: { name: string; uid?: string; resourceVersion?: string };
  status?: { conditions?: NodeCondition[] };
}
