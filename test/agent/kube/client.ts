// The agent's Kubernetes client against the local stand-in API server (test/helpers/fake-apiserver.ts),
// a TLS server with a CA made by openssl, and servers that never answer.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import type { Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { FileTokenSource, KubeClient, KubeError } from '../../../agent/kube/client.js';
import { FakeApiServer } from '../../helpers/fake-apiserver.js';
import { requireLive } from '../../helpers/live.js';

const TOKEN = 'agent-token-0123456789';

async function apiServer(t: Test) {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.grant(TOKEN, 'system:serviceaccount:kube-system:nodewarden-agent', [
    { verbs: ['get'], resources: ['nodes'] },
    { verbs: ['patch'], resources: ['nodes/status'] },
    { verbs: ['create'], resources: ['events'] },
    { verbs: ['get', 'list', 'watch'], resources: ['pods'] },
  ]);
  api.grant('no-rights', 'system:serviceaccount:default:nobody', []);
  return api;
}

function saDir(t: Test, files: Record<string, string | Buffer>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-kube-sa-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content);
  return dir;
}

t.test('calls carry the bearer token and get the Node, patch its status, create an Event', async (t) => {
  const api = await apiServer(t);
  api.addNode('node-a', [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'ok' }]);
  const kube = new KubeClient({ server: api.url, token: TOKEN, timeoutMs: 5000 });
  const node = await kube.getNode('node-a');
  t.equal(node.metadata.name, 'node-a');
  const patched = await kube.patchNodeStatus('node-a', { status: { conditions: [{ type: 'DiskPressureNW', status: 'True', reason: 'Full', message: '/var 97 %' }] } });
  t.same(patched.status?.conditions?.map((c) => [c.type, c.status]), [['Ready', 'True'], ['DiskPressureNW', 'True']], 'a strategic merge: conditions merged by type');
  t.equal(api.requests.at(-1)?.contentType, 'application/strategic-merge-patch+json');
  await kube.patchNodeStatus('node-a', { status: { conditions: [] } }, 'application/merge-patch+json');
  t.same((await kube.getNode('node-a')).status?.conditions, [], 'a JSON merge patch replaces the list');
  await kube.createEvent('default', { metadata: { generateName: 'node-a.' }, reason: 'DiskFull', message: 'm' });
  t.equal(api.events.length, 1);
  t.equal(api.events[0]!['reason'], 'DiskFull');
  t.equal(kube.timeoutMs, 5000);
});

