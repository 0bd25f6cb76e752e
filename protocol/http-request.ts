// The one HTTP/1.1 client helper: docker's Engine API on its unix socket, the Kubernetes API over TLS,
// dockerd's /events stream, the aggregator's prune stream. Every request has a deadline, a buffered
// body has a cap, and every failure (no answer, refused, reset, cut mid-body, too big, a status other
// than 2xx, an exception in the caller's chunk handler) settles the caller's promise as a
// NodewardenError: nothing is thrown out of an event handler, no timer outlives the request. It lives
// in protocol/ because the agent (runtime, kube) and the CLI (prune) both need it and the CLI may not
// import the agent; it imports only node:http, node:https and protocol/errors.ts.
import http from 'node:http';
import https from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import { NodewardenError, type ErrorCode } from './errors.js';

/** What went wrong, for callers that word it their own way (the message already says it). */
export type HttpFailure = 'timeout' | 'connect' | 'cut' | 'too-big' | 'status' | 'handler';

export class HttpRequestError extends NodewardenError {
  constructor(
    code: ErrorCode,
    readonly failure: HttpFailure,
    /** The message without the `what:` in front. */
    readonly detail: string,
    what: string,
    extra: { cause?: unknown; statusCode?: number; body?: string } = {},
  ) {
    super(code, `${what}: ${detail}`, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.statusCode = extra.statusCode;
    this.body = extra.body;
  }
  /** The status of a non-2xx answer. */
  readonly statusCode: number | undefined;
  /** The start of a non-2xx answer's body. */
  readonly body: string | undefined;
}

export interface HttpRequestOptions {
  /** Begins every error message: `docker GET /v1.43/images/json`. */
  what: string;
  /** http: or https: (TCP, TLS with `ca`)... */
  url?: string | URL;
  /** ...or a unix socket, with the path asked for. */
  socketPath?: string;
  path?: string;
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: Buffer | string;
  ca?: Buffer;
  /** No response headers within this: NW_ERR_TIMEOUT. A buffered request must also finish its body in it. */
  timeoutMs: number;
  /** Who did not answer, for the timeout's message ("the API server"); the socket path or host otherwise. */
  peer?: string;
  /** The code of every failure but the timeout (default NW_ERR_RUNTIME: the peer failed us). */
  code?: ErrorCode;
  /** Aborting ends the request quietly: the promise resolves (a stream) or rejects as 'cut' (a buffered one). */
  signal?: AbortSignal;
  /**
   * How a status other than 2xx fails, given the start of the body (64 KiB at most). Without it a
   * buffered request resolves with any status, and a stream fails with an HttpRequestError 'status'.
   */
  statusError?: (status: number, text: string) => Error;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** What of a non-2xx answer's body is kept for its error. */
const STATUS_TEXT_MAX = 64 * 1024;

interface Sink {
  /** Whole body under the deadline (a buffered request, a list) rather than only the headers. */
  wholeBody: boolean;
  /** A status other than 2xx is an answer like any other (unless the caller gave statusError). */
  anyStatus: boolean;
  idle?: { ms: number; message: string };
  /** A 2xx response's headers arrived. */
  open(res: http.IncomingMessage): void;
  chunk(c: Buffer): void;
  /** Settles with the outcome of a complete 2xx body. */
  end(res: http.IncomingMessage): unknown;
  /** What an abort through `signal` settles with. */
  aborted(): { value: unknown } | { error: Error };
}

function exchange(opts: HttpRequestOptions, sink: Sink): Promise<unknown> {
  const code = opts.code ?? 'NW_ERR_RUNTIME';
  const fail = (failure: HttpFailure, detail: string, extra?: { cause?: unknown; statusCode?: number; body?: string }) =>
    new HttpRequestError(failure === 'timeout' ? 'NW_ERR_TIMEOUT' : code, failure, detail, opts.what, extra);
  const url = opts.url === undefined ? undefined : new URL(opts.url);
  const peer = opts.peer ?? opts.socketPath ?? url?.host ?? 'the server';
  return new Promise((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let req: http.ClientRequest | undefined;
    let complete = false;
    const done = (err: Error | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      // A response read to its end leaves the connection to the agent's keep-alive pool; anything else closes it.
      if (!complete) req?.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const arm = (ms: number, message: string) => {
      clearTimeout(timer);
      timer = setTimeout(() => done(fail('timeout', message)), ms);
    };
    const onAbort = () => {
      const r = sink.aborted();
      if ('error' in r) done(r.error);
      else done(undefined, r.value);
    };
    // A caller's handler that throws ends the request; the exception becomes the promise's.
    const guard = (fn: () => void) => {
      if (settled) return;
      try {
        fn();
      } catch (err) {
        done(err instanceof Error ? err : fail('handler', String(err)));
      }
    };
    const onResponse = (res: http.IncomingMessage) => {
      const status = res.statusCode ?? 0;
      const ok = status >= 200 && status < 300;
      if (!ok && (opts.statusError || !sink.anyStatus)) {
        // The error's text: read to the end, keep the start.
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < STATUS_TEXT_MAX) text = (text + c).slice(0, STATUS_TEXT_MAX);
        });
        res.on('end', () => {
          complete = true;
          guard(() => done(opts.statusError ? opts.statusError(status, text) : fail('status', `${status} ${text.slice(0, 300)}`, { statusCode: status, body: text })));
        });
      } else {
        if (!sink.wholeBody) {
          if (sink.idle) arm(sink.idle.ms, sink.idle.message);
          else clearTimeout(timer);
        }
        guard(() => sink.open(res));
        res.on('data', (c: Buffer) => {
          if (settled) return;
          if (sink.idle) arm(sink.idle.ms, sink.idle.message);
          guard(() => sink.chunk(c));
        });
        res.on('end', () => {
          complete = true;
          guard(() => done(undefined, sink.end(res)));
        });
      }
      // A response cut short is an 'error' ("aborted", ECONNRESET) once someone listens, and always a
      // 'close' before 'end'; without these the caller would wait for its timeout, or forever.
      const cut = 'the connection closed before the end of the response';
      res.on('error', (err: NodeJS.ErrnoException) => done(fail('cut', err.code === 'ECONNRESET' ? cut : err.message, { cause: err })));
      res.on('close', () => {
        if (!res.complete) done(fail('cut', cut));
      });
    };
    const common: http.RequestOptions = { method: opts.method ?? 'GET', headers: opts.headers ?? {} };
    try {
      if (opts.socketPath !== undefined) req = http.request({ ...common, socketPath: opts.socketPath, path: opts.path ?? '/' }, onResponse);
      else if (url) req = (url.protocol === 'https:' ? https : http).request(url, { ...common, ...(opts.ca ? { ca: opts.ca } : {}) }, onResponse);
      else throw new Error('neither a URL nor a unix socket');
    } catch (err) {
      done(fail('connect', err instanceof Error ? err.message : String(err), { cause: err }));
      return;
    }
    req.on('error', (err) => done(fail('connect', err.message, { cause: err })));
    arm(opts.timeoutMs, `no answer from ${peer} within ${opts.timeoutMs} ms`);
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.end(opts.body);
  });
}

