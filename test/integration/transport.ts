// The transport under stress, with real processes: wss:// with a certificate, a frozen aggregator that
// an agent must notice within two heartbeats, and one prune per node at a time.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { pino } from 'pino';
import { Aggregator } from '../../aggregator/server.js';
import { requireLive } from '../helpers/live.js';
import { BIN, QUIET_COLLECTORS, TOKENS, freePort, run, startAggregator, until, waitForNode, writeTokens } from '../helpers/processes.js';

const quiet = [...QUIET_COLLECTORS, 'collectors.disk.enabled=false'].flatMap((s) => ['--set', s]);

/** GET over https trusting `ca`; resolves with status and body, or undefined when it cannot connect. */
function httpsGet(url: string, ca: Buffer, token?: string): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => resolve(undefined));
  });
}

t.test('live: wss:// with --tls-cert and --tls-key; agents and tails trust it through NODE_EXTRA_CA_CERTS', async (t) => {
  if (!requireLive(t, { commands: ['openssl'] })) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-tls-'));
  const procs: ChildProcess[] = [];
  t.teardown(() => {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const ca = readFileSync(cert);
  const tokens = writeTokens(dir);
  const port = await freePort();
  procs.push(run(['aggregator', '--listen', `127.0.0.1:${port}`, '--tokens-dir', tokens, '--tls-cert', cert, '--tls-key', key, '--log-level', 'warn']));
  await until(async () => (await httpsGet(`https://127.0.0.1:${port}/healthz`, ca))?.status === 200, 10_000, 'the TLS aggregator');
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: cert };
  procs.push(spawn(process.execPath, [BIN, 'agent', '--aggregator', `wss://127.0.0.1:${port}`, '--token-file', path.join(tokens, 'agent'), '--listen', '127.0.0.1:0', '--node', 'tls-node', ...quiet], { env, stdio: 'ignore' }));
  await until(async () => {
    const r = await httpsGet(`https://127.0.0.1:${port}/api/nodes`, ca, TOKENS.tail);
    return Boolean(r && r.body.includes('"node":"tls-node","connected":true'));
  }, 15_000, 'the agent to connect over wss://');
  t.pass('the agent connected over wss://');
  const tail = spawnSync(process.execPath, [BIN, 'tail', '--aggregator', `wss://127.0.0.1:${port}`, '--token-file', path.join(tokens, 'tail'), '--no-follow', '--json'], { env, encoding: 'utf8', timeout: 20_000 });
  t.equal(tail.status, 0, `tail over wss:// ${tail.stderr}`);
  const noCa = spawnSync(process.execPath, [BIN, 'tail', '--aggregator', `wss://127.0.0.1:${port}`, '--token-file', path.join(tokens, 'tail'), '--no-follow'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  t.equal(noCa.status, 3, 'without the CA the tail refuses the certificate and gives up');
  t.match(noCa.stderr, /cannot reach the aggregator/);
});

t.test('live: an agent notices a frozen aggregator within two heartbeats and reconnects when it thaws', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-hb-'));
  const tokens = writeTokens(dir);
  const port = await freePort();
  const procs: ChildProcess[] = [];
  t.teardown(() => {
    for (const p of procs) {
      p.kill('SIGCONT');
      p.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const agg = await startAggregator(port, tokens);
  procs.push(agg);
  const agent = run(['agent', '--aggregator', `ws://127.0.0.1:${port}`, '--token-file', path.join(tokens, 'agent'), '--listen', '127.0.0.1:0', '--node', 'hb-node', '--set', 'agent.heartbeat=500ms', ...quiet]);
  procs.push(agent);
  let logs = '';
  agent.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  await waitForNode(port, 'hb-node');
  agg.kill('SIGSTOP');
  const frozenAt = Date.now();
  // Noticed by the heartbeat (two missed, 1 s here), not by TCP (minutes): the bound is generous for a loaded machine.
  await until(() => /no pong from the aggregator for two heartbeats/.test(logs), 30_000, 'the agent to notice');
  const noticed = Date.now() - frozenAt;
  t.ok(noticed < 15_000, `noticed ${noticed} ms after the freeze (heartbeat 500 ms; TCP alone would take minutes)`);
  agg.kill('SIGCONT');
  await until(() => (logs.match(/connected to the aggregator/g) ?? []).length >= 2, 20_000, 'the agent to reconnect');
  await waitForNode(port, 'hb-node');
  t.pass('reconnected after the thaw');
});

t.test('one prune per node at a time: a second one is refused with 409 while the first runs', async (t) => {
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: [{ role: 'agent', name: 'a', secret: TOKENS.agent }, { role: 'admin', name: 'alice', secret: TOKENS.admin }], version: 'test', log: pino({ level: 'silent' }) });
  const { url, port } = await agg.start();
  t.teardown(() => agg.stop());
  // A real agent connection that takes the command and does not answer yet.
  const ws = new WebSocket(`${url}/api/agent`, { headers: { authorization: `Bearer ${TOKENS.agent}` } });
  const commands: unknown[] = [];
  await new Promise<void>((resolve) => {
    ws.on('open', () => ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'busy', agentVersion: 'x', collectors: [] })));
    ws.on('message', (raw: Buffer) => {
      const m = JSON.parse(raw.toString()) as { type: string; id?: string };
      if (m.type === 'welcome') resolve();
      if (m.type === 'command') commands.push(m);
    });
  });
  const post = () => fetch(`http://127.0.0.1:${port}/api/nodes/busy/prune`, { method: 'POST', headers: { authorization: `Bearer ${TOKENS.admin}` }, body: JSON.stringify({ untilMs: 1000, dryRun: true }) });
  const first = await post();
  t.equal(first.status, 200);
  const reader = first.body!.getReader();
  const accepted = JSON.parse(new TextDecoder().decode((await reader.read()).value).trim()) as { type: string; commandId: string };
  t.equal(accepted.type, 'accepted');
  await until(() => commands.length === 1, 30_000, 'the command to reach the agent');
  const second = await post();
  t.equal(second.status, 409);
  t.match(((await second.json()) as { error: string }).error, /a prune is already running on busy/);
  ws.send(JSON.stringify({ v: 1, type: 'result', commandId: accepted.commandId, result: { ok: true, dryRun: true, runtime: 'docker', removed: 0, bytes: 0, errors: [] } }));
  const rest = new TextDecoder().decode((await reader.read()).value);
  t.match(rest, /"type":"result"/);
  t.equal((await post()).status, 200, 'free again once the first finished');
  ws.close();
});
