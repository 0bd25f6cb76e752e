// A unary gRPC client over HTTP/2 on a unix socket: what nodewarden needs of containerd's API, with a
// deadline on every call. One session is kept and replaced whenever it fails or closes.
import http2 from 'node:http2';
import net from 'node:net';
import { NodewardenError } from '../../protocol/errors.js';

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
  call(path: string, body: Buffer, opts: { timeoutMs: number; metadata?: Record<string, string> }): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      try {
        session = this.connect();
      } catch (err) {
        reject(new NodewardenError('NW_ERR_RUNTIME', `cannot connect to ${this.socketPath}: ${String(err)}`));
        return;
      }
      const frame = Buffer.alloc(5 + body.length);
      frame.writeUInt8(0, 0);
      frame.writeUInt32BE(body.length, 1);
      body.copy(frame, 5);
      const req = session.request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': `${Math.max(1, Math.round(opts.timeoutMs))}m`,
        ...opts.metadata,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      let status: string | undefined;
      let message = '';
      let done = false;
      const finish = (err: Error | undefined, value?: Buffer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) {
          req.close(http2.constants.NGHTTP2_CANCEL);
          // A call that timed out may have left the session stuck (a frozen daemon): start afresh.
          if (err instanceof NodewardenError && err.code === 'NW_ERR_TIMEOUT') session.destroy();
          reject(err);
        } else resolve(value!);
      };
      const timer = setTimeout(() => finish(new NodewardenError('NW_ERR_TIMEOUT', `${path} on ${this.socketPath}: no answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      req.on('response', (headers) => {
        if (headers['grpc-status'] !== undefined) {
          status = String(headers['grpc-status']);
          message = grpcMessage(headers['grpc-message']);
        }
      });
      req.on('trailers', (trailers) => {
        status = String(trailers['grpc-status'] ?? status ?? '');
        message = trailers['grpc-message'] === undefined ? message : grpcMessage(trailers['grpc-message']);
      });
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE) finish(new NodewardenError('NW_ERR_RUNTIME', `${path}: response larger than ${MAX_RESPONSE} bytes`));
        else chunks.push(chunk);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A reset or a dead HTTP/2 session is a stale connection, not the daemon's answer: retried once.
        const stale = /^ERR_HTTP2/.test(err.code ?? '') || err.code === 'ECONNRESET' || err.code === 'EPIPE';
        if (stale) session.destroy();
        finish(new NodewardenError('NW_ERR_RUNTIME', `${path} on ${this.socketPath}: ${err.message}`, { cause: stale ? { code: 'NW_STALE_STREAM', err } : err }));
      });
      req.on('end', () => {
        if (status === undefined) {
          // No grpc-status at all: the stream died under us (a session left over from before the daemon
          // was frozen or restarted). Not the daemon's answer: the session is dropped and made again.
          session.destroy();
          finish(new NodewardenError('NW_ERR_RUNTIME', `${path} on ${this.socketPath}: the stream ended without a gRPC status (stale connection)`, { cause: { code: 'NW_STALE_STREAM' } }));
          return;
        }
        if (status !== '0') {
          finish(new NodewardenError('NW_ERR_RUNTIME', `${path}: grpc status ${status ?? 'missing'}${message ? `: ${message}` : ''}`));
          return;
        }
        // Unary calls carry one length-prefixed message; server-streaming ones several, concatenated
        // here in order (callers of streams use splitFrames on the raw body instead).
        finish(undefined, Buffer.concat(chunks));
      });
      req.end(frame);
    });
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
  opts: { timeoutMs: number; pingMs?: number; metadata?: Record<string, string>; maxMessage?: number },
  handlers: GrpcStreamHandlers,
): { close(): void } {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  const reader = new FrameReader(opts.maxMessage);
  let ended = false;
  let status: string | undefined;
  let message = '';
  const end = (err: NodewardenError | undefined) => {
    if (ended) return;
    ended = true;
    clearTimeout(connectTimer);
    clearInterval(pinger);
    session.destroy();
    handlers.onEnd(err);
  };
  const fail = (why: string, code: 'NW_ERR_RUNTIME' | 'NW_ERR_TIMEOUT' = 'NW_ERR_RUNTIME') => end(new NodewardenError(code, `${path} on ${socketPath}: ${why}`));
  // A frozen daemon accepts the connection (the kernel's backlog) and never answers: the stream is open
  // only once the peer has answered a first PING.
  const connectTimer = setTimeout(() => fail(`no answer to the first PING within ${opts.timeoutMs} ms`, 'NW_ERR_TIMEOUT'), opts.timeoutMs);
  connectTimer.unref();
  let pinger: NodeJS.Timeout | undefined;
  const ping = (then: () => void) => {
    const timer = setTimeout(() => fail(`no PING answer within ${opts.timeoutMs} ms`, 'NW_ERR_TIMEOUT'), opts.timeoutMs);
    timer.unref();
    try {
      session.ping((err) => {
        clearTimeout(timer);
        if (err) fail(`PING failed: ${err.message}`);
        else if (!ended) then();
      });
    } catch (err) {
      clearTimeout(timer);
      fail(`PING failed: ${String(err)}`);
    }
  };
  session.on('error', (err) => fail(err.message));
  session.on('close', () => fail('connection closed'));
  session.on('connect', () =>
    ping(() => {
      clearTimeout(connectTimer);
      handlers.onOpen?.();
      pinger = setInterval(() => ping(() => {}), opts.pingMs ?? 10_000);
      pinger.unref();
    }),
  );
  session.unref();
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  let req: http2.ClientHttp2Stream;
  try {
    req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...opts.metadata });
  } catch (err) {
    fail(`cannot start the stream: ${String(err)}`);
    return { close: () => end(undefined) };
  }
  req.on('response', (headers) => {
    if (headers['grpc-status'] !== undefined) {
      status = String(headers['grpc-status']);
      message = decodeURIComponent(String(headers['grpc-message'] ?? ''));
    }
  });
  req.on('trailers', (trailers) => {
    status = String(trailers['grpc-status'] ?? status ?? '');
    message = decodeURIComponent(String(trailers['grpc-message'] ?? message));
  });
  req.on('data', (chunk: Buffer) => {
    if (ended) return;
    let msgs: Buffer[];
    try {
      msgs = reader.push(chunk);
    } catch (err) {
      fail((err as Error).message);
      return;
    }
    for (const m of msgs) if (!ended) handlers.onMessage(m);
  });
  req.on('error', (err) => fail(err.message));
  req.on('end', () => {
    if (status === undefined) fail('the stream ended without a gRPC status');
    else if (reader.pending > 0) fail(`the stream ended inside a frame (${reader.pending} bytes left over)`);
    else fail(`the stream ended: grpc status ${status}${message ? `: ${message}` : ''}`);
  });
  req.end(frame);
  return { close: () => end(undefined) };
}
