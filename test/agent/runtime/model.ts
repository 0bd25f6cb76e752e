// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { envFor } from '../../helpers/context.js';
import { ensureTestImage, removeContainer, requireRuntime, runContainer } from '../../helpers/runtime.js';

/** A real model of this machine's runtimes whose docker inspects of one container are counted. */
function countingInspects(id: string): { rt: import('../../../agent/runtime/model.js').Runtimes; inspects: () => number } {
  const rt = envFor('/').runtime as import('../../../agent/runtime/model.js').Runtimes;
  let n = 0;
  const real = rt.docker.inspect.bind(rt.docker);
  rt.docker.inspect = (x: string) => {
    if (x === id) n += 1;
    return real(x);
  };
  return { rt, inspects: () => n };
}

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

t.test('live: a running container\'s inspect is cached between events, and never stale for a fresh read or after its own event', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const { docker } = await import('../../helpers/runtime.js');
  const id = runContainer('nw-model-cache', ['sleep', '300']);
  t.teardown(() => removeContainer('nw-model-cache'));
  const { rt, inspects } = countingInspects(id);
  const pidOf = async (opts: { since?: number } = {}) => (await rt.snapshot(opts)).containers.find((c) => c.id === id)?.docker?.pid;
  const pid1 = await pidOf();
  rt.invalidate(); // a gap in the events: everything is asked again
  await pidOf();
  const before = inspects();
  rt.invalidate('another-container');
  t.equal(await pidOf(), pid1);
  t.equal(inspects(), before, 'an event about another container: our running container is not inspected again');
  // Restarted behind the model's back (no event delivered to it): a cached read may be stale, a fresh one is not.
  docker('restart', '-t', '0', 'nw-model-cache');
  const fresh = await pidOf({ since: Date.now() });
  t.not(fresh, pid1, `a fresh read sees the new pid (${pid1} -> ${fresh})`);
  t.equal(inspects(), before + 1, 'a fresh read inspects again');
  docker('restart', '-t', '0', 'nw-model-cache');
  rt.invalidate(id); // its start event
  const afterEvent = await pidOf();
  t.not(afterEvent, fresh, 'after its own event the cached view is dropped');
});

t.test('a stopped container\'s cached inspect is keyed by its state and status without the age docker appends', async (t) => {
  const { inspectKey } = await import('../../../agent/runtime/model.js');
  const same = (a: string, b: string) => t.equal(inspectKey('exited', a), inspectKey('exited', b), `${a} ~ ${b}`);
  same('Exited (137) 3 seconds ago', 'Exited (137) 4 seconds ago');
  same('Exited (137) Less than a second ago', 'Exited (137) About a minute ago');
  same('Exited (0) 2 hours ago', 'Exited (0) 3 days ago');
  t.equal(inspectKey('exited', 'Exited (0) 5 seconds ago'), 'exited/Exited (0)');
  t.not(inspectKey('exited', 'Exited (0) 5 seconds ago'), inspectKey('exited', 'Exited (1) 5 seconds ago'), 'another exit code is another entry');
  t.not(inspectKey('exited', 'Exited (0) 5 seconds ago'), inspectKey('dead', 'Dead'), 'another state is another entry');
  t.equal(inspectKey('restarting', 'Restarting (1) Less than a second ago'), 'restarting/Restarting (1)');
  t.equal(inspectKey('removing', 'Removal In Progress'), 'removing/Removal In Progress');
  t.equal(inspectKey('created', undefined), 'created/');
});

