// A unary gRPC client over HTTP/2 on a unix socket: what nodewarden needs of containerd's API, with a
// deadline on every call. One session is kept and replaced whenever it fails or closes.
import http2 from 'node:http2';
import net from 'node:net';
import { NodewardenError, errorMessage } from '../../protocol/errors.js';
import { withDeadline } from '../../protocol/deadline.js';

const MAX_RESPONSE = 64 * 1024 * 1024;

/** Splits a gRPC body into its length-prefixed messages. */
export function splitFrames(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos + 5 <= body.length) {
    const len = body.readUInt32BE(pos + 1);
    if (pos + 5 + len > body.length) throw new NodewardenError('NW_ERR_PARSE', `grpc: a frame of ${len} bytes with only ${body.length - pos - 5} left in the body`);
    out.push(body.subarray(pos + 5, pos + 5 + len));
    pos += 5 + len;
  }
  if (pos !== body.length) throw new NodewardenError('NW_ERR_PARSE', `grpc: ${body.length - pos} bytes after the last frame, too few for a frame header`);
  return out;
}

/** grpc-message is percent-encoded; a daemon that sends a malformed one still gets its text shown. */
function grpcMessage(raw: unknown): string {
  const text = String(raw ?? '');
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** What the server said about a call: grpc-status and grpc-message, once either has arrived. */
export interface GrpcStatus {
  /** undefined until the server sent one (a stream that ends without it died under us). */
  status: string | undefined;
  message: string;
}

/**
 * Follows a call's grpc-status and grpc-message, wherever the server puts them: in the response
 * headers (a trailers-only answer, usually an error) or in the trailers. The one copy for unary calls
 * and streams; a malformed grpc-message is kept as sent, never thrown out of the event handler.
 */
function trackStatus(req: http2.ClientHttp2Stream): GrpcStatus {
  const st: GrpcStatus = { status: undefined, message: '' };
  req.on('response', (headers) => {
    if (headers['grpc-status'] !== undefined) {
      st.status = String(headers['grpc-status']);
      st.message = grpcMessage(headers['grpc-message']);
    }
  });
  req.on('trailers', (trailers) => {
    st.status = String(trailers['grpc-status'] ?? st.status ?? '');
    if (trailers['grpc-message'] !== undefined) st.message = grpcMessage(trailers['grpc-message']);
  });
  return st;
}

/** A gRPC request body: the one message, length-prefixed and uncompressed. */
function frameMessage(body: Buffer): Buffer {
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

export class GrpcClient {
  private session: http2.ClientHttp2Session | undefined;

  constructor(private readonly socketPath: string) {}

  private connect(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(this.socketPath) });
    session.on('error', () => session.destroy());
    session.on('close', () => {
      if (this.session === session) this.session = undefined;
    });
    session.unref();
    this.session = session;
    return session;
  }

  /** Calls `/service/method` with a protobuf body; resolves with the response body. */
  async call(path: string, body: Buffer, opts: { timeoutMs: number; metadata?: Record<string, string> }): Promise<Buffer> {
    let session: http2.ClientHttp2Session;
    try {
      session = this.connect();
    } catch (err) {
      throw new NodewardenError('NW_ERR_RUNTIME', `cannot connect to ${this.socketPath}: ${String(err)}`);
    }
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${Math.max(1, Math.round(opts.timeoutMs))}m`,
      ...opts.metadata,
    });
    const st = trackStatus(req);
    const answer = new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      const fail = (err: NodewardenError) => {
        if (done) return;
        done = true;
        req.close(http2.constants.NGHTTP2_CANCEL);
        reject(err);
      };
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE) fail(new NodewardenError('NW_ERR_RUNTIME', `${path}: response larger than ${MAX_RESPONSE} bytes`));
        else chunks.push(chunk);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A reset or a dead HTTP/2 session is a stale connection, not the daemon's answer: retried once.
        const stale = /^ERR_HTTP2/.test(err.code ?? '') || err.code === 'ECONNRESET' || err.code === 'EPIPE';
        if (stale) session.destroy();
        fail(new NodewardenError('NW_ERR_RUNTIME', `${path} on ${this.socketPath}: ${err.message}`, { cause: stale ? { code: 'NW_STALE_STREAM', err } : err }));
      });
      req.on('end', () => {
        if (st.status === undefined) {
          // No grpc-status at all: the stream died under us (a session left over from before the daemon
          // was frozen or restarted). Not the daemon's answer: the session is dropped and made again.
          session.destroy();
          fail(new NodewardenError('NW_ERR_RUNTIME', `${path} on ${this.socketPath}: the stream ended without a gRPC status (stale connection)`, { cause: { code: 'NW_STALE_STREAM' } }));
          return;
        }
        if (st.status !== '0') {
          fail(new NodewardenError('NW_ERR_RUNTIME', `${path}: grpc status ${st.status}${st.message ? `: ${st.message}` : ''}`, { cause: { code: 'NW_GRPC_STATUS', grpcStatus: Number(st.status) } }));
          return;
        }
        // Unary calls carry one length-prefixed message; server-streaming ones several, concatenated
        // here in order (callers of streams use splitFrames on the raw body instead).
        done = true;
        resolve(Buffer.concat(chunks));
      });
    });
    req.end(frameMessage(body));
    return withDeadline(
      (signal) => {
        // A call that timed out may have left the session stuck (a frozen daemon): start afresh.
        signal.addEventListener('abort', () => {
          req.close(http2.constants.NGHTTP2_CANCEL);
          session.destroy();
        });
        return answer;
      },
      opts.timeoutMs,
      () => new NodewardenError('NW_ERR_TIMEOUT', `${path} on ${this.socketPath}: no answer within ${opts.timeoutMs} ms`),
    );
  }

  /**
   * A unary call: the single message in the body. A stream that died without a status (a stale
   * session after the daemon was frozen or restarted) is tried once more on a fresh session, so a
   * resumed containerd is not reported as answering with errors for a cycle.
   */
  async unary(path: string, body: Buffer, opts: { timeoutMs: number; metadata?: Record<string, string> }): Promise<Buffer> {
    let frames: Buffer;
    try {
      frames = await this.call(path, body, opts);
    } catch (err) {
      if ((err as { cause?: { code?: string } }).cause?.code !== 'NW_STALE_STREAM') throw err;
      frames = await this.call(path, body, opts);
    }
    return splitFrames(frames)[0] ?? Buffer.alloc(0);
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}

/** A server-streaming message larger than this is not one containerd sends: the stream is dropped. */
export const MAX_STREAM_MESSAGE = 4 * 1024 * 1024;

/**
 * Incremental reader of gRPC's length-prefixed messages as chunks arrive. `push` returns the
 * messages completed by the chunk; it throws when a frame is compressed (we never ask for that) or
 * announces more than `maxMessage` bytes, so a hostile or broken peer cannot make us buffer forever.
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxMessage = MAX_STREAM_MESSAGE) {}

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    while (this.buf.length >= 5) {
      if (this.buf[0] !== 0) throw new NodewardenError('NW_ERR_RUNTIME', `gRPC stream: frame with flags ${this.buf[0]} (compressed or garbage)`);
      const len = this.buf.readUInt32BE(1);
      if (len > this.maxMessage) throw new NodewardenError('NW_ERR_RUNTIME', `gRPC stream: frame of ${len} bytes is larger than ${this.maxMessage}`);
      if (this.buf.length < 5 + len) break;
      out.push(Buffer.from(this.buf.subarray(5, 5 + len)));
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }

  /** Bytes of an unfinished frame: a stream that ends here was cut mid-message. */
  get pending(): number {
    return this.buf.length;
  }
}

export interface GrpcStreamHandlers {
  /** The HTTP/2 connection is up (the peer answered its settings): the stream is being followed. */
  onOpen?: () => void;
  onMessage: (msg: Buffer) => void;
  /** Called once: the stream is over, with why (undefined only after close()). */
  onEnd: (err: NodewardenError | undefined) => void;
}

/**
 * A server-streaming call on its own HTTP/2 session (a long-lived stream must not share the fate of
 * the unary calls' session). A quiet stream is legitimate, so liveness is an HTTP/2 PING every
 * `pingMs` that must come back within `timeoutMs`: a frozen daemon is noticed, an idle one is not
 * dropped. The stream ends with an error on a bad frame, on grpc-status other than 0, on a cut
 * without grpc-status, and on any socket or protocol error.
 */
export function grpcStream(
  socketPath: string,
  path: string,
  body: Buffer,
  opts: {
    timeoutMs: number;
    pingMs?: number;
    metadata?: Record<string, string>;
    maxMessage?: number;
    /**
     * A unary method (`/service/Method`, called with an empty message) asked every `pingMs` on the
     * stream's session instead of an HTTP/2 PING. gRPC servers built on grpc-go, containerd among
     * them, enforce keepalive: PINGs more often than every 5 minutes on a quiet connection earn
     * strikes, and the third is answered with GOAWAY ENHANCE_YOUR_CALM ("too_many_pings"), which
     * ended containerd's event stream every 30 s. A call the server answers (any grpc-status) proves
     * the same liveness, and its answer resets the strikes.
     */
    probe?: string;
  },
  handlers: GrpcStreamHandlers,
): { close(): void } {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  const reader = new FrameReader(opts.maxMessage);
  let ended = false;
  const end = (err: NodewardenError | undefined) => {
    if (ended) return;
    ended = true;
    clearInterval(pinger);
    session.destroy();
    handlers.onEnd(err);
  };
  const failure = (why: string, code: 'NW_ERR_RUNTIME' | 'NW_ERR_TIMEOUT' = 'NW_ERR_RUNTIME') => new NodewardenError(code, `${path} on ${socketPath}: ${why}`);
  const fail = (why: string, code?: 'NW_ERR_RUNTIME' | 'NW_ERR_TIMEOUT') => end(failure(why, code));
  const pingOnce = () =>
    new Promise<void>((resolve, reject) => {
      session.ping((err) => (err ? reject(failure(`PING failed: ${err.message}`)) : resolve()));
    });
  const probeOnce = (method: string) =>
    new Promise<void>((resolve, reject) => {
      let call: http2.ClientHttp2Stream;
      try {
        call = session.request({ ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers', ...opts.metadata });
      } catch (err) {
        reject(failure(`cannot start ${method}: ${errorMessage(err)}`));
        return;
      }
      const answered = trackStatus(call);
      call.on('data', () => {});
      call.on('error', (err) => reject(failure(`${method} failed: ${err.message}`)));
      call.on('end', () => (answered.status === undefined ? reject(failure(`${method} ended without a gRPC status`)) : resolve()));
      call.end(frameMessage(Buffer.alloc(0)));
    });
  let pinger: NodeJS.Timeout | undefined;
  const ping = () =>
    withDeadline(opts.probe ? () => probeOnce(opts.probe!) : pingOnce, opts.timeoutMs, () => failure(`no ${opts.probe ? `answer to ${opts.probe}` : 'PING answer'} within ${opts.timeoutMs} ms`, 'NW_ERR_TIMEOUT'), { unref: true }).catch((err: unknown) =>
      end(err instanceof NodewardenError ? err : failure(`PING failed: ${errorMessage(err)}`)),
    );
  // A frozen daemon accepts the connection (the kernel's backlog) and never answers: the stream is open
  // only once the peer has answered a first PING, all within one timeout.
  const connected = new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('close', () => reject(failure('connection closed')));
  });
  void withDeadline(() => connected.then(pingOnce), opts.timeoutMs, () => failure(`no answer to the first PING within ${opts.timeoutMs} ms`, 'NW_ERR_TIMEOUT'), { unref: true }).then(
    () => {
      if (ended) return;
      handlers.onOpen?.();
      pinger = setInterval(() => void ping(), opts.pingMs ?? 10_000);
      pinger.unref();
    },
    (err: unknown) => end(err instanceof NodewardenError ? err : failure(`PING failed: ${errorMessage(err)}`)),
  );
  session.on('error', (err) => fail(err.message));
  session.on('close', () => fail('connection closed'));
  session.unref();
  let req: http2.ClientHttp2Stream;
  try {
    req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...opts.metadata });
  } catch (err) {
    fail(`cannot start the stream: ${String(err)}`);
    return { close: () => end(undefined) };
  }
  const st = trackStatus(req);
  req.on('data', (chunk: Buffer) => {
    if (ended) return;
    let msgs: Buffer[];
    try {
      msgs = reader.push(chunk);
    } catch (err) {
      fail((err as Error).message);
      return;
    }
    for (const m of msgs) {
      if (ended) return;
      // A handler that throws ends this stream with its error; it never escapes from the event handler.
      try {
        handlers.onMessage(m);
      } catch (err) {
        end(err instanceof NodewardenError ? err : failure(`the message handler failed: ${errorMessage(err)}`));
      }
    }
  });
  req.on('error', (err) => fail(err.message));
  req.on('end', () => {
    if (st.status === undefined) fail('the stream ended without a gRPC status');
    else if (reader.pending > 0) fail(`the stream ended inside a frame (${reader.pending} bytes left over)`);
    else fail(`the stream ended: grpc status ${st.status}${st.message ? `: ${st.message}` : ''}`);
  });
  req.end(frameMessage(body));
  return { close: () => end(undefined) };
}
