import t from 'tap';
import { envFor } from '../../helpers/context.js';
import { ensureTestImage, removeContainer, requireRuntime, runContainer } from '../../helpers/runtime.js';
import { overlayDirs, workloadFromLabels } from '../../../agent/runtime/model.js';

t.test('overlay options and Kubernetes labels', async (t) => {
  t.same(overlayDirs(['index=off', 'workdir=/w', 'upperdir=/u', 'lowerdir=/l1:/l2']), { upperDir: '/u', lowerDirs: ['/l1', '/l2'] });
  t.same(workloadFromLabels('abc', 'k8s_app_web', { 'io.kubernetes.pod.name': 'web-1', 'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.container.name': 'app', 'io.kubernetes.pod.uid': 'u1' }), {
    containerId: 'abc', containerName: 'app', pod: 'web-1', namespace: 'shop', podUid: 'u1',
  });
});

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
