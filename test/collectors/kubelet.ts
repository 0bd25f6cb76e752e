// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
// kubelet cannot run here: its healthz is played by a local HTTP server that answers as kubelet's does
// (200 "ok"; 500 with "[+]ping ok ... [-]pleg failed: ..."; or never). The runtime is the real one.
import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { evaluateKubelet, failedChecks, kubelet, nodeReadyToJudge } from '../../collectors/kubelet.js';
import { nodeReady } from '../../agent/kube/node.js';
import { readFileSync } from 'node:fs';
import type { RuntimeState } from '../../collectors/types.js';
import { contextFor, envFor, settingsFor } from '../helpers/context.js';
import { requireLive } from '../helpers/live.js';
import { ourDaemonPid, requireRuntime } from '../helpers/runtime.js';
import { eventually } from '../helpers/processes.js';

const config = settingsFor(kubelet) as never as Parameters<typeof evaluateKubelet>[2];
const PLEG_BODY = '[+]ping ok\n[+]log ok\n[-]pleg failed: PLEG is not healthy: pleg was last seen active 3m12.5s ago; threshold is 3m0s\n[+]syncloop ok\nhealthz check failed\n';
const frozen: RuntimeState = { name: 'docker', socket: '/var/run/docker.sock', status: 'unresponsive', error: 'no answer within 5000 ms' };
const fine: RuntimeState[] = [{ name: 'docker', socket: '/var/run/docker.sock', status: 'ok', latencyMs: 4 }, { name: 'containerd', socket: '/run/containerd/containerd.sock', status: 'ok', latencyMs: 2 }];

