import t from 'tap';
import WebSocket from 'ws';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TOKENS, freePort, runAsync, startAggregator, until, writeTokens } from '../helpers/processes.js';

t.test('nodewarden forget NODE: an admin removes a node the aggregator still reports silent', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-forget-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokens = writeTokens(dir);
  const port = await freePort();
  const agg = await startAggregator(port, tokens, ['--silent-after', '100ms']);
  t.teardown(() => void agg.kill('SIGKILL'));
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/agent`, { headers: { authorization: `Bearer ${TOKENS.agent}` } });
  await new Promise((r) => ws.once('open', r));
  const welcome = new Promise((r) => ws.once('message', r));
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'decommissioned-7', agentVersion: 'x', collectors: [] }));
  await welcome;
  ws.close();
  const nodes = async () => ((await (await fetch(`http://127.0.0.1:${port}/api/nodes`, { headers: { authorization: `Bearer ${TOKENS.tail}` } })).json()) as { node: string; silent: boolean }[]).map((n) => `${n.node} ${n.silent}`);
  // Silent 100 ms after the aggregator sees the close: wait for it rather than for a fixed time.
  await until(async () => (await nodes()).join() === 'decommissioned-7 true', 10_000, 'the node to turn silent').catch(() => undefined);
  t.same(await nodes(), ['decommissioned-7 true'], 'silent, as it will be forever without forget');
  const env = { NODEWARDEN_AGGREGATOR: `ws://127.0.0.1:${port}` };
  const denied = await runAsync(['forget', 'decommissioned-7'], { ...env, NODEWARDEN_TOKEN: TOKENS.tail });
  t.equal(denied.code, 3);
  t.match(denied.stderr, /forget needs an admin token/);
  const ok = await runAsync(['forget', 'decommissioned-7'], { ...env, NODEWARDEN_TOKEN: TOKENS.admin });
  t.equal(ok.code, 0, ok.stderr);
  t.equal(ok.stdout, 'forgot node decommissioned-7\n');
  t.same(await nodes(), []);
  const again = await runAsync(['forget', 'decommissioned-7'], { ...env, NODEWARDEN_TOKEN: TOKENS.admin });
  t.equal(again.code, 1);
  t.match(again.stdout, /not forgotten: no node decommissioned-7 is known/);
});
