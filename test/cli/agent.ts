// `nodewarden agent` as a process: it starts, answers /healthz, stops on SIGTERM with exit 0; a bad
// config or a bad --aggregator is one line on stderr and exit 3, before anything starts.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, QUIET_COLLECTORS, run, runSync, until } from '../helpers/processes.js';

const quiet = [...QUIET_COLLECTORS, 'collectors.disk.enabled=false'].flatMap((s) => ['--set', s]);

t.test('starts, answers /healthz and /metrics, stops on SIGTERM with exit 0', async (t) => {
  const port = await freePort();
  const agent = run(['agent', '--listen', `127.0.0.1:${port}`, '--node', 'cli-agent-node', ...quiet]);
  let stdout = '';
  let stderr = '';
  agent.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  agent.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => agent.on('exit', (code, signal) => r({ code, signal })));
  t.teardown(() => {
    if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
  });
  await until(async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
    } catch {
      return false;
    }
  }, 20_000, 'the agent to answer /healthz');
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  t.match(metrics, /^# TYPE nodewarden_\w+ (gauge|counter)$/m, '/metrics speaks the Prometheus text format');
  // The log (pino's JSON lines) is on stderr; stdout stays empty.
  t.match(stderr, /"node":"cli-agent-node".*"msg":"agent started"/);
  agent.kill('SIGTERM');
  t.same(await exited, { code: 0, signal: null }, 'SIGTERM: exit 0');
  t.match(stderr, /"signal":"SIGTERM".*"msg":"agent stopping"/);
  t.equal(stdout, '');
  await t.rejects(fetch(`http://127.0.0.1:${port}/healthz`), 'the port is closed after it stopped');
});

t.test('a bad config: NW_ERR_CONFIG as one line with its problems, exit 3, nothing started', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-cli-agent-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const unknown = runSync(['agent', '--set', 'nonsense.key=1']);
  t.same([unknown.code, unknown.stdout], [3, '']);
  t.equal(unknown.stderr, 'nodewarden: invalid config: 1 problem\n  nonsense: unknown key (known keys: node, hostRoot, runtime, agent, prune, kubernetes, logLevel, collectors)\n');
  const duration = runSync(['agent', '--set', 'collectors.disk.interval=banana']);
  t.same([duration.code, duration.stdout], [3, '']);
  t.match(duration.stderr, /^nodewarden: invalid config: 1 problem\n  collectors\.disk\.interval: must be a duration/);
  writeFileSync(path.join(dir, 'bad.yaml'), 'agent:\n  listen: [1,2\n');
  const yaml = runSync(['agent', '--config', path.join(dir, 'bad.yaml')]);
  t.equal(yaml.code, 3);
  t.match(yaml.stderr, new RegExp(`^nodewarden: config file ${dir}/bad\\.yaml:\\d+:\\d+ is not valid YAML or JSON`));
  t.notMatch(yaml.stderr, /\n\s+at /, 'no stack');
});

t.test('--aggregator: a ws:// URL and a readable token file, or exit 3 at once', async (t) => {
  const http = runSync(['agent', '--aggregator', 'http://127.0.0.1:1']);
  t.same([http.code, http.stdout], [3, '']);
  t.equal(http.stderr, 'nodewarden: --aggregator must be a ws:// or wss:// URL, got http://127.0.0.1:1\n');
  const noToken = runSync(['agent', '--aggregator', 'ws://127.0.0.1:1'], { NODEWARDEN_TOKEN_FILE: '' });
  t.equal(noToken.code, 3);
  t.match(noToken.stderr, /^nodewarden: --aggregator needs --token-file \(or NODEWARDEN_TOKEN_FILE\) with the agent token\n/);
  const absent = runSync(['agent', '--aggregator', 'ws://127.0.0.1:1', '--token-file', '/nonexistent-nw-token']);
  t.equal(absent.code, 3, 'a missing token file is reported now, not retried forever');
  t.match(absent.stderr, /^nodewarden: .*\/nonexistent-nw-token/);
  t.equal(absent.stderr.trim().split('\n').length, 1, 'one line');
});