t.test('pure: failed healthz checks; PLEG named with the runtime that does not answer, or with the latencies that rule it out', async (t) => {
  t.same(failedChecks(PLEG_BODY), ['pleg failed: PLEG is not healthy: pleg was last seen active 3m12.5s ago; threshold is 3m0s']);
  t.same(failedChecks('internal error\n'), ['internal error']);
  const now = 1_000_000;
  const [f] = evaluateKubelet({ healthz: 'failing', status: 500, body: PLEG_BODY, runtimeStuckSince: { docker: now - 200_000 } }, [frozen, fine[1]!], config, now);
  t.equal(f?.check, 'kubelet.unhealthy');
  t.match(f?.message, /kubelet's healthz answers 500: pleg failed: PLEG is not healthy.*PLEG is not healthy, and on this node the container runtime does not answer: docker unresponsive for 3\.3 min/);
  t.match(f?.remedy, /nodewarden check --only runtime,drift/);
  const [g] = evaluateKubelet({ healthz: 'failing', status: 500, body: PLEG_BODY }, fine, config, now);
  t.match(g?.message, /no runtime call of the agent's is slow \(docker 4 ms, containerd 2 ms\)/);
  t.same(evaluateKubelet({ healthz: 'ok', status: 200 }, fine, config, now), [], 'healthy');
});

t.test('pure: the PLEG forecast waits out a planned restart, then counts down to the 3 minutes', async (t) => {
  const now = 1_000_000;
  t.same(evaluateKubelet({ healthz: 'ok', runtimeStuckSince: { docker: now - 10_000 } }, [frozen], config, now), [], '10 s: a restart, not yet');
  const [w] = evaluateKubelet({ healthz: 'ok', runtimeStuckSince: { docker: now - 45_000 } }, [frozen], config, now);
  t.equal(w?.check, 'kubelet.pleg');
  t.equal(w?.severity, 'warning');
  t.match(w?.message, /docker has not answered for 45 s: .*NotReady in about 2\.3 min/);
  t.equal(evaluateKubelet({ healthz: 'ok', runtimeStuckSince: { docker: now - 150_000 } }, [frozen], config, now)[0]?.severity, 'critical', 'the last minute: critical');
  t.same(evaluateKubelet({ healthz: 'absent', runtimeStuckSince: { docker: now - 150_000 } }, [frozen], config, now), [], 'no kubelet, no PLEG');
});

t.test('pure: the Node NotReady with kubelet\'s PLEG message: kubelet.pleg critical, quoting kubelet, naming the runtime call that hangs', async (t) => {
  const now = 1_000_000;
  const pleg = nodeReady(JSON.parse(readFileSync('test/fixtures/k8s/nodes/pleg-notready.json', 'utf8')));
  const hung: RuntimeState = { ...frozen, error: 'docker GET /_ping: no answer from /var/run/docker.sock within 5000 ms (at 2026-11-22T10:01:00.000Z; not asked again until it answers the runtime probe)' };
  const obs = evaluateKubelet({ healthz: 'ok', status: 200, runtimeStuckSince: { docker: now - 200_000 }, node: { ready: pleg, readAt: now } }, [hung, fine[1]!], config, now, 'node-1');
  t.same(obs.map((o) => [o.check, o.severity, o.subject]), [['kubelet.pleg', 'critical', 'pleg']], 'one finding: the forecast gives way to what kubelet said');
  t.equal(obs[0]?.message, 'node-1 is NotReady since 2026-11-22T10:04:31Z: kubelet says "PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s". On this node the container runtime does not answer: docker unresponsive for 3.3 min (docker GET /_ping: no answer from /var/run/docker.sock within 5000 ms) (the agent\'s own calls to it).');
  t.match(obs[0]?.remedy, /restart it only after draining the node/);
  const cannotInspect: RuntimeState = { name: 'docker', socket: '/var/run/docker.sock', status: 'error', error: 'docker GET /containers/4f1c2d9e7a41/json: 500 {"message":"container 4f1c2d9e7a41: rpc error: code = Unknown desc = context deadline exceeded"}' };
  t.match(evaluateKubelet({ healthz: 'ok', runtimeStuckSince: { docker: now - 40_000 }, node: { ready: pleg, readAt: now } }, [cannotInspect], config, now)[0]?.message, /docker error for 40 s \(docker GET \/containers\/4f1c2d9e7a41\/json: 500 .*\)/, 'a container the runtime cannot inspect is named by its call');
  const slow: RuntimeState[] = [{ ...fine[0]!, latencyMs: 2400 }, fine[1]!];
  t.match(evaluateKubelet({ healthz: 'ok', node: { ready: pleg, readAt: now } }, slow, config, now)[0]?.message, /the container runtime answers slowly: docker took 2400 ms to answer the agent's probe/);
  t.match(evaluateKubelet({ healthz: 'ok', node: { ready: pleg, readAt: now } }, fine, config, now)[0]?.message, /kubelet says "PLEG is not healthy.*no runtime call of the agent's is slow \(docker 4 ms, containerd 2 ms\)/, 'a fast runtime is said, so the cause is looked for elsewhere');
});

t.test('pure: any other NotReady is kubelet.notReady with kubelet\'s reason and message; Ready, or no API server, is nothing', async (t) => {
  const now = 1_000_000;
  const unknown = nodeReady(JSON.parse(readFileSync('test/fixtures/k8s/nodes/status-unknown.json', 'utf8')));
  const [n] = evaluateKubelet({ healthz: 'ok', node: { ready: unknown, readAt: now } }, fine, config, now, 'node-1');
  t.same([n?.check, n?.severity, n?.subject], ['kubelet.notReady', 'critical', 'node']);
  t.equal(n?.message, 'node-1 is NotReady (Ready=Unknown, NodeStatusUnknown) since 2026-11-22T10:03:02Z: "Kubelet stopped posting node status.".');
  const cni = { status: 'False' as const, reason: 'KubeletNotReady', message: 'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized' };
  t.match(evaluateKubelet({ healthz: 'ok', node: { ready: cni, readAt: now } }, fine, config, now)[0]?.message, /NotReady \(Ready=False, KubeletNotReady\): "container runtime network not ready/);
  const ready = nodeReady(JSON.parse(readFileSync('test/fixtures/k8s/nodes/ready.json', 'utf8')));
  t.same(evaluateKubelet({ healthz: 'ok', node: { ready, readAt: now } }, fine, config, now), [], 'Ready');
  t.same(evaluateKubelet({ healthz: 'ok' }, fine, config, now), [], 'no API server: the Node is not judged');
});

t.test('pure: the Node to judge: a fresh read; when the API server does not answer, the last good read stands (nothing clears by time alone)', async (t) => {
  const notReady = { status: 'False' as const, reason: 'KubeletNotReady', message: 'PLEG is not healthy: x' };
  t.equal(nodeReadyToJudge(undefined, undefined), undefined, 'no API server');
  t.equal(nodeReadyToJudge({ status: 'absent', reason: 'x' }, { ready: notReady, readAt: 1 }), undefined);
  t.same(nodeReadyToJudge({ status: 'synced', ready: undefined, readAt: 5 }, { ready: notReady, readAt: 1 }), { ready: undefined, readAt: 5 }, 'a fresh read wins');
  t.same(nodeReadyToJudge({ status: 'unsynced', reason: 'timeout' }, { ready: notReady, readAt: 1 }), { ready: notReady, readAt: 1, stale: 'timeout' }, 'the previous run\'s read stands');
  t.same(nodeReadyToJudge({ status: 'unsynced', reason: 'timeout', last: { ready: notReady, readAt: 3 } }, undefined), { ready: notReady, readAt: 3, stale: 'timeout' });
  t.equal(nodeReadyToJudge({ status: 'unsynced', reason: 'not read yet' }, undefined), undefined, 'never read: not judged');
});

async function fakeHealthz(answer: (res: http.ServerResponse) => void): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => answer(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`;
  return { url, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

t.test('against a kubelet healthz over HTTP: 200 is quiet; 500 with a PLEG failure is critical; one that never answers is critical; nothing listening and no kubelet is no data', async (t) => {
  const root = 'test/fixtures/host/debian12-vm';
  const env = envFor(root);
  const ok = await fakeHealthz((res) => res.end('ok'));
  t.teardown(() => ok.close());
  const r1 = await kubelet.collect(contextFor(kubelet, root, { env, sets: [`collectors.kubelet.healthzUrl=${ok.url}`] }));
  t.same(r1.kind === 'ok' ? r1.observations : 'x', [], '200 ok');
  const bad = await fakeHealthz((res) => {
    res.writeHead(500);
    res.end(PLEG_BODY);
  });
  t.teardown(() => bad.close());
  const r2 = await kubelet.collect(contextFor(kubelet, root, { env, sets: [`collectors.kubelet.healthzUrl=${bad.url}`] }));
  const f = r2.kind === 'ok' ? r2.observations[0] : undefined;
  t.equal(f?.severity, 'critical');
  t.match(f?.message, /answers 500: pleg failed/);
  const hung = await fakeHealthz(() => {});
  t.teardown(() => hung.close());
  const r3 = await kubelet.collect(contextFor(kubelet, root, { env, sets: [`collectors.kubelet.healthzUrl=${hung.url}`, 'collectors.kubelet.healthzTimeout=300ms'] }));
  t.match(r3.kind === 'ok' ? r3.observations[0]?.message : '', /kubelet's healthz does not answer: no answer within 0 s/);
  await ok.close();
  const r4 = await kubelet.collect(contextFor(kubelet, root, { env, sets: [`collectors.kubelet.healthzUrl=${ok.url}`] }));
  t.equal(r4.kind, 'no-data');
  t.match(r4.kind === 'no-data' ? r4.reason : '', /no kubelet on this node/);
});

t.test('no kubelet: the next search reads only the pids that are new since the last one, and finds a kubelet that starts later', async (t) => {
  const { cpSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-kubelet-scan-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  cpSync('test/fixtures/host/debian12-vm', root, { recursive: true });
  const env = envFor(root);
  const reads: string[] = [];
  const readText = env.host.readText.bind(env.host);
  env.host.readText = (p: string) => {
    if (p.endsWith('/comm')) reads.push(p);
    return readText(p);
  };
  const gone = await fakeHealthz((res) => res.end('ok'));
  await gone.close();
  const ctx = (previous?: unknown) => contextFor(kubelet, root, { env, previous, sets: [`collectors.kubelet.healthzUrl=${gone.url}`] });
  const first = await kubelet.collect(ctx());
  t.equal(first.kind, 'no-data');
  const carried = first.kind === 'no-data' ? first.carry : undefined;
  t.ok(reads.length >= 2, `the first search reads every process's comm (${reads.length})`);
  reads.length = 0;
  const second = await kubelet.collect(ctx(carried));
  t.equal(second.kind, 'no-data');
  t.same(reads, [], 'the next one reads none: no process is new');
  mkdirSync(path.join(root, 'proc', '777'));
  writeFileSync(path.join(root, 'proc', '777', 'comm'), 'kubelet\n');
  reads.length = 0;
  const third = await kubelet.collect(ctx(second.kind === 'no-data' ? second.carry : undefined));
  // (Once kubelet is found, the runtime model reads the process table for its own reasons: not counted.)
  t.same(reads.map((r) => path.basename(path.dirname(r)))[0], '777', 'the search read only the new pid before it found kubelet');
  t.equal(third.kind, 'ok', 'a kubelet that started since is found (its healthz is not listening)');
  t.equal(third.kind === 'ok' ? third.data.kubeletPid : undefined, 777);
});

t.test('live: dockerd frozen on a node where kubelet runs (a process named kubelet): kubelet.pleg names docker and counts down, before any NotReady', async (t) => {
  if (!requireRuntime(t)) return;
  const pid = ourDaemonPid('dockerd');
  if (pid === undefined && !requireLive(t, { paths: ['/nonexistent: dockerd was not started by scripts/start-test-runtime.sh, so this test will not freeze it'] })) return;
  // A process whose name is kubelet (a copy of sleep), and a healthz port where nothing listens.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-kubelet-'));
  copyFileSync('/bin/sleep', path.join(dir, 'kubelet'));
  const fakeKubelet = spawn(path.join(dir, 'kubelet'), ['600'], { stdio: 'ignore' });
  const closed = await fakeHealthz((res) => res.end('ok'));
  await closed.close();
  let resumed = false;
  t.teardown(() => {
    if (!resumed) process.kill(pid!, 'SIGCONT');
    fakeKubelet.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const env = envFor('/', ['runtime.timeout=1s']);
  const sets = [`collectors.kubelet.healthzUrl=${closed.url}`, 'collectors.kubelet.plegWarnAfter=2s'];
  const first = await kubelet.collect(contextFor(kubelet, '/', { env, sets }));
  t.same(first.kind === 'ok' ? [first.observations, first.data.kubeletPid] : first.kind, [[], fakeKubelet.pid], 'kubelet found by name; docker answers: nothing');
  process.kill(pid!, 'SIGSTOP');
  await env.runtime.ping(); // the agent's runtime probe: docker times out once
  let previous = first.kind === 'ok' ? first.data : undefined;
  let fired: string | undefined;
  t.ok(await eventually(async () => {
    const r = await kubelet.collect(contextFor(kubelet, '/', { env, sets, previous }));
    if (r.kind === 'ok') {
      previous = r.data;
      fired = r.observations.find((o) => o.check === 'kubelet.pleg')?.message;
    }
    return fired !== undefined;
  }, 30_000), 'kubelet.pleg fires while dockerd is frozen');
  t.match(fired, /docker has not answered for \d+ s: kubelet's PLEG relists through it, so kubelet will report "PLEG is not healthy" and the node NotReady in about/);
  process.kill(pid!, 'SIGCONT');
  resumed = true;
  await env.runtime.ping();
  t.ok(await eventually(async () => {
    const after = await kubelet.collect(contextFor(kubelet, '/', { env, sets, previous }));
    return after.kind === 'ok' && after.observations.length === 0;
  }, 30_000), 'docker answers again: resolved');
});
