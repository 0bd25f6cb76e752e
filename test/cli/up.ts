// `nodewarden up` as a process: it says how to reach it, another terminal can tail it and prune
// through it with the token files it wrote, it summarizes the first cycle, and cleans up on Ctrl-C.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { statSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { run, runSync, until } from '../helpers/processes.js';
import { requireRuntime } from '../helpers/runtime.js';

t.test('live: up prints its URL and token files; tail and prune --dry-run work against it', async (t) => {
  if (!requireRuntime(t)) return;
  const up = run(['up', ...['sockets', 'immutable', 'mounts', 'drift', 'pods'].flatMap((c) => ['--set', `collectors.${c}.enabled=false`])]);
  let stderr = '';
  up.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  up.stdout!.resume();
  t.teardown(() => void up.kill('SIGKILL'));
  await until(() => /--node \S+ --dry-run\n/.test(stderr), 30_000, 'up to say how to reach it');
  const url = /aggregator (ws:\/\/127\.0\.0\.1:\d+),/.exec(stderr)?.[1] ?? '';
  const tailCmd = /^ +\S+(?: \S+)? tail(?: --aggregator \S+)? --token-file (\S+)$/m.exec(stderr);
  const pruneCmd = /^ +\S+(?: \S+)? prune(?: --aggregator \S+)? --token-file (\S+) --node (\S+) --dry-run$/m.exec(stderr);
  t.ok(url && tailCmd && pruneCmd, `the commands to run are printed:\n${stderr}`);
  const dir = path.dirname(tailCmd?.[1] ?? '/nonexistent/x');
  t.equal(statSync(dir).mode & 0o777, 0o700, 'token directory is private');
  for (const role of ['agent', 'tail', 'admin']) t.equal(statSync(path.join(dir, role)).mode & 0o777, 0o600, `${role} token file is 0600`);

  const env = { NODEWARDEN_AGGREGATOR: url };
  const tail = runSync(['tail', '--token-file', tailCmd![1]!, '--no-follow'], env);
  t.ok(tail.code !== null && tail.code < 3, `tail reaches it: ${tail.stderr}`);
  const prune = runSync(['prune', '--token-file', pruneCmd![1]!, '--node', pruneCmd![2]!, '--dry-run', '--json'], env);
  t.equal(prune.code, 0, `prune --dry-run through up: ${prune.stdout}${prune.stderr}`);
  t.match(prune.stdout, /"type":"result"/);
  t.notMatch(prune.stdout, /refused/, 'up enables prune for its own admin');
  const page = /^In a browser: (http:\/\/127\.0\.0\.1:\d+\/) \(log in with the token in ([^\s,]+)/m.exec(stderr);
  t.equal(page?.[2], tailCmd?.[1], 'it names the page and the tail token to log in with');
  const html = await fetch(page?.[1] ?? 'http://127.0.0.1:1/').then((r) => r.text(), () => '');
  t.match(html, /<title>nodewarden<\/title>/, 'and the page is there');

  await until(() => /first cycle done in/.test(stderr), 60_000, 'the summary');
  t.match(stderr, /first cycle done in [\d.]+s: disk \w+, sockstat \w+, [^\n]*\n/);
  t.match(stderr, /first cycle done in [^\n]*, runtime \w+/, 'the runtime collector is among them');
  t.match(stderr, /this node is healthy|finding|could not look/);
  up.kill('SIGINT');
  const code = await new Promise((resolve) => up.once('exit', resolve));
  t.equal(code, 0, 'Ctrl-C stops it cleanly');
  t.notOk(existsSync(dir), 'and removes the token files');
});

t.test('live: with port 9743 taken, up picks another and the printed commands carry --aggregator', async (t) => {
  if (!requireRuntime(t)) return;
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.once('error', () => resolve()).listen(9743, '127.0.0.1', () => resolve()));
  t.teardown(() => void blocker.close());
  const up = run(['up', ...['sockets', 'immutable', 'mounts', 'drift', 'runtime'].flatMap((c) => ['--set', `collectors.${c}.enabled=false`])]);
  let stderr = '';
  up.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  up.stdout!.resume();
  t.teardown(() => void up.kill('SIGKILL'));
  await until(() => /--dry-run\n/.test(stderr), 30_000, 'up to say how to reach it');
  const url = /aggregator (ws:\/\/127\.0\.0\.1:\d+),/.exec(stderr)?.[1];
  t.not(url, 'ws://127.0.0.1:9743', 'another port');
  t.match(stderr, new RegExp(`tail --aggregator ${url} --token-file`), 'tail is told where');
  t.match(stderr, new RegExp(`prune --aggregator ${url} --token-file`), 'and so is prune');
  up.kill('SIGINT');
  t.equal(await new Promise((resolve) => up.once('exit', resolve)), 0);
});

t.test('up --host-root on a fixture tree: collectors that could not look are named, and the node is not called healthy', async (t) => {
  const up = run(['up', '--host-root', 'test/fixtures/host/debian12-vm']);
  let stderr = '';
  up.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  up.stdout!.resume();
  t.teardown(() => void up.kill('SIGKILL'));
  await until(() => /not known to be healthy|this node is healthy|finding/.test(stderr.split('first cycle done')[1] ?? ''), 60_000, 'the summary');
  t.match(stderr, /mounts no-data \([^)]*hostPID/, 'mounts says it needs hostPID');
  t.match(stderr, /could not look \([^)]*mounts[^)]*\): not known to be healthy/);
  t.notMatch(stderr, /this node is healthy/);
  up.kill('SIGINT');
  await new Promise((resolve) => up.once('exit', resolve));
});
