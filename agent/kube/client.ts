// The few Kubernetes API calls the agent makes (its Node, the Node's status, Events, its node's pods: list
// and watch), over node:https with the pod's service account. Hand-written rather than @kubernetes/client-node: that library adds
// about 74 MiB of resident memory to an agent whose whole budget is 80 MiB (README, design).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { NodewardenError, errnoCode } from '../../protocol/errors.js';

export class KubeError extends NodewardenError {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super('NW_ERR_RUNTIME', message);
  }
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
            let json: Record<string, unknown> = {};
            try {
              json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
            } catch {
              // not JSON: keep the text for the message
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(json as T);
            reject(new KubeError(status, String(json['reason'] ?? ''), `${method} ${url.pathname}: ${status} ${String(json['message'] ?? text).slice(0, 300)}`));
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
          res.on('end', () => {
            let json: Record<string, unknown> = {};
            try {
              json = JSON.parse(text) as Record<string, unknown>;
            } catch {
              // not JSON
            }
            done(new KubeError(status, String(json['reason'] ?? ''), `GET ${url.pathname}: ${status} ${String(json['message'] ?? text).slice(0, 300)}`));
          });
          return;
        }
        arm(opts.idleMs, 'nothing from the watch');
        opts.onOpen?.();
        res.on('data', (c: string) => {
          arm(opts.idleMs, 'nothing from the watch');
          text += c;
          let nl: number;
          while ((nl = text.indexOf('\n')) >= 0) {
            const line = text.slice(0, nl).trim();
            text = text.slice(nl + 1);
            if (line === '') continue;
            try {
              onObject(JSON.parse(line) as Record<string, unknown>);
            } catch (err) {
              return done(err instanceof Error ? err : new Error(String(err)));
            }
          }
          if (text.length > maxLine) done(new NodewardenError('NW_ERR_PARSE', `GET ${url.pathname}: a watch event longer than ${maxLine} bytes`));
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