t.test('a status other than 2xx is a KubeError with the status, the reason and the server\'s message', async (t) => {
  const api = await apiServer(t);
  api.addNode('node-a');
  const missing = await new KubeClient({ server: api.url, token: TOKEN, timeoutMs: 5000 }).getNode('node-b').catch((e: unknown) => e);
  t.ok(missing instanceof KubeError);
  t.match(missing, { code: 'NW_ERR_RUNTIME', status: 404, reason: 'NotFound', message: 'GET /api/v1/nodes/node-b: 404 nodes "node-b" not found' });
  await t.rejects(new KubeClient({ server: api.url, token: 'wrong', timeoutMs: 5000 }).getNode('node-a'), { code: 'NW_ERR_RUNTIME', status: 401, reason: 'Unauthorized' });
  await t.rejects(new KubeClient({ server: api.url, token: 'no-rights', timeoutMs: 5000 }).patchNodeStatus('node-a', {}), {
    status: 403,
    reason: 'Forbidden',
    message: /PATCH \/api\/v1\/nodes\/node-a\/status: 403 nodes\/status is forbidden: User "system:serviceaccount:default:nobody" cannot patch/,
  });
  // Not a Status object (a proxy's HTML page): the start of its text, no reason.
  const proxy = http.createServer((_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<html>Bad Gateway</html>'));
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => proxy.close());
  await t.rejects(new KubeClient({ server: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`, token: TOKEN, timeoutMs: 5000 }).getNode('n'), { code: 'NW_ERR_RUNTIME', status: 502, reason: '', message: 'GET /api/v1/nodes/n: 502 <html>Bad Gateway</html>' });
});

t.test('an API server that never answers: NW_ERR_TIMEOUT naming it, for calls, lists and watches', async (t) => {
  const held: http.ServerResponse[] = [];
  const mute = http.createServer((_req, res) => void held.push(res));
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    mute.closeAllConnections();
    mute.close();
  });
  const kube = new KubeClient({ server: `http://127.0.0.1:${(mute.address() as { port: number }).port}`, token: TOKEN, timeoutMs: 200 });
  await t.rejects(kube.getNode('n'), { code: 'NW_ERR_TIMEOUT', message: /the API server/ });
  await t.rejects(kube.list('/api/v1/pods', () => {}), { code: 'NW_ERR_TIMEOUT' });
  await t.rejects(kube.stream('/api/v1/pods?watch=1', () => {}, { idleMs: 60_000 }), { code: 'NW_ERR_TIMEOUT' }, 'no headers within the client timeout');
});

t.test('list: pages through limit and continue, items one by one; an expired continue token is 410', async (t) => {
  const api = await apiServer(t);
  for (let i = 0; i < 5; i++) api.addPod('default', `p${i}`, i === 3 ? 'node-b' : 'node-a', 'Running');
  const kube = new KubeClient({ server: api.url, token: TOKEN, timeoutMs: 5000 });
  const names: string[] = [];
  let cont: string | undefined;
  let pages = 0;
  do {
    const rest = await kube.list(`/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a&limit=2${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`, (pod) => names.push((pod['metadata'] as { name: string }).name));
    pages++;
    t.equal(rest['kind'], 'PodList');
    cont = (rest['metadata'] as { continue?: string }).continue;
  } while (cont);
  t.same(names, ['p0', 'p1', 'p2', 'p4'], "only this node's pods, each once");
  t.equal(pages, 2);
  const first = await kube.list('/api/v1/pods?limit=1', () => {});
  api.addPod('default', 'p5', 'node-a', 'Pending'); // the list's version is now in the past...
  api.compact(); // ...and compacted away
  await t.rejects(kube.list(`/api/v1/pods?limit=1&continue=${encodeURIComponent((first['metadata'] as { continue: string }).continue)}`, () => {}), { code: 'NW_ERR_RUNTIME', status: 410, reason: 'Expired' });
  await t.rejects(new KubeClient({ server: api.url, token: 'no-rights', timeoutMs: 5000 }).list('/api/v1/pods', () => {}), { code: 'NW_ERR_RUNTIME', status: 403 });
});

t.test('stream: a watch delivers each event as it comes, ends with the server, is aborted quietly, and notices silence', async (t) => {
  const api = await apiServer(t);
  const p0 = api.addPod('default', 'p0', 'node-a', 'Pending');
  const kube = new KubeClient({ server: api.url, token: TOKEN, timeoutMs: 5000 });
  // From just before p0 was added: the watch starts with p0's ADDED (the stand-in sends its headers with the first event).
  const from = Number((p0['metadata'] as { resourceVersion: string }).resourceVersion) - 1;
  const seen: string[] = [];
  let opened = false;
  const ended = kube.stream(`/api/v1/pods?watch=1&resourceVersion=${from}&timeoutSeconds=1`, (ev) => seen.push(`${String(ev['type'])} ${String(((ev['object'] as { metadata: { name: string } }).metadata).name)}`), {
    idleMs: 30_000,
    onOpen: () => {
      // Changes made while the watch is open arrive on it.
      opened = true;
      api.updatePod('default', 'p0', { status: { phase: 'Running' } });
      api.addPod('default', 'p1', 'node-a', 'Pending');
    },
  });
  await ended; // the server's timeoutSeconds ends the watch: resolves
  t.equal(opened, true);
  t.same(seen, ['ADDED p0', 'MODIFIED p0', 'ADDED p1']);

  const ac = new AbortController();
  const aborted = kube.stream(`/api/v1/pods?watch=1&resourceVersion=${from}`, () => {}, { idleMs: 30_000, signal: ac.signal, onOpen: () => ac.abort() });
  await t.resolves(aborted, 'an aborted watch resolves');
  await t.rejects(new KubeClient({ server: api.url, token: 'no-rights', timeoutMs: 5000 }).stream('/api/v1/pods?watch=1', () => {}, { idleMs: 1000 }), { code: 'NW_ERR_RUNTIME', status: 403, reason: 'Forbidden' });

  // Headers, then nothing at all: a dead connection is noticed after idleMs, not waited on forever.
  const silent = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    silent.closeAllConnections();
    silent.close();
  });
  const quiet = new KubeClient({ server: `http://127.0.0.1:${(silent.address() as { port: number }).port}`, token: TOKEN, timeoutMs: 5000 });
  await t.rejects(quiet.stream('/api/v1/pods?watch=1', () => {}, { idleMs: 200 }), { code: 'NW_ERR_TIMEOUT', message: /nothing from the watch within 200 ms/ }, 'a silent watch is dropped');
});

t.test('stream: an event line longer than maxLine is NW_ERR_PARSE, not memory', async (t) => {
  const srv = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(`{"type":"ADDED","object":{"metadata":{"name":"${'x'.repeat(3000)}`);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    srv.closeAllConnections();
    srv.close();
  });
  const kube = new KubeClient({ server: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, token: TOKEN, timeoutMs: 5000 });
  await t.rejects(kube.stream('/api/v1/pods?watch=1', () => {}, { idleMs: 5000, maxLine: 1000 }), { code: 'NW_ERR_PARSE' });
});