/**
 * One request, its body buffered up to `maxBody` bytes (more: 'too-big', with the caller's code),
 * headers and body within `timeoutMs`. Any status resolves unless `statusError` is given.
 */
export function httpRequest(opts: HttpRequestOptions & { maxBody: number }): Promise<HttpResponse> {
  const chunks: Buffer[] = [];
  let size = 0;
  return exchange(opts, {
    wholeBody: true,
    anyStatus: true,
    open: () => {},
    chunk: (c) => {
      size += c.length;
      if (size > opts.maxBody) throw new HttpRequestError(opts.code ?? 'NW_ERR_RUNTIME', 'too-big', `response larger than ${opts.maxBody} bytes`, opts.what);
      chunks.push(c);
    },
    end: (res): HttpResponse => ({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
    aborted: () => ({ error: new HttpRequestError(opts.code ?? 'NW_ERR_RUNTIME', 'cut', 'aborted', opts.what) }),
  }) as Promise<HttpResponse>;
}

export interface HttpStreamHandlers {
  /** The headers of a 2xx answer arrived. */
  onOpen?: (res: http.IncomingMessage) => void;
  /** Each piece of the body as UTF-8 text (a character is never split). What it throws rejects the promise. */
  onText: (text: string) => void;
  /** After the headers, nothing arriving for `ms` fails with NW_ERR_TIMEOUT and this message. */
  idle?: { ms: number; message: string };
  /** The whole body, not only the headers, within `timeoutMs` (a list that must end). */
  wholeBody?: boolean;
}

/**
 * A streamed answer, handed to `onText` as it arrives; resolves when the body ends (or quietly when
 * `signal` aborts), rejects on every failure. After the headers only `idle` (or `wholeBody`) bounds it.
 */
export function httpStream(opts: HttpRequestOptions, handlers: HttpStreamHandlers): Promise<void> {
  const decoder = new StringDecoder('utf8');
  return exchange(opts, {
    wholeBody: handlers.wholeBody === true,
    anyStatus: false,
    ...(handlers.idle ? { idle: handlers.idle } : {}),
    open: (res) => handlers.onOpen?.(res),
    chunk: (c) => {
      const text = decoder.write(c);
      if (text) handlers.onText(text);
    },
    end: () => {
      const rest = decoder.end();
      if (rest) handlers.onText(rest);
      return undefined;
    },
    aborted: () => ({ value: undefined }),
  }) as Promise<void>;
}