t.test('live: a stopped container is not inspected again as docker\'s "N seconds ago" changes, but is for a fresh read', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const { docker } = await import('../../helpers/runtime.js');
  const id = runContainer('nw-model-exited', ['true']);
  t.teardown(() => removeContainer('nw-model-exited'));
  docker('wait', 'nw-model-exited');
  const { rt, inspects } = countingInspects(id);
  const first = (await rt.snapshot()).containers.find((c) => c.id === id);
  t.equal(first?.docker?.running, false);
  t.equal(inspects(), 1);
  // Two seconds later docker's status reads "Exited (0) 3 seconds ago" instead of "... 1 second ago".
  await new Promise((r) => setTimeout(r, 2100));
  rt.invalidate('another-container');
  const again = (await rt.snapshot()).containers.find((c) => c.id === id);
  t.equal(again?.docker?.exitCode, 0);
  t.equal(inspects(), 1, 'its inspect was kept across a snapshot 2 s later');
  // A fresh read (a confirmation; check and why have no events) never rests on the kept inspect.
  rt.invalidate('another-container');
  const fresh = (await rt.snapshot({ since: Date.now() })).containers.find((c) => c.id === id);
  t.equal(fresh?.docker?.exitCode, 0);
  t.equal(inspects(), 2, 'a fresh read inspects the stopped container again');
  docker('start', 'nw-model-exited');
  docker('wait', 'nw-model-exited');
  rt.invalidate(id); // its start and die events
  await rt.snapshot();
  t.equal(inspects(), 3, 'after its own events it is inspected again');
});

t.test('live: while docker\'s events are followed a fresh read keeps a stopped container\'s inspect; a fresh read is never served by a plain snapshot; an inspect overtaken by an event is not kept', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const { docker } = await import('../../helpers/runtime.js');
  const id = runContainer('nw-model-followed', ['true']);
  t.teardown(() => removeContainer('nw-model-followed'));
  docker('wait', 'nw-model-followed');
  const { rt, inspects } = countingInspects(id);
  rt.eventsFollowed = () => true;
  await rt.snapshot();
  t.equal(inspects(), 1);
  rt.invalidate('another-container');
  await rt.snapshot({ since: Date.now() });
  t.equal(inspects(), 1, 'its events would have dropped it: a fresh read keeps it');
  // A plain snapshot taken after `since` is not a fresh one.
  rt.eventsFollowed = () => false;
  rt.invalidate('another-container');
  const since = Date.now();
  await rt.snapshot();
  t.equal(inspects(), 1, 'the plain snapshot kept it');
  await rt.snapshot({ since });
  t.equal(inspects(), 2, 'the fresh read after it was read afresh, not served the plain one');
  // An inspect in flight when the container's event comes is answered but not kept.
  const real = rt.docker.inspect.bind(rt.docker);
  rt.docker.inspect = async (x: string) => {
    const v = await real(x);
    if (x === id) rt.invalidate(id);
    return v;
  };
  rt.invalidate(id);
  await rt.snapshot();
  rt.docker.inspect = real;
  let calls = 0;
  rt.docker.inspect = (x: string) => {
    if (x === id) calls += 1;
    return real(x);
  };
  rt.invalidate('another-container');
  await rt.snapshot();
  t.equal(calls, 1, 'the overtaken answer was not kept: the next snapshot inspects it again');
});

t.test('live: containerd\'s container list is kept between snapshots: new containers asked by id, deleted ones forgotten, listed whole for a fresh read', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const env = envFor('/');
  const rt = env.runtime as import('../../../agent/runtime/model.js').Runtimes;
  const calls = { list: 0, get: 0 };
  const client = rt.containerd;
  const list = client.containers.bind(client);
  const get = client.container.bind(client);
  client.containers = (ns: string) => ((calls.list += ns === 'moby' ? 1 : 0), list(ns));
  client.container = (ns: string, id: string) => ((calls.get += ns === 'moby' ? 1 : 0), get(ns, id));
  const known = async (id: string, opts: { since?: number } = {}) => (await rt.snapshot(opts)).containers.find((c) => c.id === id)?.containerd?.known === true;
  await rt.snapshot();
  t.equal(calls.list, 1, 'the first snapshot lists moby whole');
  const id = runContainer('nw-model-list', ['sleep', '300']);
  t.teardown(() => removeContainer('nw-model-list'));
  rt.invalidate(id); // its start event
  t.ok(await known(id), 'a new running container is in the model');
  t.same(calls, { list: 1, get: 1 }, 'asked by id (its task was new), not by listing the namespace again');
  rt.invalidate('another');
  t.ok(await known(id));
  t.same(calls, { list: 1, get: 1 }, 'kept: neither listed nor asked again');
  t.ok(await known(id, { since: Date.now() }), 'a fresh read');
  t.equal(calls.list, 2, 'a fresh read lists the namespace whole');
  removeContainer('nw-model-list');
  rt.forget(id, 'moby'); // its /containers/delete event
  rt.invalidate(id);
  t.notOk((await rt.snapshot()).containers.some((c) => c.id === id), 'a deleted container leaves the kept list');
  rt.invalidate(); // a gap in the events
  await rt.snapshot();
  t.equal(calls.list, 3, 'after a gap the namespace is listed whole');
});

