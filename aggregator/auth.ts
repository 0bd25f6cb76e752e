// Bearer tokens for agents, tailers and admins (commands such as prune). Read from a directory (the
// Kubernetes Secret mounted as files agent, tail, admin: one token per line, optionally "NAME TOKEN").
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { NodewardenError, errnoCode } from '../protocol/errors.js';
import { MIN_TOKEN_LENGTH, parseTokenLines } from '../protocol/tokens.js';

export type Role = 'agent' | 'tail' | 'admin';

export interface Token {
  role: Role;
  name: string;
  secret: string;
}

export function parseTokenFile(text: string, role: Role): Token[] {
  return parseTokenLines(text).map((t) => ({ role, name: t.name ?? `${role}#${t.line}`, secret: t.secret }));
}

/** Loads tokens from DIR/agent, DIR/tail, DIR/admin; each file is optional but at least one token must exist. */
export function loadTokens(dir: string): Token[] {
  const tokens: Token[] = [];
  for (const role of ['agent', 'tail', 'admin'] as const) {
    try {
      tokens.push(...parseTokenFile(readFileSync(path.join(dir, role), 'utf8'), role));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw new NodewardenError('NW_ERR_CONFIG', `cannot read ${path.join(dir, role)}: ${String(err)}`);
    }
  }
  const short = tokens.find((t) => t.secret.length < MIN_TOKEN_LENGTH);
  if (short) throw new NodewardenError('NW_ERR_CONFIG', `token ${short.name} in ${dir} is shorter than ${MIN_TOKEN_LENGTH} characters`);
  if (tokens.length === 0) throw new NodewardenError('NW_ERR_CONFIG', `no tokens in ${dir} (files agent, tail, admin: one token per line)`);
  return tokens;
}

export class Authenticator {
  constructor(private readonly tokens: readonly Token[]) {}

  /** The token presented in an Authorization header, if it is one of ours. */
  identify(header: string | undefined): Token | undefined {
    const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!m) return undefined;
    const given = Buffer.from(m[1]!);
    for (const t of this.tokens) {
      const want = Buffer.from(t.secret);
      if (want.length === given.length && timingSafeEqual(want, given)) return t;
    }
    return undefined;
  }

  /** Whether a token may act as `role` (admins may also tail). */
  static allows(token: Token | undefined, role: Role): boolean {
    if (!token) return false;
    return token.role === role || (role === 'tail' && token.role === 'admin');
  }
}
