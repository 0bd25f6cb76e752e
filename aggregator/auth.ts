// Bearer tokens for agents, tailers and admins (commands such as prune). Read from a directory (the
// Kubernetes Secret mounted as files agent, tail, admin: one token per line, optionally "NAME TOKEN"),
// re-read when the files change (a Secret volume is updated in place) and on SIGHUP. Errors name the
// file and line, never the token: a secret must not end up in a log.
import { timingSafeEqual } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { NodewardenError, errnoCode } from '../protocol/errors.js';
import { MIN_TOKEN_LENGTH, parseTokenLines } from '../protocol/tokens.js';

export type Role = 'agent' | 'tail' | 'admin';
export const ROLES = ['agent', 'tail', 'admin'] as const;

export interface Token {
  role: Role;
  name: string;
  secret: string;
}

/** Who is on the other end of a connection: a token from the files, or a Kubernetes-bound agent. */
export interface Identity {
  role: Role;
  name: string;
  /** Set when the credential speaks for exactly one node (a bound service-account token). */
  node?: string;
}

/** What the manifests and docs use as placeholders, and tokens with too little variety to be random. */
function looksLikePlaceholder(secret: string): boolean {
  return /change[-_ ]?me|replace|placeholder|example|your[-_]?token|x{6,}/i.test(secret) || new Set(secret).size < 8;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$/;

/** One role's file; every problem found goes in `problems` (file and line, never the token). */
export function parseTokenFile(text: string, role: Role, file: string = role, problems: string[] = []): Token[] {
  const out: Token[] = [];
  text.split('\n').forEach((raw, i) => {
    const fields = raw.trim().split(/\s+/).filter(Boolean);
    if (fields.length > 2 && !fields[0]!.startsWith('#')) problems.push(`${file} line ${i + 1}: expected TOKEN or NAME TOKEN, found ${fields.length} fields`);
  });
  for (const t of parseTokenLines(text)) {
    if (t.secret.length === 0) continue;
    const where = `${file} line ${t.line}`;
    if (t.name !== undefined && !NAME.test(t.name)) {
      problems.push(`${where}: the name must be letters, digits and . _ @ : - (at most 64)`);
      continue;
    }
    if (t.secret.length < MIN_TOKEN_LENGTH) problems.push(`${where}: the token is shorter than ${MIN_TOKEN_LENGTH} characters`);
    else if (looksLikePlaceholder(t.secret)) problems.push(`${where}: the token looks like a placeholder, not a random secret (make one with: head -c 24 /dev/urandom | base64 | tr '+/' '-_')`);
    out.push({ role, name: t.name ?? `${role}#${t.line}`, secret: t.secret });
  }
  return out;
}

/**
 * Loads tokens from DIR/agent, DIR/tail, DIR/admin; each file is optional but at least one token must
 * exist (unless `allowEmpty`: agents authenticated by Kubernetes need no file). Every problem is
 * reported at once, as NW_ERR_CONFIG.
 */
export function loadTokens(dir: string, opts: { allowEmpty?: boolean } = {}): Token[] {
  const tokens: Token[] = [];
  const problems: string[] = [];
  for (const role of ROLES) {
    const file = path.join(dir, role);
    try {
      tokens.push(...parseTokenFile(readFileSync(file, 'utf8'), role, file, problems));
    } catch (err) {
      const code = errnoCode(err);
      if (code !== 'ENOENT') problems.push(`cannot read ${file}: ${code ?? 'error'}`);
    }
  }
  const seen = new Map<string, Token>();
  const fileOf = (role: Role) => path.join(dir, role);
  for (const t of tokens) {
    const first = seen.get(t.secret);
    if (first && first.role !== t.role) problems.push(`the same token is in ${fileOf(first.role)} (${first.name}) and ${fileOf(t.role)} (${t.name}): a token has one role`);
    else if (!first) seen.set(t.secret, t);
  }
  if (tokens.length === 0 && problems.length === 0 && !opts.allowEmpty) problems.push(`no tokens in ${dir} (files agent, tail, admin: one token per line)`);
  if (problems.length > 0) throw new NodewardenError('NW_ERR_CONFIG', `--tokens-dir ${dir}: ${problems.length === 1 ? problems[0] : `${problems.length} problems`}`, { details: problems.length > 1 ? problems : [] });
  return tokens;
}

export class Authenticator {
  private tokens: readonly Token[];

  constructor(tokens: readonly Token[]) {
    this.tokens = tokens;
  }

  /** Swaps the whole set at once: a revoked token stops working, a new one starts. */
  replace(tokens: readonly Token[]): void {
    this.tokens = tokens;
  }

  size(): number {
    return this.tokens.length;
  }

  /** The token presented in an Authorization header, if it is one of ours. */
  identify(header: string | undefined): Token | undefined {
    const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!m) return undefined;
    const given = Buffer.from(m[1]!);
    let found: Token | undefined;
    for (const t of this.tokens) {
      const want = Buffer.from(t.secret);
      if (want.length === given.length && timingSafeEqual(want, given)) found ??= t;
    }
    return found;
  }

  /** Whether a token may act as `role` (admins may also tail). */
  static allows(token: Pick<Token, 'role'> | undefined, role: Role): boolean {
    if (!token) return false;
    return token.role === role || (role === 'tail' && token.role === 'admin');
  }
}

/**
 * Re-reads the token directory when anything in it changes (Kubernetes swaps a Secret volume's
 * `..data` symlink, which a directory watch sees), every `pollMs` as well (watches can miss events on
 * some filesystems), and whenever `reload()` is called (SIGHUP). A directory that no longer loads keeps
 * the previous tokens and reports why through `onError`.
 */
export class TokenWatcher {
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private last: string;

  constructor(
    private readonly dir: string,
    private readonly opts: { allowEmpty?: boolean; pollMs?: number; onTokens: (t: Token[]) => void; onError: (err: NodewardenError) => void },
    initial: readonly Token[],
  ) {
    this.last = fingerprint(initial);
  }

  start(): void {
    try {
      this.watcher = watch(this.dir, () => {
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => this.reload(), 200);
        this.debounce.unref();
      });
      this.watcher.on('error', () => undefined); // the poll carries on
      this.watcher.unref();
    } catch {
      // no watch here (some filesystems): polling alone
    }
    this.poll = setInterval(() => this.reload(), this.opts.pollMs ?? 30_000);
    this.poll.unref();
  }

  /** Loads the directory now; true when the tokens changed. */
  reload(): boolean {
    let tokens: Token[];
    try {
      tokens = loadTokens(this.dir, { allowEmpty: this.opts.allowEmpty ?? false });
    } catch (err) {
      this.opts.onError(err instanceof NodewardenError ? err : new NodewardenError('NW_ERR_CONFIG', `cannot read --tokens-dir ${this.dir}`));
      return false;
    }
    const f = fingerprint(tokens);
    if (f === this.last) return false;
    this.last = f;
    this.opts.onTokens(tokens);
    return true;
  }

  stop(): void {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
  }
}

function fingerprint(tokens: readonly Token[]): string {
  return tokens.map((t) => `${t.role}\0${t.name}\0${t.secret}`).join('\n');
}
