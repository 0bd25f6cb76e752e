// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dockerTry, makeLabelledImage, requireRuntime } from '../helpers/runtime.js';
import http from 'node:http';
import { QUIET_COLLECTORS, TOKENS, freePort, run, runAsync, runSync, startAggregator, waitForNode, writeTokens } from '../helpers/processes.js';
import { runPrune } from '../../cli/prune.js';
import { formatBytes } from '../../collectors/common/text.js';

// Every byte a terminal acts on, except the newline that ends each line.
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

t.test('prune output: durations as given, what was kept and why, every string from the node escaped', async (t) => {
  // The aggregator's streamed answer, as it relays what an agent (here a hostile one) said.
  const lines = [
    { type: 'accepted', commandId: 'c1', node: 'n1', untilMs: 1000, dryRun: false },
    { type: 'progress', image: 'registry.k8s.io/pause:3.9', size: 300_000, state: 'kept', reason: 'sandbox (pause) image', index: 0, total: 1 },
    { type: 'progress', image: 'app:1', size: 5_000_000, state: 'kept', reason: 'used by a container', index: 0, total: 1 },
    { type: 'progress', image: 'evil:1\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07\x1b[2J', size: 1_000_000, state: 'removed', index: 1, total: 1 },
    { type: 'result', ok: true, dryRun: false, runtime: 'docker\u009b2J', removed: 1, bytes: 1_000_000, errors: ['x\n12:00:00 all good'], kept: 2 },
  ];
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.end(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const env = { NODEWARDEN_AGGREGATOR: `http://127.0.0.1:${port}`, NODEWARDEN_TOKEN: TOKENS.admin };
  const human = await runAsync(['prune', '--node', 'n1', '--until', '1s'], env);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /older than 1s on n1/, '--until 1s prints 1s');
  t.notMatch(human.stdout, CONTROL, 'no control character on stdout');
  t.match(human.stdout, /kept 2 image\(s\):\n +IMAGE +SIZE +WHY\n +registry\.k8s\.io\/pause:3\.9 +\S+ +sandbox \(pause\) image\n +app:1 +\S+ +used by a container/, 'what was kept, with why');
  t.match(human.stdout, /error: x\\n12:00:00 all good/, 'a fake line in an error stays on its line');
  const json = await runAsync(['prune', '--node', 'n1', '--json'], env);
  t.notMatch(json.stdout, CONTROL, '--json: no C1 either');
  t.equal(json.stdout.trim().split('\n').length, lines.length);
  t.equal((JSON.parse(json.stdout.trim().split('\n')[4]!) as { runtime: string }).runtime, 'docker\u009b2J', 'the JSON value is unchanged');
});

t.test('prune: a malformed or hostile line from the aggregator is refused with NW_ERR_PROTOCOL, never obeyed', async (t) => {
  let body = '';
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.end(body);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const prune = async (lines: string[], json = false) => {
    body = lines.join('\n');
    let out = '';
    const code = await runPrune({ url: `http://127.0.0.1:${port}`, token: TOKENS.admin, node: 'n1', untilMs: 1000, until: '1s', dryRun: false, json, tty: false, out: (s) => (out += s) });
    return { code, out };
  };
  const accepted = JSON.stringify({ type: 'accepted', commandId: 'c1', node: 'n1', untilMs: 1000, dryRun: false });
  // `ok: "yes"` was truthy: exit 0 and "removed undefined image(s)".
  const fake = await prune([accepted, JSON.stringify({ type: 'result', ok: 'yes', removed: 'all' }), '']);
  t.equal(fake.code, 3, 'a result that is not a result decides nothing: exit 3, not 0');
  t.match(fake.out, /error: invalid result line from the aggregator: ok must be true or false, got string "yes".* \(NW_ERR_PROTOCOL\)\n/);
  t.notMatch(fake.out, /removed/);
  const hostile = await prune([accepted, '{"type":"__proto__"}', '{not json \u001b[2J', JSON.stringify({ type: 'progress', image: { toString: 'x' }, size: 1, state: 'removed', index: 0, total: 1 }), JSON.stringify({ type: 'result', ok: true, dryRun: false, runtime: 'docker', removed: 0, bytes: 0, errors: [] }), '']);
  t.equal(hostile.code, 0, 'the valid result still decides');
  t.match(hostile.out, /unknown line type "__proto__" from the aggregator \(NW_ERR_PROTOCOL\)/);
  t.match(hostile.out, /unreadable line from the aggregator: \{not json \\x1b\[2J \(NW_ERR_PROTOCOL\)/, 'quoted, escaped');
  t.match(hostile.out, /invalid progress line from the aggregator: image must be a string, got an object/);
  t.notMatch(hostile.out, CONTROL, 'no control character on stdout');
  const json = await prune([accepted, '{"type":"result","ok":"yes"}', ''], true);
  const rows = json.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(rows.map((r) => [r['type'], r['code']]), [['accepted', undefined], ['error', 'NW_ERR_PROTOCOL']], '--json: the refusal is a JSON error line too');
  const cut = await prune([accepted, '{"type":"result","ok":true']);
  t.match(cut.out, /the stream from the aggregator ended inside a line \(NW_ERR_PROTOCOL\)/);
  t.equal(cut.code, 3);
});

t.test('an aggregator that goes away mid-prune: a coded error and exit 3, not a hang or a crash', async (t) => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ type: 'accepted', commandId: 'c1', node: 'n1', untilMs: 1000, dryRun: false })}\n`);
    setTimeout(() => res.socket?.destroy(), 100);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const cut = await runAsync(['prune', '--node', 'n1', '--until', '1s'], { NODEWARDEN_AGGREGATOR: `http://127.0.0.1:${port}`, NODEWARDEN_TOKEN: TOKENS.admin });
  t.equal(cut.code, 3, cut.stderr);
  t.match(cut.stdout, /removing unused images older than 1s on n1/, 'what came before the cut is shown');
  t.match(cut.stderr, /^nodewarden: prune on n1: the connection closed before the end of the response$/m);
});

