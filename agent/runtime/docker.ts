// Docker through the Engine API on its unix socket (no docker binary needed). Every call has a timeout;
// a frozen dockerd still accepts connections, so the timeout is what notices it.
import type http from 'node:http';
import { NodewardenError } from '../../protocol/errors.js';
import { httpRequest } from '../../protocol/http-request.js';

const MAX_BODY = 64 * 1024 * 1024;
/** The newest API version we speak; older daemons are asked at their own version. */
const OUR_API = [1, 43] as const;

export interface DockerContainerSummary {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  State: string;
  Status: string;
  Labels: Record<string, string> | null;
  Created: number;
}

export interface DockerContainerInspect {
  Id: string;
  Name: string;
  Image: string;
  /** /var/lib/docker/containers/<id>/hostname: its directory is the container's own. */
  HostnamePath: string;
  State: { Status: string; Running: boolean; Paused: boolean; Restarting: boolean; Dead: boolean; Pid: number; ExitCode: number; Error: string; StartedAt: string; FinishedAt: string };
  Config: { Image: string; Labels: Record<string, string> | null };
  GraphDriver: { Name: string; Data: Record<string, string> | null };
}

export interface DockerImageSummary {
  Id: string;
  RepoTags: string[] | null;
  RepoDigests: string[] | null;
  Created: number;
  Size: number;
  Containers: number;
  Labels: Record<string, string> | null;
}

export class DockerError extends NodewardenError {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super('NW_ERR_RUNTIME', message);
  }
}

export class DockerClient {
  private apiPrefix: string | undefined;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs: number,
  ) {}

  /** Raw request; resolves with status and body, rejects with NW_ERR_TIMEOUT or NW_ERR_RUNTIME. */
  async request(method: string, path: string, opts: { timeoutMs?: number; body?: unknown } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const r = await httpRequest({
      what: `docker ${method} ${path}`,
      socketPath: this.socketPath,
      path,
      method,
      headers: { host: 'docker', ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
      ...(payload ? { body: payload } : {}),
      timeoutMs: opts.timeoutMs ?? this.timeoutMs,
      maxBody: MAX_BODY,
    });
    return { status: r.status, body: r.body.toString('utf8'), headers: r.headers };
  }

  private async prefix(): Promise<string> {
    if (this.apiPrefix) return this.apiPrefix;
    const r = await this.request('GET', '/_ping');
    const theirs = String(r.headers['api-version'] ?? '1.41').split('.').map(Number);
    const [maj = 1, min = 41] = theirs;
    const use = maj < OUR_API[0] || (maj === OUR_API[0] && min < OUR_API[1]) ? `${maj}.${min}` : OUR_API.join('.');
    this.apiPrefix = `/v${use}`;
    return this.apiPrefix;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.request(method, `${await this.prefix()}${path}`, body === undefined ? {} : { body });
    if (r.status < 200 || r.status >= 300) {
      let msg = r.body.trim();
      try {
        msg = (JSON.parse(r.body) as { message?: string }).message ?? msg;
      } catch {
        // not JSON
      }
      throw new DockerError(`docker ${method} ${path}: ${r.status} ${msg}`, r.status);
    }
    if (r.body === '') return undefined as T;
    try {
      return JSON.parse(r.body) as T;
    } catch (err) {
      throw new NodewardenError('NW_ERR_PARSE', `docker ${method} ${path}: the reply is not JSON`, { cause: err });
    }
  }

  async ping(): Promise<string> {
    const r = await this.request('GET', '/_ping');
    if (r.status !== 200) throw new DockerError(`docker /_ping: ${r.status}`, r.status);
    return String(r.headers['api-version'] ?? '');
  }

  containers(): Promise<DockerContainerSummary[]> {
    return this.json('GET', '/containers/json?all=1');
  }

  inspect(id: string): Promise<DockerContainerInspect> {
    return this.json('GET', `/containers/${encodeURIComponent(id)}/json`);
  }

  images(): Promise<DockerImageSummary[]> {
    return this.json('GET', '/images/json');
  }

  inspectImage(id: string): Promise<{ Id: string; RepoTags: string[] | null; GraphDriver: { Name: string; Data: Record<string, string> | null }; RootFS?: { Type: string; Layers?: string[] } }> {
    return this.json('GET', `/images/${encodeURIComponent(id)}/json`);
  }

  removeImage(id: string): Promise<{ Untagged?: string; Deleted?: string }[]> {
    return this.json('DELETE', `/images/${encodeURIComponent(id)}`);
  }
}
