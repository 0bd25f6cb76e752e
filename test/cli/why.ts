// `nodewarden why POD` as a process: through an aggregator on loopback (its /api/findings), and --local
// against the local API server for what needs no runtime (a pod that is not stuck, not found, on
// another node). The stuck-pod diagnosis on this node is test/integration/pod-stuck.ts.
import t from 'tap';
import type { Test } from 'tap';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderWhy } from '../../cli/why.js';
import { painter } from '../../cli/format.js';
import { finding } from '../helpers/findings.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { freePort, runAsync, runSync } from '../helpers/processes.js';

const TOKEN = 'tail-token-0123456789';
const walk = [
  { cause: 'immutable', checked: true, found: true, summary: "'/var/lib/docker/overlay2/x/diff/f' is immutable", remedy: 'chattr -i /var/lib/docker/overlay2/x/diff/f' },
  { cause: 'mounts', checked: true, found: false, summary: 'no volume held', remedy: null },
  { cause: 'drift', checked: false, found: false, summary: 'drift is off', remedy: null },
];
const stuck = finding('node-a', 'pod.stuck', 'shop/web-0', 'critical', { message: 'shop/web-0 is Terminating 5m past its grace period', remedy: 'chattr -i /var/lib/docker/overlay2/x/diff/f', evidence: { walk } });

t.test('renderWhy: the finding, the next step, then the walk in order: found, ruled out, not known', async (t) => {
  const text = renderWhy('shop/web-0', stuck, undefined, painter(false));
  t.equal(
    text,
    [
      'shop/web-0  STUCK  reported by node node-a',
      'shop/web-0 is Terminating 5m past its grace period',
      'next: chattr -i /var/lib/docker/overlay2/x/diff/f',
      '',
      "What nodewarden checked, in the runbooks' order:",
      "  1. immutable   FOUND      '/var/lib/docker/overlay2/x/diff/f' is immutable",
      '  2. mounts      ruled out  no volume held',
      '  3. drift       not known  drift is off',
      '',
    ].join('\n'),
  );
  t.equal(renderWhy('shop/calm', undefined, 'Phase Running.', painter(false)), 'shop/calm: not stuck. Phase Running.\n');
});

/** An aggregator's /api/findings on loopback, as a tail token sees it. */
/** A node whose agent watches pods, as GET /api/nodes lists it. */
const watching = (node: string) => ({ node, connected: true, collectors: ['pods'], collectorStatus: [{ name: 'pods', status: 'ok', durationMs: 12 }], activeFindings: 0, silent: false });

/** The aggregator's two read routes, /api/findings and /api/nodes, answering what they are given. */
async function aggregator(t: Test, findings: unknown[], nodes: unknown = [watching('node-a'), watching('node-b')]) {
  const seen: { url: string; authorization: string }[] = [];
  const srv = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', authorization: String(req.headers.authorization) });
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return res.writeHead(401, { 'content-type': 'text/plain' }).end('bad token');
    if (req.url === '/api/nodes') return res.writeHead(200, { 'content-type': 'application/json' }).end(typeof nodes === 'string' ? nodes : JSON.stringify(nodes));
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(findings));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return { seen, url: `ws://127.0.0.1:${(srv.address() as { port: number }).port}` };
}

t.test('through the aggregator: stuck exits 2 with the diagnosis, not stuck 0, resolved is not stuck', async (t) => {
  const agg = await aggregator(t, [stuck, finding('node-b', 'pod.stuck', 'shop/gone-0', 'critical', { state: 'resolved' })]);
  const env = { NODEWARDEN_TOKEN: TOKEN };
  const r = await runAsync(['why', 'web-0', '-n', 'shop', '--aggregator', agg.url], env);
  t.equal(r.code, 2, `stuck: 2 (${r.stderr})`);
  t.match(r.stdout, /^shop\/web-0 {2}STUCK {2}reported by node node-a\n/);
  t.match(r.stdout, /1\. immutable {3}FOUND/);
  t.same(agg.seen[0], { url: '/api/findings?check=pod.stuck', authorization: `Bearer ${TOKEN}` }, 'asks for pod.stuck findings with the token, over http');
  const json = await runAsync(['why', 'web-0', '-n', 'shop', '--aggregator', agg.url, '--json', '--node', 'node-a'], env);
  t.equal(json.code, 2);
  t.match(JSON.parse(json.stdout), { pod: 'shop/web-0', stuck: true, source: 'aggregator', finding: { id: stuck.id, node: 'node-a' } });
  t.equal(agg.seen.at(-1)?.url, '/api/findings?check=pod.stuck&node=node-a', '--node narrows the question');
  const calm = await runAsync(['why', 'web-1', '-n', 'shop', '--aggregator', agg.url], env);
  t.same([calm.code, calm.stdout], [0, 'shop/web-1: not stuck. No agent reports it stuck (no pod.stuck finding at the aggregator).\n']);
  const resolved = await runAsync(['why', 'gone-0', '-n', 'shop', '--aggregator', agg.url, '--json'], env);
  t.equal(resolved.code, 0, 'a resolved finding is not stuck');
  t.same(JSON.parse(resolved.stdout), { pod: 'shop/gone-0', stuck: false, source: 'aggregator', note: 'No agent reports it stuck (no pod.stuck finding at the aggregator).' });
  const other = await runAsync(['why', 'web-0', '--aggregator', agg.url], env);
  t.equal(other.code, 0, 'the namespace is part of the pod (default is "default")');
});