t.test('live: a runtime that answered within 10 s is not probed again before a snapshot; one that refuses is down at once (its list says so; an error without a cause no longer breaks the snapshot)', async (t) => {
  if (!requireRuntime(t)) return;
  const env = envFor('/');
  const rt = env.runtime as import('../../../agent/runtime/model.js').Runtimes;
  const probes = { docker: 0, containerd: 0 };
  const ping = rt.docker.ping.bind(rt.docker);
  const version = rt.containerd.version.bind(rt.containerd);
  rt.docker.ping = () => (probes.docker++, ping());
  rt.containerd.version = () => (probes.containerd++, version());
  const first = await rt.snapshot();
  t.same(first.runtimes.map((r) => r.status), ['ok', 'ok']);
  t.same(probes, { docker: 1, containerd: 1 }, 'the first snapshot probes each runtime');
  for (let i = 0; i < 3; i++) {
    rt.invalidate();
    const again = await rt.snapshot();
    t.same(again.runtimes.map((r) => [r.status, r.version]), first.runtimes.map((r) => [r.status, r.version]), 'up, with the version it gave');
  }
  t.same(probes, { docker: 1, containerd: 1 }, 'three more snapshots: no probe (their own calls answered)');
  await rt.ping();
  t.same(probes, { docker: 2, containerd: 2 }, 'the runtime probe itself always asks');
  // A runtime whose socket refuses: the snapshot's own calls say so, without a probe.
  rt.docker.ping = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
  const containers = rt.docker.containers.bind(rt.docker);
  rt.docker.containers = () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED /var/run/docker.sock'), { code: 'ECONNREFUSED' }));
  rt.invalidate();
  const down = await rt.snapshot();
  t.equal(down.runtimes.find((r) => r.name === 'docker')?.status, 'down', 'a refused list is docker down, at once');
  rt.docker.containers = containers;
});

