// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { envFor } from '../../helpers/context.js';
import { ensureTestImage, removeContainer, requireRuntime, runContainer } from '../../helpers/runtime.js';

t.test('live: the joined model of a real docker container and its containerd task', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const id = runContainer('nw-model', ['sleep', '300'], ['--label', 'io.kubernetes.pod.name=web-1', '--label', 'io.kubernetes.pod.namespace=shop', '--label', 'io.kubernetes.container.name=app']);
  t.teardown(() => removeContainer('nw-model'));
  const env = envFor('/');
  const snap = await env.runtime.snapshot();
  t.same(snap.runtimes.map((r) => [r.name, r.status]), [['docker', 'ok'], ['containerd', 'ok']]);
  const c = snap.containers.find((x) => x.id === id);
  t.ok(c, 'our container is in the model');
  t.equal(c?.manager, 'docker');
  t.same(c?.workload, { containerId: id, containerName: 'app', pod: 'web-1', namespace: 'shop' });
  t.equal(c?.docker?.running, true);
  t.equal(c?.containerd?.known, true, 'containerd knows its twin in namespace moby');
  t.equal(c?.containerd?.task?.status, 'RUNNING');
  t.equal(c?.containerd?.task?.pid, c?.docker?.pid, 'both see the same pid');
  t.match(c?.storage.upperDir, /overlay2\/[0-9a-f]{64}\/diff$/);
  t.match(c?.storage.containerDir, new RegExp(`/containers/${id}$`));
});

t.test('a runtime that is gone is down, not absent', async (t) => {
  const { mkdtempSync, mkdirSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const { execFileSync } = await import('node:child_process');
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-gone-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const ping = async () => (await envFor(root, ['runtime.timeout=1s']).runtime.ping()).map((r) => [r.name, r.status, r.downReason ?? null]);
  t.same(await ping(), [['docker', 'absent', null], ['containerd', 'absent', null]], 'nothing here: absent');
  mkdirSync(path.join(root, 'var/lib/docker/containers'), { recursive: true });
  t.same((await ping())[0], ['docker', 'absent', null], 'an empty docker data root (docker installed once, a CRI-only node): still absent');
  mkdirSync(path.join(root, 'var/lib/docker/containers', 'c'.repeat(64)));
  t.same((await ping())[0], ['docker', 'down', 'socket-gone'], "no socket, but docker's data root holds containers: down");
  // A socket file nobody listens on (a daemon killed without cleaning up): connection refused.
  mkdirSync(path.join(root, 'var/run'), { recursive: true });
  execFileSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(path.join(root, 'var/run/docker.sock'))})`]);
  const env = envFor(root, ['runtime.timeout=1s']);
  const [docker] = await env.runtime.ping();
  t.same([docker?.status, docker?.downReason], ['down', 'refused']);
  const { evaluateRuntimes } = await import('../../../collectors/runtime.js');
  const f = evaluateRuntimes([docker!]);
  t.same(f.map((x) => [x.check, x.severity]), [['runtime.down', 'critical']]);
  t.match(f[0]?.message, /refuses connections/);
  t.match(f[0]?.remedy, /systemctl start docker/);
});

t.test('live: containerd frozen, then resumed: unresponsive while frozen, ok on the very next read (no stale-stream error cycle)', async (t) => {
  const { ourDaemonPid } = await import('../../helpers/runtime.js');
  const { requireLive } = await import('../../helpers/live.js');
  if (!requireRuntime(t)) return;
  const pid = ourDaemonPid('containerd');
  if (pid === undefined && !requireLive(t, { paths: ['/nonexistent: containerd was not started by scripts/start-test-runtime.sh, so this test will not freeze it'] })) return;
  const env = envFor('/', ['runtime.timeout=1s']);
  t.equal((await env.runtime.ping())[1]?.status, 'ok', 'answers first (a session is open)');
  process.kill(pid!, 'SIGSTOP');
  let resumed = false;
  t.teardown(() => {
    if (!resumed) process.kill(pid!, 'SIGCONT');
  });
  // Several calls in flight on the session when it freezes, as the agent's collectors would have.
  const frozen = await Promise.all([env.runtime.ping(), env.runtime.snapshot()]);
  t.equal(frozen[0][1]?.status, 'unresponsive');
  const during = await env.runtime.snapshot({ since: Date.now() });
  t.equal(during.runtimes[1]?.status, 'unresponsive', 'a read during the freeze is told at once');
  process.kill(pid!, 'SIGCONT');
  resumed = true;
  const after = await env.runtime.ping();
  t.same(after.map((r) => [r.name, r.status, r.error ?? null]), [['docker', 'ok', null], ['containerd', 'ok', null]], 'the first probe after SIGCONT is ok');
  const snap = await env.runtime.snapshot({ since: Date.now() });
  t.same(snap.runtimes.map((r) => r.status), ['ok', 'ok'], 'and so is the next read');
  t.equal(snap.stale, undefined);
});
