// Start-up failures of the long-running commands, as a new user meets them: one line on stderr that
// names the flag and the fix, exit 3, never a stack trace.
import t from 'tap';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QUIET_COLLECTORS, runSync } from '../helpers/processes.js';
import type { Test } from 'tap';

const quiet = [...QUIET_COLLECTORS, 'collectors.disk.enabled=false'].flatMap((s) => ['--set', s]);

async function busyPort(t: { teardown(fn: () => void): void }): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

function oneLine(t: Test, stderr: string): void {
  t.equal(stderr.trimEnd().split('\n').length, 1, `one line: ${stderr}`);
  t.notMatch(stderr, /\n\s+at |unexpected error/, 'no stack trace');
}

t.test('aggregator --listen on a busy port: one line naming --listen and the fix, exit 3', async (t) => {
  const port = await busyPort(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'agent'), 'agent-token-0123456789abcdef\n');
  const r = runSync(['aggregator', '--listen', `127.0.0.1:${port}`, '--tokens-dir', dir]);
  t.equal(r.code, 3);
  oneLine(t, r.stderr);
  t.match(r.stderr, new RegExp(`--listen: 127\\.0\\.0\\.1:${port} is already in use .*give --listen another port`));
});

t.test('agent --listen on a busy port: one line naming the flag and the fix, exit 3', async (t) => {
  const port = await busyPort(t);
  const r = runSync(['agent', '--listen', `127.0.0.1:${port}`, ...quiet]);
  t.equal(r.code, 3);
  oneLine(t, r.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n'));
  t.match(r.stderr, new RegExp(`agent.listen \\(--listen\\): 127\\.0\\.0\\.1:${port} is already in use`));
});

t.test('agent --listen abc names the expected form, not a regex', async (t) => {
  const r = runSync(['agent', '--listen', 'abc', ...quiet]);
  t.equal(r.code, 3);
  t.match(r.stderr, /agent\.listen: must be HOST:PORT \(e\.g\. 0\.0\.0\.0:9742/);
  t.notMatch(r.stderr, /\\d|\[\^/, 'no regular expression in the message');
});

t.test('aggregator --listen on an address that is not this machine: one line', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'agent'), 'agent-token-0123456789abcdef\n');
  const r = runSync(['aggregator', '--listen', '192.0.2.1:19999', '--tokens-dir', dir]);
  t.equal(r.code, 3);
  oneLine(t, r.stderr);
  t.match(r.stderr, /--listen: 192\.0\.2\.1 is not an address of this machine/);
});

t.test('tail --since 100000000h is a usage error naming the maximum, not a retry loop', async (t) => {
  const r = runSync(['tail', '--since', '100000000h', '--aggregator', 'ws://127.0.0.1:9', '--token-file', '/dev/null']);
  t.equal(r.code, 3);
  t.match(r.stderr, /^nodewarden: --since must be at most 3650d \(ten years\), got 100000000h\n/);
});
