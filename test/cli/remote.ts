// Where the aggregator is and which token to show it (tail, prune, why): flags first, then the
// environment, else the default; a wrong URL or no token is a usage error (one line, exit 3).
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { aggregatorUrl, DEFAULT_AGGREGATOR, toHttp, token, toWs } from '../../cli/remote.js';
import { runSync } from '../helpers/processes.js';

/** Runs `fn` with these environment variables (undefined removes one), then puts them back. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) delete process.env[k];
      else process.env[k] = x;
    }
  };
  set(vars);
  try {
    return fn();
  } finally {
    set(saved);
  }
}

t.test('the aggregator URL: the flag, then $NODEWARDEN_AGGREGATOR, then the default; trailing slashes go', async (t) => {
  t.equal(withEnv({ NODEWARDEN_AGGREGATOR: 'wss://agg.example:9743' }, () => aggregatorUrl('ws://10.0.0.1:9743//')), 'ws://10.0.0.1:9743');
  t.equal(withEnv({ NODEWARDEN_AGGREGATOR: 'https://agg.example:9743/' }, () => aggregatorUrl(undefined)), 'https://agg.example:9743');
  t.equal(withEnv({ NODEWARDEN_AGGREGATOR: undefined }, () => aggregatorUrl(undefined)), DEFAULT_AGGREGATOR);
  t.equal(DEFAULT_AGGREGATOR, 'ws://127.0.0.1:9743');
  for (const bad of ['127.0.0.1:9743', 'ftp://agg', 'ws://', 'ws:///path']) {
    t.throws(() => aggregatorUrl(bad), { code: 'NW_ERR_USAGE', message: `--aggregator must be a ws://, wss://, http:// or https:// URL, got ${bad}` }, bad);
  }
});

t.test('ws and http forms of the same address', async (t) => {
  t.equal(toHttp('ws://a:1'), 'http://a:1');
  t.equal(toHttp('wss://a:1'), 'https://a:1');
  t.equal(toHttp('https://a:1'), 'https://a:1');
  t.equal(toWs('http://a:1'), 'ws://a:1');
  t.equal(toWs('https://a:1'), 'wss://a:1');
  t.equal(toWs('wss://a:1'), 'wss://a:1');
});

t.test('the token: --token-file, then $NODEWARDEN_TOKEN_FILE, then $NODEWARDEN_TOKEN; none is a usage error', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-remote-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'a'), '# tail token\nops token-from-flag-0123456789\n');
  writeFileSync(path.join(dir, 'b'), 'token-from-env-file-0123456789\n');
  const env = { NODEWARDEN_TOKEN_FILE: path.join(dir, 'b'), NODEWARDEN_TOKEN: ' token-from-env-0123456789 \n' };
  t.equal(withEnv(env, () => token(path.join(dir, 'a'))), 'token-from-flag-0123456789');
  t.equal(withEnv(env, () => token(undefined)), 'token-from-env-file-0123456789');
  t.equal(withEnv({ ...env, NODEWARDEN_TOKEN_FILE: undefined }, () => token(undefined)), 'token-from-env-0123456789', 'trimmed');
  t.throws(() => withEnv({ NODEWARDEN_TOKEN_FILE: undefined, NODEWARDEN_TOKEN: undefined }, () => token(undefined)), { code: 'NW_ERR_USAGE', message: /^no token: pass --token-file FILE/ });
  t.throws(() => withEnv(env, () => token(path.join(dir, 'absent'))), { code: 'NW_ERR_CONFIG', message: /absent: no such file/ }, 'a named file that is missing is not skipped');
});

t.test('as a process: a bad --aggregator or no token is one line and exit 3, for tail and why alike', async (t) => {
  for (const cmd of [['tail'], ['why', 'web-0']]) {
    const r = runSync([...cmd, '--aggregator', 'ftp://agg'], { NODEWARDEN_TOKEN: 'token-0123456789abcdef' });
    t.same([r.code, r.stdout], [3, ''], String(cmd[0]));
    t.match(r.stderr, /^nodewarden: --aggregator must be a ws:\/\/, wss:\/\/, http:\/\/ or https:\/\/ URL, got ftp:\/\/agg\n/);
    t.ok(r.stderr.split('\n').length <= 3, 'no stack');
    const none = runSync([...cmd, '--aggregator', 'ws://127.0.0.1:1'], { NODEWARDEN_TOKEN: '', NODEWARDEN_TOKEN_FILE: '' });
    t.same([none.code, none.stdout], [3, ''], `${cmd[0]} without a token`);
    t.match(none.stderr, /^nodewarden: no token/);
  }
});
