import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type SecureVersion } from 'node:tls';
import { TOKENS, freePort, run, runSync, startAggregator, until, writeTokens } from '../helpers/processes.js';

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-aggcli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('SIGHUP reloads the token files and does not stop the aggregator', async (t) => {
  const dir = tmp(t);
  const tokens = writeTokens(dir);
  const port = await freePort();
  const agg = await startAggregator(port, tokens);
  t.teardown(() => void agg.kill('SIGKILL'));
  const status = async (token: string) => (await fetch(`http://127.0.0.1:${port}/api/nodes`, { headers: { authorization: `Bearer ${token}` } })).status;
  t.equal(await status(TOKENS.tail), 200);
  const rotated = 'ops rotated-tail-Token-0123456789\n';
  writeFileSync(path.join(tokens, 'tail'), rotated);
  agg.kill('SIGHUP');
  await until(async () => (await status('rotated-tail-Token-0123456789')) === 200, 10_000, 'the new tail token to work');
  t.equal(await status(TOKENS.tail), 401, 'the old one is revoked');
  t.equal(agg.exitCode, null, 'still running after SIGHUP');
  t.equal(agg.signalCode, null);
});

t.test('bad tokens are refused at start with a message that never prints the secret', async (t) => {
  const dir = tmp(t);
  const tokens = writeTokens(dir);
  writeFileSync(path.join(tokens, 'admin'), `${TOKENS.tail}\n`);
  const r = runSync(['aggregator', '--listen', '127.0.0.1:0', '--tokens-dir', tokens]);
  t.equal(r.code, 3);
  t.match(r.stderr, /the same token is in .*tail .* and .*admin/);
  t.notMatch(r.stderr, TOKENS.tail);
  writeFileSync(path.join(tokens, 'admin'), 'CHANGE-ME\n');
  const p = runSync(['aggregator', '--listen', '127.0.0.1:0', '--tokens-dir', tokens]);
  t.equal(p.code, 3);
  t.match(p.stderr, /admin line 1: the token is shorter than 16 characters/);
});

t.test('TLS: forward-secret AEAD suites only; bad certificates and keys are one-line errors naming the flag', async (t) => {
  const dir = tmp(t);
  const tokens = writeTokens(dir);
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  const port = await freePort();
  // Not startAggregator: it polls http://, so wait for the TLS listener ourselves.
  const agg = run(['aggregator', '--listen', `127.0.0.1:${port}`, '--tokens-dir', tokens, '--log-level', 'warn', '--tls-cert', cert, '--tls-key', key]);
  const handshake = (opts: { ciphers?: string; maxVersion?: SecureVersion; minVersion?: SecureVersion }) =>
    new Promise<string>((resolve) => {
      const s = connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...opts });
      s.once('secureConnect', () => {
        resolve(`${s.getProtocol()} ${s.getCipher().name}`);
        s.destroy();
      });
      s.once('error', (e) => resolve(`refused: ${e.message.slice(0, 60)}`));
    });
  t.teardown(() => void agg.kill('SIGKILL'));
  await until(async () => !(await handshake({})).startsWith('refused: connect'), 10_000, 'the TLS listener');
  t.match(await handshake({ ciphers: 'AES128-SHA', maxVersion: 'TLSv1.2' }), /^refused/, 'static-RSA CBC (AES128-SHA) is not offered');
  t.match(await handshake({ ciphers: 'AES256-GCM-SHA384', maxVersion: 'TLSv1.2' }), /^refused/, 'static-RSA GCM (no forward secrecy) is not offered');
  t.match(await handshake({ ciphers: 'ECDHE-RSA-AES128-SHA', maxVersion: 'TLSv1.2' }), /^refused/, 'ECDHE with CBC is not offered');
  t.match(await handshake({ maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }), /^refused/, 'TLS 1.1 is refused');
  t.equal(await handshake({ ciphers: 'ECDHE-RSA-AES128-GCM-SHA256', maxVersion: 'TLSv1.2' }), 'TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256');
  t.equal(await handshake({ ciphers: 'ECDHE-RSA-CHACHA20-POLY1305', maxVersion: 'TLSv1.2' }), 'TLSv1.2 ECDHE-RSA-CHACHA20-POLY1305');
  t.match(await handshake({}), /^TLSv1\.3 /);

  const other = path.join(dir, 'other.pem');
  execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-out', other], { stdio: 'ignore' });
  const cases: [string[], RegExp][] = [
    [['--tls-cert', path.join(dir, 'missing.pem'), '--tls-key', key], /^nodewarden: --tls-cert .*missing\.pem: cannot read it \(ENOENT\)\n$/],
    [['--tls-cert', key, '--tls-key', key], /^nodewarden: --tls-cert .*: not a PEM certificate\n$/],
    [['--tls-cert', cert, '--tls-key', cert], /^nodewarden: --tls-key .*: not a PEM private key\n$/],
    [['--tls-cert', cert, '--tls-key', other], /^nodewarden: --tls-key .*other\.pem: the key does not match --tls-cert\n$/],
  ];
  for (const [flags, want] of cases) {
    const r = runSync(['aggregator', '--listen', '127.0.0.1:0', '--tokens-dir', tokens, ...flags]);
    t.equal(r.code, 3, flags.join(' '));
    t.match(r.stderr, want);
  }
});