t.test('live: nodewarden prune through the aggregator to the agent; a disabled agent refuses', async (t) => {
  if (!requireRuntime(t)) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-prune-'));
  const tokens = writeTokens(dir);
  const port = await freePort();
  const procs: ChildProcess[] = [];
  t.teardown(() => {
    for (const p of procs) p.kill('SIGKILL');
    dockerTry('rmi', '-f', 'nwprune/cli-old:1');
    rmSync(dir, { recursive: true, force: true });
  });
  procs.push(await startAggregator(port, tokens));
  const agentArgs = (node: string, enabled: boolean) => [
    'agent', '--aggregator', `ws://127.0.0.1:${port}`, '--token-file', path.join(tokens, 'agent'), '--listen', '127.0.0.1:0', '--node', node,
    ...[...QUIET_COLLECTORS, 'collectors.disk.enabled=false', `prune.enabled=${enabled}`, 'prune.label=nodewarden-test=prune', 'prune.containerdNamespaces=[]'].flatMap((s) => ['--set', s]),
  ];
  procs.push(run(agentArgs('prune-on', true)), run(agentArgs('prune-off', false)));
  await waitForNode(port, 'prune-on');
  await waitForNode(port, 'prune-off');
  dockerTry('rmi', '-f', 'nwprune/cli-old:1');
  makeLabelledImage('nwprune/cli-old:1');
  await new Promise((r) => setTimeout(r, 1500));

  const env = { NODEWARDEN_AGGREGATOR: `ws://127.0.0.1:${port}`, NODEWARDEN_TOKEN: TOKENS.admin };
  const dry = runSync(['prune', '--node', 'prune-on', '--until', '1s', '--dry-run', '--json'], env);
  t.equal(dry.code, 0, dry.stderr);
  const lines = dry.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(lines.map((l) => l['type']), ['accepted', ...lines.slice(1, -1).map(() => 'progress'), 'result']);
  t.ok(lines.some((l) => l['type'] === 'progress' && l['image'] === 'nwprune/cli-old:1' && l['state'] === 'would-remove' && Number(l['size']) > 0), 'dry run names the image with its size');
  t.equal(dockerTry('image', 'inspect', 'nwprune/cli-old:1').code, 0, 'and removes nothing');
  const size = Number(lines.find((l) => l['image'] === 'nwprune/cli-old:1')?.['size']);
  const dryHuman = runSync(['prune', '--node', 'prune-on', '--until', '1s', '--dry-run'], env);
  t.match(dryHuman.stdout, new RegExp(`would remove\\s+nwprune/cli-old:1\\s+${formatBytes(size)}`), 'each removal with the bytes it frees');
  t.match(dryHuman.stdout, new RegExp(`the removals would free ${formatBytes(size)} \\(each image's size is what removing it frees`), 'and the total');

  const human = runSync(['prune', '--node', 'prune-on', '--until', '1s'], env);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /removed\s+nwprune\/cli-old:1/);
  t.match(human.stdout, /removed 1 image\(s\), .* reclaimed/);
  t.match(human.stdout, /older than 1s on prune-on/, 'the duration as given');
  t.not(dockerTry('image', 'inspect', 'nwprune/cli-old:1').code, 0, 'gone');

  const refused = runSync(['prune', '--node', 'prune-off', '--until', '1s'], env);
  t.equal(refused.code, 3);
  t.match(refused.stdout, /refused: prune is disabled on prune-off/);
  const tailToken = runSync(['prune', '--node', 'prune-on'], { ...env, NODEWARDEN_TOKEN: TOKENS.tail });
  t.equal(tailToken.code, 3);
  t.match(tailToken.stderr, /403: an admin bearer token is required/);
  const nowhere = runSync(['prune', '--node', 'no-such-node'], env);
  t.match(nowhere.stderr, /404: no agent is connected for node no-such-node/);
});
