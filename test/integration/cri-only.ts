// @live quiet: uses the real machine through test/helpers/live.ts or runtime.ts; it asserts a calm node (no false finding under churn, load and timing), so it runs after the unit files
// A CRI-only node (issue 17.4): dockerd stopped, its data root present and empty (docker installed once,
// or left behind by the move off dockershim), containers churning in containerd's k8s.io. Not "docker is
// down", and drift still checks k8s.io, finding a real drift there.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { drift } from '../../collectors/drift.js';
import { runtime } from '../../collectors/runtime.js';
import { startChurn } from '../../bench/churn.js';
import { contextFor, envFor } from '../helpers/context.js';
import { CONTAINERD_SOCK, copyToContainerd, DOCKER, ensureTestImage, killBehindShimsBack, ourDaemonPid, requireRuntime, startRuntime, TEST_IMAGE } from '../helpers/runtime.js';
import { requireLive } from '../helpers/live.js';
import { eventually } from '../helpers/processes.js';

/** A host root where containerd's socket is the real one and docker has only an empty data root. */
function criOnlyRoot(): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-cri-only-'));
  symlinkSync('/proc', path.join(root, 'proc'));
  symlinkSync('/sys', path.join(root, 'sys'));
  mkdirSync(path.join(root, 'run/containerd'), { recursive: true });
  symlinkSync(CONTAINERD_SOCK, path.join(root, 'run/containerd/containerd.sock'));
  mkdirSync(path.join(root, 'var/run'), { recursive: true });
  mkdirSync(path.join(root, 'var/lib/docker/containers'), { recursive: true });
  mkdirSync(path.join(root, 'var/lib/docker/image/overlay2'), { recursive: true });
  return root;
}

const CRI_LABELS = ['io.kubernetes.pod.name=cri-drift', 'io.kubernetes.pod.namespace=default', 'io.kubernetes.container.name=work', 'io.kubernetes.pod.uid=00000000-0000-4000-8000-0000000000cd', 'io.cri-containerd.kind=container'];

