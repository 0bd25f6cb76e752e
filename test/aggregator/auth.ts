import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, renameSync, symlinkSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Authenticator, TokenWatcher, loadTokens, type Token } from '../../aggregator/auth.js';
import { NodewardenError } from '../../protocol/errors.js';

function dirWith(t: { teardown(fn: () => void): void }, files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-tokens-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [k, v] of Object.entries(files)) writeFileSync(path.join(dir, k), v);
  return dir;
}

function refused(_t: unknown, dir: string): NodewardenError {
  try {
    loadTokens(dir);
  } catch (err) {
    if (err instanceof NodewardenError && err.code === 'NW_ERR_CONFIG') return err;
    throw err;
  }
  throw new Error(`tokens in ${dir} were accepted`);
}

t.test('a token in two roles, a placeholder, a short token or a malformed line is refused, and the secret is never printed', async (t) => {
  const secret = 'kV3q-9zT_mB2xY7wLp0sNf4R';
  const text = (e: NodewardenError) => `${e.message}\n${e.details.join('\n')}`;
  let e = refused(t, dirWith(t, { agent: `${secret}\n`, admin: `alice ${secret}\n` }));
  t.match(text(e), /the same token is in .*agent \(agent#1\) and .*admin \(alice\): a token has one role/);
  t.notMatch(text(e), secret);
  e = refused(t, dirWith(t, { agent: 'CHANGE-ME-CHANGE-ME\n' }));
  t.match(text(e), /agent line 1: the token looks like a placeholder/);
  e = refused(t, dirWith(t, { tail: 'aaaaaaaaaaaaaaaaaaaaaaaa\n' }));
  t.match(text(e), /placeholder/, 'no variety: not random');
  e = refused(t, dirWith(t, { tail: 'short-Tok3n\n' }));
  t.match(text(e), /tail line 1: the token is shorter than 16 characters/);
  t.notMatch(text(e), 'short-Tok3n');
  // "TOKEN COMMENT": the old parser took the secret for a name and printed it.
  e = refused(t, dirWith(t, { admin: `${secret} our admin token\n` }));
  t.match(text(e), /admin line 1: expected TOKEN or NAME TOKEN, found 4 fields/);
  t.notMatch(text(e), secret);
  e = refused(t, dirWith(t, { admin: `${secret}/x ${secret}y\n` }));
  t.match(text(e), /admin line 1: the name must be/);
  t.notMatch(text(e), secret, 'what is in the name position is not printed either');
  e = refused(t, dirWith(t, { agent: 'CHANGE-ME\n', tail: 'CHANGE-ME\n', admin: 'CHANGE-ME\n' }));
  t.equal(e.details.length, 5, 'every problem at once (three short tokens, two shared across roles)');
  t.same(loadTokens(dirWith(t, { agent: `nodes ${secret}\n` })).map((x) => [x.role, x.name]), [['agent', 'nodes']]);
});

t.test('tokens are reloaded when the directory changes as a Secret volume does (an atomic ..data swap)', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-secret-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // kubelet's layout: files are symlinks into ..data, itself a symlink to a timestamped directory.
  const version = (name: string, tokens: Record<string, string>) => {
    mkdirSync(path.join(dir, name));
    for (const [k, v] of Object.entries(tokens)) writeFileSync(path.join(dir, name, k), v);
    symlinkSync(name, path.join(dir, '..data_tmp'));
    renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  };
  version('..v1', { agent: 'old-agent-token-0123456789\n' });
  symlinkSync('..data/agent', path.join(dir, 'agent'));
  const auth = new Authenticator(loadTokens(dir));
  const errors: string[] = [];
  const changed = new Promise<Token[]>((resolve) => {
    const w = new TokenWatcher(dir, { pollMs: 60_000, onTokens: (tk) => (auth.replace(tk), resolve(tk)), onError: (e) => errors.push(e.message) }, loadTokens(dir));
    w.start();
    t.teardown(() => w.stop());
  });
  t.ok(auth.identify('Bearer old-agent-token-0123456789'));
  const alive = setInterval(() => undefined, 1000); // the watcher is unref'd, as in the server it serves
  t.teardown(() => clearInterval(alive));
  version('..v2', { agent: 'new-agent-token-9876543210\n' });
  await changed;
  t.notOk(auth.identify('Bearer old-agent-token-0123456789'), 'the revoked token stops working');
  t.ok(auth.identify('Bearer new-agent-token-9876543210'), 'the new one works without a restart');
});

t.test('a reload that fails keeps the previous tokens and says why', async (t) => {
  const dir = dirWith(t, { tail: 'tail-token-0123456789\n' });
  const errors: string[] = [];
  let replaced = 0;
  const w = new TokenWatcher(dir, { pollMs: 60_000, onTokens: () => replaced++, onError: (e) => errors.push(e.message) }, loadTokens(dir));
  writeFileSync(path.join(dir, 'tail'), 'CHANGE-ME\n');
  t.notOk(w.reload());
  t.equal(replaced, 0);
  t.match(errors[0], /tail line 1/);
  writeFileSync(path.join(dir, 'tail'), 'tail-token-9876543210\n');
  t.ok(w.reload(), 'a good directory is taken again');
  t.notOk(w.reload(), 'nothing changed: nothing reloaded');
});
