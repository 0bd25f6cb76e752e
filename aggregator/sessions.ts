// Web sessions: a browser exchanges a tail or admin token once (POST /api/session) for a random
// session id in a cookie (HttpOnly, SameSite=Strict, Secure under TLS, Max-Age), so no token ever sits
// in a URL, in the page's storage or in its script. Sessions live only in memory, bounded in number
// (the oldest goes first) and in time; a session whose token is revoked ends with it. Requests that
// change something (POST, DELETE) with a session must also carry its CSRF value in a header and come
// from the page's own origin.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Identity, Role } from './auth.js';

export const SESSION_COOKIE = 'nw_session';
export const CSRF_HEADER = 'x-nodewarden-csrf';

export interface Session {
  id: string;
  csrf: string;
  role: Role;
  name: string;
  /** The token it was made from: revoking the token ends the session. */
  secret: string;
  expiresAt: number;
}

export interface SessionsOptions {
  /** How long a session lasts from login (no sliding renewal: log in again). */
  ttlMs: number;
  /** Sessions held at once; past it the oldest is dropped. */
  max: number;
  now?: () => number;
}

export const DEFAULT_SESSION_TTL_MS = 8 * 3_600_000;
export const DEFAULT_MAX_SESSIONS = 10_000;

const ID = /^[A-Za-z0-9_-]{43}$/;

/** The value of one cookie in a Cookie header, or undefined (malformed, missing, or given twice). */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined;
  let found: string | undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    if (found !== undefined) return undefined; // two of ours: a cookie planted beside the real one
    found = part.slice(eq + 1).trim();
  }
  return found;
}

/**
 * Whether a browser request comes from the page's own origin: its Origin header names the Host it was
 * sent to, with the scheme the server speaks. Browsers send Origin on every POST and WebSocket; a
 * request without one is not from a page (the CLI uses bearer tokens, never the cookie).
 */
export function sameOrigin(req: Pick<IncomingMessage, 'headers'>, tls: boolean): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (typeof origin !== 'string' || typeof host !== 'string' || host.length === 0 || host.length > 300) return false;
  return origin === `${tls ? 'https' : 'http'}://${host}`;
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Sessions {
  /** By id, oldest first (a Map keeps insertion order). */
  private readonly sessions = new Map<string, Session>();
  private readonly now: () => number;

  constructor(private readonly opts: SessionsOptions) {
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.sessions.size;
  }

  create(who: Identity, secret: string): Session {
    this.sweep();
    while (this.sessions.size >= this.opts.max) {
      const oldest = this.sessions.keys().next().value;
      if (oldest === undefined) break;
      this.sessions.delete(oldest);
    }
    const s: Session = { id: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url'), role: who.role, name: who.name, secret, expiresAt: this.now() + this.opts.ttlMs };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The live session named by the request's cookie, if any. */
  fromRequest(req: Pick<IncomingMessage, 'headers'>): Session | undefined {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (!id || !ID.test(id)) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return s;
  }

  /** A state-changing request with a session: the CSRF header must carry the session's value. */
  static csrfOk(s: Session, req: Pick<IncomingMessage, 'headers'>): boolean {
    const given = req.headers[CSRF_HEADER];
    return typeof given === 'string' && equal(given, s.csrf);
  }

  end(id: string): void {
    this.sessions.delete(id);
  }

  /** Ends every session whose token is no longer in `secrets` (tokens reloaded); returns them. */
  revokeExcept(still: (s: Session) => boolean): Session[] {
    const gone: Session[] = [];
    for (const s of this.sessions.values()) if (!still(s)) gone.push(s);
    for (const s of gone) this.sessions.delete(s.id);
    return gone;
  }

  cookie(s: Session, tls: boolean): string {
    return `${SESSION_COOKIE}=${s.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(this.opts.ttlMs / 1000)}${tls ? '; Secure' : ''}`;
  }

  static clearCookie(tls: boolean): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${tls ? '; Secure' : ''}`;
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(id);
  }
}