t.test('live: a CRI-only node with an empty docker data root and dockerd stopped: no runtime.down, drift checks k8s.io under churn and finds a real k8s.io drift', async (t) => {
  if (!requireRuntime(t)) return;
  if (!requireLive(t, { commands: ['ctr', 'perl'] })) return;
  const dockerd = ourDaemonPid('dockerd');
  if (dockerd === undefined && !requireLive(t, { paths: ['/nonexistent: dockerd was not started by scripts/start-test-runtime.sh, so this test will not stop it'] })) return;
  ensureTestImage();
  const criImage = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=cri-only']);
  const root = criOnlyRoot();
  const id = `nw-cri-drift-${process.pid}`;
  let release: (() => void) | undefined;
  const churn = { stop: async () => {} };
  t.teardown(async () => {
    release?.();
    await churn.stop();
    spawnSync('ctr', ['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
    spawnSync('ctr', ['-n', 'k8s.io', 'task', 'rm', '-f', id]);
    spawnSync('ctr', ['-n', 'k8s.io', 'container', 'rm', id]);
    rmSync(root, { recursive: true, force: true });
    startRuntime();
  });

  const t0 = Date.now();
  const mark = (what: string) => t.comment(`${what} at +${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // dockerd stopped for real (the test's own, by its pid), so the real node has no docker either.
  process.kill(dockerd!, 'SIGTERM');
  t.ok(await eventually(() => ourDaemonPid('dockerd') === undefined, 60_000), 'dockerd stopped');
  mark('dockerd stopped');

  const env = envFor(root);
  const first = await drift.collect(contextFor(drift, root, { env }));
  const leakedBefore = new Set(first.kind === 'ok' ? first.observations.filter((o) => o.check === 'runtime.orphan').map((o) => o.subject) : []);
  Object.assign(churn, startChurn({ docker: DOCKER, image: TEST_IMAGE, criImage, dockerLoops: 0, criLoops: 2, prefix: 'nw-cri' }));
  const looks: string[] = [];
  const driftLooks: string[] = [];
  const end = Date.now() + 12_000;
  while (Date.now() < end) {
    const r = await runtime.collect(contextFor(runtime, root, { env }));
    looks.push(r.kind === 'ok' ? r.observations.map((o) => `${o.check}:${o.subject}`).join(',') || 'ok' : `${r.kind}: ${r.reason}`);
    const d = await drift.collect(contextFor(drift, root, { env }));
    driftLooks.push(d.kind === 'ok' ? `checked ${d.data.checked}, ${d.observations.length} findings` : `${d.kind}: ${d.reason}`);
    // Orphaned shims leaked on this shared machine before the test (runtime.orphan) are not churn's doing.
    if (d.kind === 'ok') for (const o of d.observations) if (o.check === 'runtime.drift' || !leakedBefore.has(o.subject)) t.fail(`drift fired under churn: ${o.message}`);
  }
  t.comment(`runtime: ${[...new Set(looks)].join(' | ')}; drift: ${[...new Set(driftLooks)].join(' | ')}`);
  t.same([...new Set(looks)], ['ok'], 'the runtime collector says nothing: docker is not expected here, containerd answers');
  t.ok(driftLooks.every((l) => l.startsWith('checked ')), 'drift ran every time (not unavailable)');
  mark(`${looks.length} looks under churn done`);

  // A real drift in k8s.io: the process dies behind its shim's back, containerd still says RUNNING.
  execFileSync('ctr', ['-n', 'k8s.io', 'run', '-d', ...CRI_LABELS.flatMap((l) => ['--label', l]), criImage, id, 'sleep', '600'], { stdio: 'ignore', timeout: 30_000 });
  const line = execFileSync('ctr', ['-n', 'k8s.io', 'task', 'ls'], { encoding: 'utf8' }).split('\n').find((l) => l.startsWith(`${id} `));
  const pid = Number(line?.trim().split(/\s+/)[1]);
  t.ok(pid > 1, `the task runs with pid ${pid}`);
  release = (await killBehindShimsBack(pid)).release;
  // From here on the test is about finding, not about staying quiet under churn: confirmation's settle
  // window is 1 s (a look with a suspect waits out 4 s instead of 8).
  const FAST = ['runtime.settle=1s'];
  const fast = envFor(root, FAST);
  let found: { message: string; severity: string } | undefined;
  await eventually(async () => {
    const d = await drift.collect(contextFor(drift, root, { env: fast }));
    found = d.kind === 'ok' ? d.observations.find((o) => o.subject === id) : undefined;
    return found !== undefined;
  }, 60_000);
  t.match(found, { severity: 'critical', message: new RegExp(`task of .* is RUNNING with pid ${pid}, but that process is a zombie`) }, 'the k8s.io drift is found with dockerd gone');
  mark('the k8s.io drift found');

  // Evidence that docker belongs here makes its missing socket an outage again.
  mkdirSync(path.join(root, 'var/lib/kubelet'), { recursive: true });
  writeFileSync(path.join(root, 'var/lib/kubelet/config.yaml'), 'kind: KubeletConfiguration\ncontainerRuntimeEndpoint: "unix:///run/cri-dockerd.sock"\n');
  const dockerExpected = envFor(root, FAST);
  const expected = await runtime.collect(contextFor(runtime, root, { env: dockerExpected }));
  const down = expected.kind === 'ok' ? expected.observations.find((o) => o.subject === 'docker') : undefined;
  t.match(down, { check: 'runtime.down', evidence: { error: /kubelet's runtime endpoint is unix:\/\/\/run\/cri-dockerd.sock/ } }, "kubelet's endpoint naming docker: docker's missing socket is runtime.down");
  // ...and docker being down does not stop the k8s.io checks: the drift is still found.
  const d = await drift.collect(contextFor(drift, root, { env: dockerExpected }));
  t.match(d, { kind: 'ok', data: { notCompared: /docker down/ } }, 'drift runs with docker down, saying what it left out');
  t.ok(d.kind === 'ok' && d.observations.some((o) => o.subject === id), 'and still finds the k8s.io drift');
  mark('docker expected: checked');
});
