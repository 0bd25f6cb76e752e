// `nodewarden tail` as a real process against a loopback aggregator that speaks the real protocol (and
// sends hostile text): what reaches the terminal, what it says when it cannot connect or loses the link.
import t from 'tap';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { formatStatus, StatusLine } from '../../cli/status.js';
import { unreachableHint } from '../../cli/tail.js';
import { painter } from '../../cli/format.js';
import { finding } from '../helpers/findings.js';
import { BIN, freePort, runAsync, until } from '../helpers/processes.js';

const TOKEN = 'tail-token-0123456789abcdef';
// Every byte a terminal acts on, except the newline that ends each line.
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

const HOSTILE = [
  finding('evil', 'disk.usage', '/\x1b]0;all good\x07\u009b2J', 'critical', { message: 'clear\x1b[2J\x1b[H clipboard\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07 done\n12:00:00  node-1  RESOLVED  disk.usage  /  all good' }),
  finding('n2', 'sockstat.orphans', 'tcp', 'warning', { message: 'csi \u009b31m red and a title \u009d0;pwned\u009c' }),
];

async function fakeAggregator(port: number, findings: unknown[] = HOSTILE) {
  const wss = new WebSocketServer({ noServer: true });
  const sockets = new Set<WebSocket>();
  const server = http.createServer((req, res) => {
    if (req.url === '/api/nodes') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ node: 'evil', connected: true }, { node: 'n2', connected: false }]));
    res.writeHead(404).end();
  });
  server.on('upgrade', (req, socket, head) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return void socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n');
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('message', () => ws.send(JSON.stringify({ v: 1, type: 'active', findings })));
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return {
    dropAll: () => {
      for (const ws of sockets) ws.terminate();
      sockets.clear();
    },
    close: () => {
      for (const ws of sockets) ws.terminate();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

t.test('hostile text from the aggregator reaches the terminal escaped: no screen clear, fake line, title or clipboard write', async (t) => {
  const port = await freePort();
  const agg = await fakeAggregator(port);
  t.teardown(() => agg.close());
  const env = { NODEWARDEN_AGGREGATOR: `ws://127.0.0.1:${port}`, NODEWARDEN_TOKEN: TOKEN };
  const human = await runAsync(['tail', '--no-follow'], env);
  t.equal(human.code, 2, human.stderr);
  t.notMatch(human.stdout, CONTROL, 'no control character on stdout');
  t.match(human.stdout, /clear\\x1b\[2J/, 'the escape sequence is shown as text');
  t.match(human.stdout, /\\x9b2J/, 'U+009B shown, not obeyed');
  t.equal(human.stdout.split('\n').filter((l) => /RESOLVED/.test(l)).length, 1, 'the fake RESOLVED line stays inside the real one');
  t.match(human.stdout, /2 active findings on 2 nodes: 1 critical, 1 warning, 0 info/, 'a summary when the stream starts');
  const json = await runAsync(['tail', '--no-follow', '--json'], env);
  t.equal(json.code, 2);
  t.notMatch(json.stdout, CONTROL, '--json: no C1 either');
  const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { finding: { message: string } });
  t.equal(lines[1]!.finding.message, HOSTILE[1]!.message, 'and the JSON still carries the exact text');
});

t.test('never connected: "cannot reach ... start one"; after a link existed: "lost ... reconnecting"', async (t) => {
  const port = await freePort();
  const env = { NODEWARDEN_AGGREGATOR: `ws://127.0.0.1:${port}`, NODEWARDEN_TOKEN: TOKEN };
  const never = await runAsync(['tail', '--no-follow'], env);
  t.equal(never.code, 3);
  t.equal(never.stderr.trim(), `nodewarden: cannot reach the aggregator at ws://127.0.0.1:${port} (connection refused): start one with \`nodewarden aggregator\` or run \`nodewarden up\``, 'said once, with what to do');
  t.notMatch(never.stderr, /lost/);

  // Following, started before any aggregator exists: the same hint, then it connects when one starts.
  const tail = spawn(process.execPath, [BIN, 'tail'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  tail.stdout.on('data', (d: Buffer) => (out += d.toString()));
  tail.stderr.on('data', (d: Buffer) => (err += d.toString()));
  t.teardown(() => tail.kill('SIGKILL'));
  await until(() => /cannot reach the aggregator/.test(err), 10_000, 'the hint');
  const agg = await fakeAggregator(port);
  t.teardown(() => agg.close());
  await until(() => /2 active findings/.test(out), 20_000, 'the tail to connect once the aggregator is there');
  // stderr is a pipe of its own: what it says is not ordered with stdout, so wait for it too.
  await until(() => /connected to ws:/.test(err), 10_000, 'the tail to say it connected').catch(() => undefined);
  t.match(err, /connected to ws:\/\/127\.0\.0\.1/, 'and says it connected');
  await until(() => /nodes connected/.test(out), 10_000, 'the status line');
  t.match(out, /\d\d:\d\d:\d\d {2}1 critical · 1 warning · 0 info {2}· {2}1 of 2 nodes connected\n/, 'the status line, in a pipe a whole line');
  agg.dropAll();
  await until(() => /lost the aggregator/.test(err), 10_000, 'the tail to notice');
  t.match(err, /lost the aggregator at ws:\/\/127\.0\.0\.1:\d+ \(closed 1006\); reconnecting/);
  await until(() => /reconnected/.test(err), 20_000, 'the tail to reconnect');
  t.equal((err.match(/cannot reach/g) ?? []).length, 1, '"cannot reach" only before the first link');
});

t.test('the status line: in place on a terminal, at most every few minutes in a pipe', async (t) => {
  const p = painter(false);
  const text = formatStatus({ critical: 2, warning: 1, info: 0, nodes: { connected: 4, total: 5 } }, p, new Date('2026-01-01T12:00:05Z'));
  t.equal(text, '12:00:05  2 critical · 1 warning · 0 info  ·  4 of 5 nodes connected');
  t.match(formatStatus({ critical: 0, warning: 0, info: 0 }, p, new Date()), /all quiet/, 'a healthy cluster says so');
  let tty = '';
  const onTty = new StatusLine({ tty: true, write: (s) => (tty += s) });
  onTty.show('status 1');
  onTty.line('a finding');
  onTty.show('status 2');
  t.equal(tty, '\r\x1b[2Kstatus 1\r\x1b[2Ka finding\nstatus 1\r\x1b[2Kstatus 2', 'rewritten in place, lines scroll above it');
  let pipe = '';
  let now = 0;
  const inPipe = new StatusLine({ tty: false, write: (s) => (pipe += s), pipeEveryMs: 300_000, now: () => now });
  inPipe.show('s1');
  now = 60_000;
  inPipe.show('s2');
  now = 300_000;
  inPipe.show('s3');
  t.equal(pipe, 's1\ns3\n', 'in a pipe: whole lines, at most one per five minutes');
});

t.test('what a tail that never got a stream says depends on why', async (t) => {
  const url = 'ws://agg:9743';
  t.match(unreachableHint(url, { kind: 'refused', text: 'connection refused' }), /start one with `nodewarden aggregator` or run `nodewarden up`/);
  t.match(unreachableHint(url, { kind: 'tls', text: 'TLS: self-signed certificate' }), /NODE_EXTRA_CA_CERTS/);
  t.match(unreachableHint(url, { kind: 'closed', text: 'closed 1009 Max payload size exceeded' }), /accepted the connection, then the stream ended \(closed 1009 Max payload size exceeded\)/, 'not "start one" when one is there');
  t.notMatch(unreachableHint(url, { kind: 'closed', text: 'closed 1009' }), /start one/);
});

t.test('an aggregator that answers nonsense: tail --no-follow says so and exits 3 instead of waiting forever', async (t) => {
  const port = await freePort();
  const agg = await fakeAggregator(port, [{ ...finding('bad node name!', 'disk.usage', '/', 'critical') }]);
  t.teardown(() => agg.close());
  const r = await runAsync(['tail', '--no-follow'], { NODEWARDEN_AGGREGATOR: `ws://127.0.0.1:${port}`, NODEWARDEN_TOKEN: TOKEN });
  t.equal(r.code, 3, 'unknown, not OK and not a hang');
  t.match(r.stderr, /invalid message from the aggregator/);
});

t.test('tail rows name the pod and container, not the 64-hex id (the id stays in --json and the evidence)', async (t) => {
  const { formatTailLine } = await import('../../cli/tail.js');
  const id = 'f'.repeat(64);
  const f = { ...finding('n1', 'runtime.drift', id, 'critical', { message: 'docker and containerd disagree' }), workload: { containerId: id, containerName: 'api', pod: 'api-7', namespace: 'shop' } };
  const line = formatTailLine('firing', f, f.lastSeen, painter(false), 200);
  t.notMatch(line, /f{64}/, 'no raw id');
  t.match(line, /shop\/api-7\/api/, 'namespace/pod/container');
});

t.test('TIME is when a finding fired: it does not move with lastSeen, and --since prints an active finding once', async (t) => {
  const { Aggregator } = await import('../../aggregator/server.js');
  const { pino } = await import('pino');
  const WebSocketClient = (await import('ws')).default;
  const agg = new Aggregator({ host: '127.0.0.1', port: 0, tokens: [{ role: 'agent', name: 'a', secret: 'agent-token-0123456789' }, { role: 'tail', name: 'ops', secret: TOKEN }], version: 'test', log: pino({ level: 'silent' }), silentAfterMs: 60_000, heartbeatMs: 60_000 });
  const { url } = await agg.start();
  t.teardown(() => agg.stop());
  const ws = new WebSocketClient(`${url}/api/agent`, { headers: { authorization: 'Bearer agent-token-0123456789' } });
  await new Promise((r) => ws.once('open', r));
  ws.send(JSON.stringify({ v: 1, type: 'hello', protocol: 1, node: 'n1', agentVersion: 'test', collectors: ['sockstat'] }));
  const fired = '2026-01-02T03:04:05.000Z';
  const f = finding('n1', 'sockstat.timewait', 'tcp', 'warning', { message: 'TIME_WAIT 100 of 131,072', firstSeen: fired, lastSeen: '2026-01-02T05:00:00.000Z' });
  ws.send(JSON.stringify({ v: 1, type: 'delta', transitions: [{ type: 'firing', finding: f }] }));
  await until(() => agg.fleet.active().length === 1, 10_000, 'the finding');
  const env = { NODEWARDEN_AGGREGATOR: url, NODEWARDEN_TOKEN: TOKEN, TZ: 'UTC' };
  const first = await runAsync(['tail', '--no-follow', '--json'], env);
  ws.send(JSON.stringify({ v: 1, type: 'refresh', findings: [{ ...f, message: 'TIME_WAIT 101 of 131,072', lastSeen: '2026-01-02T05:00:10.000Z' }] }));
  await until(() => agg.fleet.active()[0]?.message === 'TIME_WAIT 101 of 131,072', 10_000, 'the refresh');
  const second = await runAsync(['tail', '--no-follow', '--json'], env);
  const at = (out: string) => out.trim().split('\n').map((l) => (JSON.parse(l) as { at: string }).at);
  t.same(at(first.stdout), [fired], 'the active line carries the time it fired');
  t.same(at(second.stdout), [fired], 'and still does after a refresh moved lastSeen');
  const since = await runAsync(['tail', '--no-follow', '--since', '1h', '--json'], env);
  const lines = since.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; finding: { id: string } });
  t.equal(lines.filter((l) => l.finding.id === f.id).length, 1, `--since prints it once (${lines.map((l) => l.event).join(', ')})`);
  ws.close();
});