t.test('inCluster: the service account token and CA, the server from the environment', async (t) => {
  const dir = saDir(t, { token: `${TOKEN}\n`, 'ca.crt': 'not used over http' });
  const api = await apiServer(t);
  api.addNode('node-a');
  const port = new URL(api.url).port;
  const kube = KubeClient.inCluster({ tokenFile: `${dir}/token`, caFile: `${dir}/ca.crt`, timeoutMs: 5000, server: api.url, env: {} });
  t.equal((await kube.getNode('node-a')).metadata.name, 'node-a', 'the token file\'s token, trimmed');
  t.throws(() => KubeClient.inCluster({ timeoutMs: 5000, env: {} }), { code: 'NW_ERR_CONFIG', message: /KUBERNETES_SERVICE_HOST unset/ });
  t.throws(() => KubeClient.inCluster({ tokenFile: `${dir}/absent`, timeoutMs: 5000, env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port } }), {
    code: 'NW_ERR_CONFIG',
    message: /service account token .*absent: no such file \(is automountServiceAccountToken false\?\)/,
  });
  t.throws(() => KubeClient.inCluster({ tokenFile: `${dir}/token`, caFile: `${dir}/no-ca`, timeoutMs: 5000, env: { KUBERNETES_SERVICE_HOST: 'fd00::1' } }), { code: 'NW_ERR_CONFIG', message: /service account CA/ }, 'https needs the CA');
});

t.test('a rotated service-account token is picked up: read again after a minute, and at once after a 401', async (t) => {
  const dir = saDir(t, { token: TOKEN });
  const api = await apiServer(t);
  api.addNode('node-a');
  let clock = 0;
  const source = new FileTokenSource(`${dir}/token`, { now: () => clock });
  const kube = new KubeClient({ server: api.url, token: source, timeoutMs: 5000 });
  t.equal((await kube.getNode('node-a')).metadata.name, 'node-a');

  // kubelet writes the next token (rename over the old file, as its atomic writer does) before the old expires.
  const NEXT = 'agent-token-rotated-0123456789';
  api.grant(NEXT, 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }]);
  writeFileSync(`${dir}/token.new`, `${NEXT}\n`);
  renameSync(`${dir}/token.new`, `${dir}/token`);
  clock = 30_000;
  t.equal(source.get(), TOKEN, 'within a minute the copy in memory is used (no read per call)');
  clock = 60_000;
  api.revoke(TOKEN);
  t.equal((await kube.getNode('node-a')).metadata.name, 'node-a', 'a minute on, the new token is read and accepted after the old one expired');
  t.equal(source.get(), NEXT);

  // The token expired before its minute was up: the 401 makes the next call read the file again.
  const THIRD = 'agent-token-third-0123456789';
  api.grant(THIRD, 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }]);
  writeFileSync(`${dir}/token`, THIRD);
  api.revoke(NEXT);
  await t.rejects(kube.getNode('node-a'), { code: 'NW_ERR_RUNTIME', message: /401/ }, 'the call with the expired token fails once');
  t.equal((await kube.getNode('node-a')).metadata.name, 'node-a', 'the next call presents the file\'s new token');

  // kubelet mid-write: the file is briefly absent or empty; the last good token is kept, not an error.
  rmSync(`${dir}/token`);
  clock = 200_000;
  t.equal(source.get(), THIRD, 'a failed read keeps the last good token');
  writeFileSync(`${dir}/token`, '');
  clock = 300_000;
  t.equal(source.get(), THIRD, 'an empty file keeps it too');
  t.equal(source.failedReads, 2, 'and both failed reads are counted');
  t.throws(() => new FileTokenSource(`${dir}/token`), { code: 'NW_ERR_CONFIG', message: /is empty/ }, 'an empty token at start is a configuration error');
});

t.test('TLS: inCluster trusts the API server through the service account CA', async (t) => {
  if (!requireLive(t, { commands: ['openssl'] })) return;
  const dir = saDir(t, { token: TOKEN });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/key.pem`, '-out', `${dir}/ca.crt`, '-days', '1', '-subj', '/CN=kubernetes', '-addext', 'subjectAltName=IP:127.0.0.1,IP:::1'], { stdio: 'ignore' });
  const auth: string[] = [];
  const srv = https.createServer({ key: readFileSync(`${dir}/key.pem`), cert: readFileSync(`${dir}/ca.crt`) }, (req, res) => {
    auth.push(String(req.headers.authorization));
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"metadata":{"name":"node-a"}}');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    srv.closeAllConnections();
    srv.close();
  });
  const port = String((srv.address() as { port: number }).port);
  const kube = KubeClient.inCluster({ tokenFile: `${dir}/token`, caFile: `${dir}/ca.crt`, timeoutMs: 5000, env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port } });
  t.equal((await kube.getNode('node-a')).metadata.name, 'node-a');
  t.same(auth, [`Bearer ${TOKEN}`]);
  const untrusting = new KubeClient({ server: `https://127.0.0.1:${port}`, token: TOKEN, timeoutMs: 5000 });
  await t.rejects(untrusting.getNode('node-a'), { code: 'NW_ERR_RUNTIME', message: /certificate/ }, 'without the CA the server is not trusted');
});