t.test('through the aggregator: a pod close to its local-storage limits is named with what grows (exit 1); an evicted one with what grew before', async (t) => {
  const env = { NODEWARDEN_TOKEN: TOKEN };
  const near = finding('node-a', 'pod.ephemeral', 'data/ingest-3', 'warning', { message: "Pod data/ingest-3 uses 17M of emptyDir cache's 20M sizeLimit (85%), growing 18M/min (the limit in about 1 min): kubelet evicts the pod when it passes the limit.", remedy: 'kubectl -n data describe pod ingest-3; du -sh /x' });
  const before = finding('node-b', 'pod.ephemeral', 'data/ingest-9', 'critical', { state: 'resolved', message: "Pod data/ingest-9 uses 1.9G of container app's 2.0G ephemeral-storage limit (95%) (writable layer 1.8G, logs 100M): kubelet evicts the pod when it passes the limit." });
  const agg = await aggregator(t, [stuck, near, before]);
  const r = await runAsync(['why', 'ingest-3', '-n', 'data', '--aggregator', agg.url], env);
  t.equal(r.code, 1, `about to be evicted: 1, a warning (${r.stderr})`);
  t.match(r.stdout, /^data\/ingest-3: not stuck\. But close to eviction for its local storage \(on node-a since .*\): Pod data\/ingest-3 uses 17M of emptyDir cache's 20M sizeLimit \(85%\), growing 18M\/min .* Next: kubectl -n data describe pod ingest-3; du -sh \/x\n$/);
  t.match(r.stdout, /growing 18M\/min/);
  t.ok(agg.seen.some((s) => s.url === '/api/findings?check=pod.ephemeral'), 'asks for pod.ephemeral findings too');
  const json = JSON.parse((await runAsync(['why', 'ingest-3', '-n', 'data', '--aggregator', agg.url, '--json'], env)).stdout);
  t.match(json, { pod: 'data/ingest-3', stuck: false, storage: { check: 'pod.ephemeral', node: 'node-a', state: 'firing' } });
  const evicted = await runAsync(['why', 'ingest-9', '-n', 'data', '--aggregator', agg.url], env);
  t.equal(evicted.code, 0, 'gone: not stuck, nothing firing');
  t.match(evicted.stdout, /Its local storage was last reported near its limits on node-b at .*: Pod data\/ingest-9 uses 1\.9G of container app's 2\.0G ephemeral-storage limit \(95%\) \(writable layer 1\.8G, logs 100M\).* If kubelet evicted it for ephemeral storage, that is what grew\./);
  t.ok(agg.seen.some((s) => s.url === '/api/findings?check=pod.ephemeral&state=resolved'), 'and the resolved ones, for an evicted pod');
});

t.test('through the aggregator: no finding is "not stuck" only where an agent watches pods', async (t) => {
  const env = { NODEWARDEN_TOKEN: TOKEN };
  const noApi = { node: 'node-c', connected: true, collectors: ['pods'], collectorStatus: [{ name: 'pods', status: 'no-data', durationMs: 0, detail: 'no API server configured (kubernetes.enabled is false)' }], activeFindings: 0, silent: false };
  const gone = { ...watching('node-d'), connected: false };

  // Agents without kubernetes.enabled: nobody can see pods, so their silence is not an answer.
  const blind = await aggregator(t, [], [noApi, gone]);
  const r = await runAsync(['why', 'web-1', '-n', 'shop', '--aggregator', blind.url], env);
  t.equal(r.code, 3, `no agent watches pods: 3, unknown (${r.stderr})`);
  t.match(r.stdout, /^shop\/web-1: unknown\. No agent watches pods, so nothing says whether it is stuck: node-c \(pods no-data: no API server configured.*\); node-d \(not connected\)\. Set kubernetes\.enabled on the agents, or run `nodewarden why --local` on the pod's node\.\n$/);
  t.equal(blind.seen.at(-1)?.url, '/api/nodes', 'it asked which nodes watch pods');
  const json = await runAsync(['why', 'web-1', '-n', 'shop', '--aggregator', blind.url, '--json'], env);
  t.equal(json.code, 3);
  t.match(JSON.parse(json.stdout), { pod: 'shop/web-1', stuck: null, source: 'aggregator', note: /No agent watches pods/ });

  // Some nodes watch, one does not: "not stuck" with the caveat, naming the node it cannot speak for.
  const mixed = await aggregator(t, [], [watching('node-a'), noApi]);
  const m = await runAsync(['why', 'web-1', '-n', 'shop', '--aggregator', mixed.url], env);
  t.equal(m.code, 0);
  t.match(m.stdout, /not stuck\. No agent reports it stuck .* Not known on 1 node\(s\) whose agent does not watch pods: node-c \(pods no-data/);
  const onC = await runAsync(['why', 'web-1', '-n', 'shop', '--aggregator', mixed.url, '--node', 'node-c'], env);
  t.equal(onC.code, 3, '--node naming the blind node: unknown');
  t.match(onC.stdout, /No agent on node-c watches pods/);
  const onZ = await runAsync(['why', 'web-1', '-n', 'shop', '--aggregator', mixed.url, '--node', 'node-z'], env);
  t.equal(onZ.code, 3, 'a node the aggregator has never heard of: unknown');
  t.match(onZ.stdout, /node-z \(not known to the aggregator\)/);

  // A stuck finding is the answer even when other nodes are blind: /api/nodes is not asked.
  const found = await aggregator(t, [stuck], [noApi]);
  t.equal((await runAsync(['why', 'web-0', '-n', 'shop', '--aggregator', found.url], env)).code, 2);
  t.notOk(found.seen.some((x) => x.url === '/api/nodes'));

  // An aggregator answering nonsense for /api/nodes: one line, exit 3, not a stack trace.
  const broken = await aggregator(t, [], '{not json');
  const b = await runAsync(['why', 'web-1', '-n', 'shop', '--aggregator', broken.url], env);
  t.same([b.code, b.stderr], [3, "nodewarden: the aggregator's answer to /api/nodes is not JSON\n"]);

  // ...or a huge one: refused at its cap (64 MiB), not buffered whole.
  const huge = await aggregator(t, [], `[${'"x",'.repeat(17 * 1024 * 1024)}"x"]`);
  const hg = await runAsync(['why', 'web-1', '-n', 'shop', '--aggregator', huge.url], env);
  t.same([hg.code, hg.stderr], [3, "nodewarden: the aggregator's answer to /api/nodes: response larger than 67108864 bytes\n"], 'a huge answer: one line, exit 3');
});

t.test('through the aggregator: a refused token, no token, no aggregator: one line, exit 3', async (t) => {
  const agg = await aggregator(t, []);
  const bad = await runAsync(['why', 'web-0', '--aggregator', agg.url], { NODEWARDEN_TOKEN: 'wrong-token-0123456789' });
  t.same([bad.code, bad.stdout, bad.stderr], [3, '', 'nodewarden: the aggregator answered 401: bad token\n']);
  const none = runSync(['why', 'web-0', '--aggregator', agg.url], { NODEWARDEN_TOKEN: '', NODEWARDEN_TOKEN_FILE: '' });
  t.equal(none.code, 3);
  t.match(none.stderr, /^nodewarden: no token: pass --token-file FILE, or set NODEWARDEN_TOKEN_FILE or NODEWARDEN_TOKEN\n/);
  const port = await freePort(); // nothing listens there
  const down = runSync(['why', 'web-0', '--aggregator', `http://127.0.0.1:${port}`], { NODEWARDEN_TOKEN: TOKEN });
  t.equal(down.code, 3);
  t.match(down.stderr, new RegExp(`^nodewarden: cannot reach the aggregator at http://127\\.0\\.0\\.1:${port}/api/findings\\?check=pod\\.stuck: .*ECONNREFUSED`));
  t.equal(down.stderr.trim().split('\n').length, 1, 'one line');
});

t.test('usage: exactly one POD, exit 3 with one line', async (t) => {
  for (const args of [['why'], ['why', 'a', 'b']]) {
    const r = runSync(args);
    t.same([r.code, r.stdout, r.stderr], [3, '', "nodewarden: why takes exactly one POD (and -n NAMESPACE)\nRun 'nodewarden why --help' for usage.\n"], args.join(' '));
  }
});

t.test('--local against the API server: a running pod is not stuck (0), an evicted one names what grew (0), a missing one 3, one on another node 3', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-why-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'agent-token-0123456789\n');
  api.grant('agent-token-0123456789', 'system:serviceaccount:kube-system:nodewarden-agent', [{ verbs: ['get'], resources: ['pods'] }]);
  api.addPod('shop', 'calm-0', 'node-a', 'Running', { spec: { containers: [{ name: 'c', image: 'busybox' }] }, status: { containerStatuses: [{ name: 'c', state: { running: { startedAt: new Date().toISOString() } } }] } });
  api.addPod('shop', 'far-0', 'node-b', 'Running');
  const local = ['--local', '--node', 'node-a', '--set', `kubernetes.server=${api.url}`, '--set', `kubernetes.tokenFile=${tokenFile}`];
  const calm = await runAsync(['why', 'calm-0', '-n', 'shop', ...local]);
  t.equal(calm.code, 0, `not stuck: 0 (${calm.stderr})`);
  t.match(calm.stdout, /^shop\/calm-0: not stuck\. Phase Running; no container has waited longer than \d+s/);
  const json = await runAsync(['why', 'calm-0', '-n', 'shop', '--json', ...local]);
  t.match(JSON.parse(json.stdout), { pod: 'shop/calm-0', stuck: false, source: 'local' });
  // Evicted for its emptyDir: kubelet's message names the bound, so why names the consumer that grew and where it lived.
  api.addPod('data', 'ingest-3', 'node-a', 'Failed', { spec: { volumes: [{ name: 'cache', emptyDir: { sizeLimit: '1Gi' } }], containers: [{ name: 'app', image: 'busybox' }] }, status: { reason: 'Evicted', message: 'Usage of EmptyDir volume "cache" exceeds the limit "1Gi". ' } });
  const evicted = await runAsync(['why', 'ingest-3', '-n', 'data', ...local]);
  t.equal(evicted.code, 0, `gone, not stuck: 0 (${evicted.stderr})`);
  t.match(evicted.stdout, /^data\/ingest-3: not stuck\. Kubelet evicted data\/ingest-3 for local storage: emptyDir cache grew past its sizeLimit of 1\.0G \(\/var\/lib\/kubelet\/pods\/uid-ingest-3\/volumes\/kubernetes\.io~empty-dir\/cache\)\. Phase Failed/);
  const missing = await runAsync(['why', 'nope', '-n', 'shop', ...local]);
  t.same([missing.code, missing.stdout], [3, '']);
  t.match(missing.stderr, /^nodewarden: pod shop\/nope not found\n/);
  const far = await runAsync(['why', 'far-0', '-n', 'shop', ...local]);
  t.equal(far.code, 3);
  t.match(far.stderr, /^nodewarden: pod shop\/far-0 is on node node-b, not node-a: run this on node-b, or without --local\n/);
});

// Every byte a terminal acts on (C0 but the newline, DEL, C1) and the direction overrides.
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

t.test('hostile agent text in why: screen clear, OSC 52 clipboard write, C1 CSI and a bidi override reach neither stdout nor stderr, human or --json', async (t) => {
  const evil = finding('node-a', 'pod.stuck', 'shop/web-0', 'critical', {
    message: 'clear\x1b[2J\x1b[H clipboard\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07 csi\u009b31m hidden\x1b[8m rtl\u202eexe.txt',
    remedy: 'rm -rf /\x1b[8m chattr -i x',
    evidence: { walk: [{ cause: 'immutable\x1b[2J', checked: true, found: true, summary: '\u009d0;title\u009c', remedy: null }], pod: { nodeName: 'node-a' } },
  });
  const agg = await aggregator(t, [evil]);
  const env = { NODEWARDEN_TOKEN: TOKEN };
  for (const json of [false, true]) {
    const r = await runAsync(['why', 'web-0', '-n', 'shop', '--aggregator', agg.url, ...(json ? ['--json'] : [])], env);
    t.equal(r.code, 2);
    t.notMatch(r.stdout, UNSAFE, `${json ? '--json' : 'human'}: no control or bidi character on stdout`);
    t.notMatch(r.stderr, UNSAFE, `${json ? '--json' : 'human'}: none on stderr`);
    if (json) t.match((JSON.parse(r.stdout) as { finding: { message: string } }).finding.message, /clear\x1b\[2J/, '--json keeps the value, escaped as \\u in the text');
    else t.match(r.stdout, /clear\\x1b\[2J/, 'shown as visible escapes');
  }
  // A hostile server's error body.
  const srv = http.createServer((_req, res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('boom\x1b[2J\u009b31m\u202e'));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const bad = await runAsync(['why', 'web-0', '-n', 'shop', '--aggregator', `ws://127.0.0.1:${(srv.address() as { port: number }).port}`], env);
  t.equal(bad.code, 3);
  t.match(bad.stderr, /answered 500: boom\\x1b\[2J/);
  t.notMatch(bad.stderr, UNSAFE, "the server's error body is escaped");
});
