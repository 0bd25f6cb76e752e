// The few Kubernetes API calls the agent makes (its Node, the Node's status, Events, its node's pods: list
// and watch), over node:https with the pod's service account. Hand-written rather than @kubernetes/client-node: that library adds
// about 74 MiB of resident memory to an agent whose whole budget is 80 MiB (README, design).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { NodewardenError, errnoCode } from '../../protocol/errors.js';
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
  token: string;
  ca?: Buffer;
  timeoutMs: number;
}

export type PatchType = 'application/strategic-merge-patch+json' | 'application/merge-patch+json' | 'application/json-patch+json';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class KubeClient {
  constructor(private readonly opts: KubeClientOptions) {}

  /** The pod's own service account: KUBERNETES_SERVICE_HOST/PORT, its token and CA. */
  static inCluster(opts: { server?: string; tokenFile?: string; caFile?: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): KubeClient {
    const env = opts.env ?? process.env;
    const host = env['KUBERNETES_SERVICE_HOST'];
    const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
    const server = opts.server || (host ? `https://${host.includes(':') ? `[${host}]` : host}:${port}` : '');
    if (!server) throw new NodewardenError('NW_ERR_CONFIG', 'kubernetes.enabled is true but there is no API server: not in a pod (KUBERNETES_SERVICE_HOST unset) and kubernetes.server is empty');
    const read = (file: string, what: string) => {
      try {
        return readFileSync(file);
      } catch (err) {
        throw new NodewardenError('NW_ERR_CONFIG', `cannot read the service account ${what} ${file}: ${errnoCode(err) === 'ENOENT' ? 'no such file (is automountServiceAccountToken false?)' : String(err)}`);
      }
    };
    const token = read(opts.tokenFile ?? `${SA_DIR}/token`, 'token').toString('utf8').trim();
    const ca = server.startsWith('https:') ? read(opts.caFile ?? `${SA_DIR}/ca.crt`, 'CA') : undefined;
    return new KubeClient({ server, token, ...(ca ? { ca } : {}), timeoutMs: opts.timeoutMs });
  }

  request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const url = new URL(path, this.opts.server);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        url,
        {
          method,
          ...(this.opts.ca ? { ca: this.opts.ca } : {}),
          headers: { authorization: `Bearer ${this.opts.token}`, accept: 'application/json', ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            clearTimeout(timer);
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) return reject(failure(`${method} ${url.pathname}`, status, text));
            try {
              resolve((text ? JSON.parse(text) : {}) as T);
            } catch {
              resolve({} as T);
            }
          });
        },
      );
      const timer = setTimeout(() => {
        req.destroy();
        reject(new NodewardenError('NW_ERR_TIMEOUT', `${method} ${url.pathname}: no answer from the API server within ${this.opts.timeoutMs} ms`));
      }, this.opts.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(new NodewardenError('NW_ERR_RUNTIME', `${method} ${url.pathname}: ${err.message}`));
      });
      req.end(payload);
    });
  }

  /**
   * A watch: GET `path` as a stream of JSON lines, one object each, handed to `onObject`. Resolves when
   * the server ends the stream (its timeoutSeconds); rejects on an HTTP error (KubeError), when no
   * headers come within the client's timeout, or when nothing at all arrives for `idleMs` (a dead
   * connection is noticed, not waited on forever). `signal` ends it quietly.
   */
  stream(path: string, onObject: (obj: Record<string, unknown>) => void, opts: { idleMs: number; signal?: AbortSignal; maxLine?: number; onOpen?: () => void }): Promise<void> {
    const url = new URL(path, this.opts.server);
    const lib = url.protocol === 'https:' ? https : http;
    const maxLine = opts.maxLine ?? 4 * 1024 * 1024;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      const done = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        req.destroy();
        if (err) reject(err);
        else resolve();
      };
      const arm = (ms: number, what: string) => {
        clearTimeout(timer);
        timer = setTimeout(() => done(new NodewardenError('NW_ERR_TIMEOUT', `GET ${url.pathname}: ${what} within ${ms} ms`)), ms);
      };
      const onAbort = () => done();
      const req = lib.request(url, { method: 'GET', ...(this.opts.ca ? { ca: this.opts.ca } : {}), headers: { authorization: `Bearer ${this.opts.token}`, accept: 'application/json' } }, (res) => {
        const status = res.statusCode ?? 0;
        let text = '';
        res.setEncoding('utf8');
        if (status < 200 || status >= 300) {
          res.on('data', (c: string) => (text = (text + c).slice(0, 64 * 1024)));
          res.on('end', () => done(failure(`GET ${url.pathname}`, status, text)));
          return;
        }
        arm(opts.idleMs, 'nothing from the watch');
        opts.onOpen?.();
        // Each event is parsed as soon as its line is complete; only an unfinished line is kept, in parts.
        let pending: string[] = [];
        let pendingChars = 0;
        res.on('data', (c: string) => {
          if (settled) return;
          arm(opts.idleMs, 'nothing from the watch');
          let from = 0;
          let nl: number;
          while ((nl = c.indexOf('\n', from)) >= 0) {
            const piece = c.slice(from, nl);
            const line = (pending.length > 0 ? pending.join('') + piece : piece).trim();
            pending = [];
            pendingChars = 0;
            from = nl + 1;
            if (line === '') continue;
            try {
              onObject(JSON.parse(line) as Record<string, unknown>);
            } catch (err) {
              return done(err instanceof Error ? err : new Error(String(err)));
            }
          }
          if (from < c.length) {
            pending.push(c.slice(from));
            pendingChars += c.length - from;
          }
          if (pendingChars > maxLine) done(new NodewardenError('NW_ERR_PARSE', `GET ${url.pathname}: a watch event longer than ${maxLine} bytes`));
        });
        res.on('end', () => done());
        res.on('error', (err) => done(new NodewardenError('NW_ERR_RUNTIME', `GET ${url.pathname}: ${err.message}`)));
      });
      arm(this.opts.timeoutMs, 'no answer from the API server');
      req.on('error', (err) => done(new NodewardenError('NW_ERR_RUNTIME', `GET ${url.pathname}: ${err.message}`)));
      if (opts.signal?.aborted) return done();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      req.end();
    });
  }

  /**
   * A list (GET `path`), its items handed to `onItem` one by one as they arrive, each parsed on its own:
   * the page's text and its parsed tree are never held whole (README, design). Resolves with the rest of
   * the list (kind, metadata) once it is complete; the same timeout as every plain call, for the whole list.
   */
  list(path: string, onItem: (item: Record<string, unknown>) => void): Promise<Record<string, unknown>> {
    const url = new URL(path, this.opts.server);
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (err: Error | undefined, value?: Record<string, unknown>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(value ?? {});
      };
      const req = lib.request(url, { method: 'GET', ...(this.opts.ca ? { ca: this.opts.ca } : {}), headers: { authorization: `Bearer ${this.opts.token}`, accept: 'application/json' } }, (res) => {
        const status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        if (status < 200 || status >= 300) {
          let text = '';
          res.on('data', (c: string) => (text = (text + c).slice(0, 64 * 1024)));
          res.on('end', () => done(failure(`GET ${url.pathname}`, status, text)));
          return;
        }
        const splitter = new ListItemSplitter((item) => onItem(JSON.parse(item) as Record<string, unknown>));
        res.on('data', (c: string) => {
          if (settled) return;
          try {
            splitter.write(c);
          } catch (err) {
            done(err instanceof SyntaxError || err instanceof RangeError ? new NodewardenError('NW_ERR_PARSE', `GET ${url.pathname}: ${err.message}`) : err instanceof Error ? err : new Error(String(err)));
          }
        });
        res.on('end', () => {
          try {
            const rest = JSON.parse(splitter.rest()) as unknown;
            if (typeof rest !== 'object' || rest === null || Array.isArray(rest)) throw new SyntaxError('not a JSON object');
            done(undefined, rest as Record<string, unknown>);
          } catch (err) {
            done(new NodewardenError('NW_ERR_PARSE', `GET ${url.pathname}: the list is not JSON: ${err instanceof Error ? err.message : String(err)}`));
          }
        });
        res.on('error', (err) => done(new NodewardenError('NW_ERR_RUNTIME', `GET ${url.pathname}: ${err.message}`)));
      });
      const timer = setTimeout(() => done(new NodewardenError('NW_ERR_TIMEOUT', `GET ${url.pathname}: no answer from the API server within ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
      req.on('error', (err) => done(new NodewardenError('NW_ERR_RUNTIME', `GET ${url.pathname}: ${err.message}`)));
      req.end();
    });
  }

  /** The timeout every plain call has. */
  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  getNode(name: string): Promise<KubeNode> {
    return this.request('GET', `/api/v1/nodes/${encodeURIComponent(name)}`);
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
