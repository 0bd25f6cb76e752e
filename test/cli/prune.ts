import t from 'tap';
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dockerTry, makeLabelledImage, requireRuntime } from '../helpers/runtime.js';
import { QUIET_COLLECTORS, TOKENS, freePort, run, runSync, startAggregator, waitForNode, writeTokens } from '../helpers/processes.js';

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

  const human = runSync(['prune', '--node', 'prune-on', '--until', '1s'], env);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /removed\s+nwprune\/cli-old:1/);
  t.match(human.stdout, /removed 1 image\(s\), .* reclaimed/);
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