t.test('one container docker cannot inspect: the snapshot\'s timeout names the call still out (what kubelet\'s PLEG waits on too)', async (t) => {
  // dockerd's Engine API on a unix socket, as a stand-in: a real dockerd cannot be made to hang on one inspect.
  const http = await import('node:http');
  const { mkdtempSync, mkdirSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-inspect-'));
  mkdirSync(path.join(root, 'var/run'), { recursive: true });
  const ok = '1'.repeat(64);
  const stuck = '2'.repeat(64);
  const summary = (id: string, name: string) => ({ Id: id, Names: [name], Image: 'busybox', ImageID: 'sha256:x', State: 'running', Status: 'Up 1 minute', Labels: {}, Created: 1 });
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    if (url.endsWith('/_ping')) {
      res.writeHead(200, { 'api-version': '1.43' });
      return res.end('OK');
    }
    if (url.includes('/containers/json')) return res.end(JSON.stringify([summary(ok, '/web'), summary(stuck, '/stuck')]));
    if (url.includes(`/containers/${stuck}/json`)) return; // never answers
    res.writeHead(404);
    res.end('{"message":"No such container"}');
  });
  await new Promise<void>((r) => server.listen(path.join(root, 'var/run/docker.sock'), r));
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => {
      rmSync(root, { recursive: true, force: true });
      r();
    });
  }));
  const env = envFor(root, ['runtime.timeout=500ms']);
  const snap = await env.runtime.snapshot();
  const docker = snap.runtimes.find((r) => r.name === 'docker');
  t.equal(docker?.status, 'unresponsive');
  t.match(docker?.error, /^docker did not answer all of one snapshot's calls within 500 ms; still waiting on the inspect of container 222222222222 \(\/stuck\)$/);
  const { evaluateKubelet, kubelet } = await import('../../../collectors/kubelet.js');
  const { settingsFor } = await import('../../helpers/context.js');
  const now = Date.now();
  const [f] = evaluateKubelet({ healthz: 'ok', runtimeStuckSince: { docker: now - 60_000 }, node: { ready: { status: 'False', reason: 'KubeletNotReady', message: 'PLEG is not healthy: pleg was last seen active 3m0.5s ago; threshold is 3m0s' }, readAt: now } }, snap.runtimes, settingsFor(kubelet) as never, now);
  t.match(f?.message, /kubelet says "PLEG is not healthy.*docker unresponsive for 60 s \(docker did not answer all of one snapshot's calls within 500 ms; still waiting on the inspect of container 222222222222 \(\/stuck\)\)/, 'kubelet.pleg names the container');
});

t.test('live: containerd\'s snapshot dirs are kept only for containers that exist: dropped when one is deleted, pruned when a listing no longer has it, and a reused key is asked again', async (t) => {
  const { requireLive } = await import('../../helpers/live.js');
  const { copyToContainerd, ctrTry, TEST_IMAGE } = await import('../../helpers/runtime.js');
  if (!requireRuntime(t) || !requireLive(t, { commands: ['ctr'] })) return;
  ensureTestImage();
  const ref = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=snapdirs']);
  const ids = Array.from({ length: 4 }, (_, i) => `nw-snapdirs-${process.pid}-${i}`);
  // Containers without a task: a snapshot each, as a CRI container has between create and start.
  const create = (id: string) => t.equal(ctrTry('-n', 'k8s.io', 'containers', 'create', ref, id).code, 0, `ctr containers create ${id}`);
  const remove = (id: string) => ctrTry('-n', 'k8s.io', 'containers', 'rm', id);
  t.teardown(() => ids.forEach(remove));
  const rt = envFor('/').runtime as import('../../../agent/runtime/model.js').Runtimes;
  const upper = async (id: string) => (await rt.snapshot({ since: Date.now() })).containers.find((c) => c.id === id)?.storage.upperDir;
  const base = (await rt.snapshot({ since: Date.now() }), rt.snapshotDirsKept);
  ids.forEach(create);
  t.ok(await upper(ids[0]!), 'a new container gets its snapshot dirs');
  t.equal(rt.snapshotDirsKept, base + ids.length, 'one entry per container');
  // Deleted with their events delivered: each leaves at once.
  remove(ids[0]!);
  rt.forget(ids[0]!, 'k8s.io');
  t.equal(rt.snapshotDirsKept, base + ids.length - 1, "a container's /containers/delete drops its entry");
  // Deleted with their events missed: the next whole listing of the namespace drops theirs.
  for (const id of ids.slice(1, 3)) remove(id);
  await rt.snapshot({ since: Date.now() });
  t.equal(rt.snapshotDirsKept, base + 1, 'gone from the listing: gone from the cache (it does not grow with churn)');
  // The same id made again (`ctr run` reuses the id as the snapshot key): its own new dirs, not the old ones.
  const reused = ids[3]!;
  const before = await upper(reused);
  remove(reused);
  create(reused);
  const after = await upper(reused);
  const mounts = ctrTry('-n', 'k8s.io', 'snapshots', 'mounts', '/tmp/x', reused).stdout;
  t.ok(after && mounts.includes(after), `the new container's upper dir (${after}), as containerd has it now`);
  t.not(after, before, 'not the deleted container\'s dirs');
});
