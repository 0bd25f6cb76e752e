import t from 'tap';
import { hasLabel, isSandbox, prune, repository } from '../../../agent/actions/prune.js';
import type { Runtimes } from '../../../agent/runtime/model.js';
import type { PruneProgress } from '../../../protocol/wire.js';
import { envFor } from '../../helpers/context.js';
import { copyToContainerd, ctrTry, dockerTry, makeLabelledImage, requireRuntime } from '../../helpers/runtime.js';

t.test('names, sandbox images, label selectors', async (t) => {
  t.equal(repository('registry.k8s.io/pause:3.9'), 'registry.k8s.io/pause');
  t.equal(repository('localhost:5000/app@sha256:abc'), 'localhost:5000/app');
  t.equal(repository('localhost:5000/app'), 'localhost:5000/app', 'a registry port is not a tag');
  t.ok(isSandbox(['registry.k8s.io/pause:3.9'], ['pause']));
  t.ok(isSandbox(['pause:3.1'], ['pause']));
  t.notOk(isSandbox(['example.com/paused-app:1'], ['pause']));
  t.ok(hasLabel({ a: '1' }, 'a'));
  t.ok(hasLabel({ a: '1' }, 'a=1'));
  t.notOk(hasLabel({ a: '1' }, 'a=2'));
  t.ok(hasLabel(null, ''));
});

const DOCKER_IMAGES = ['nwprune/old:1', 'nwprune/used:1', 'nwprune/pause:3.9', 'nwprune/pinned:1', 'nwprune/new:1'];

t.test('live: prune through the Docker Engine API and containerd: only the old unused image goes', async (t) => {
  if (!requireRuntime(t)) return;
  const cleanup = () => {
    dockerTry('rm', '-f', 'nwprune-c');
    ctrTry('-n', 'k8s.io', 'containers', 'rm', 'nwprune-c');
    for (const img of DOCKER_IMAGES) {
      dockerTry('rmi', '-f', img);
      ctrTry('-n', 'k8s.io', 'images', 'rm', `docker.io/${img}`);
    }
  };
  cleanup();
  t.teardown(cleanup);
  const ids: Record<string, string> = {};
  for (const img of DOCKER_IMAGES.slice(0, 4)) ids[img] = makeLabelledImage(img);
  for (const img of DOCKER_IMAGES.slice(0, 4)) copyToContainerd(img, 'k8s.io', img === 'nwprune/pinned:1' ? ['nodewarden-test=prune', 'io.cri-containerd.pinned=pinned'] : ['nodewarden-test=prune']);
  // The used image: a stopped docker container, and a containerd container without a task.
  t.equal(dockerTry('create', '--network', 'none', '--name', 'nwprune-c', 'nwprune/used:1', '/id.txt').code, 0);
  t.equal(ctrTry('-n', 'k8s.io', 'containers', 'create', 'docker.io/nwprune/used:1', 'nwprune-c', '/id.txt').code, 0);
  await new Promise((r) => setTimeout(r, 2500));
  ids['nwprune/new:1'] = makeLabelledImage('nwprune/new:1');
  copyToContainerd('nwprune/new:1');

  const env = envFor('/');
  const opts = { untilMs: 2000, sandboxImages: ['pause'], containerdNamespaces: ['k8s.io'], label: 'nodewarden-test=prune' };
  const dry: PruneProgress[] = [];
  const dryResult = await prune(env.runtime as Runtimes, { ...opts, dryRun: true }, (p) => dry.push(p));
  // Pinning is the CRI's (containerd's) idea: docker has no pinned images, so its old unused copy goes.
  const expected = (state: string) => [['docker.io/nwprune/old:1', state], ['nwprune/old:1', state], ['nwprune/pinned:1', state]];
  t.same(dry.map((p) => [p.image, p.state]).sort(), expected('would-remove'), 'dry run lists the old unused images; not the used, newer, pause or (in containerd) pinned ones');
  t.equal(dryResult.removed, 0);
  t.ok(dry.every((p) => p.size > 0), 'with sizes');
  for (const img of DOCKER_IMAGES) t.equal(dockerTry('image', 'inspect', img).code, 0, `dry run removed nothing: ${img} is still there`);
  t.match(ctrTry('-n', 'k8s.io', 'images', 'ls', '-q').stdout, /nwprune\/old:1/);

  const real: PruneProgress[] = [];
  const result = await prune(env.runtime as Runtimes, { ...opts, dryRun: false }, (p) => real.push(p));
  t.same(real.map((p) => [p.image, p.state]).sort(), expected('removed'));
  t.equal(result.ok, true, result.errors.join('; '));
  t.equal(result.removed, 3);
  t.ok(result.bytes > 0);
  t.match(result.runtime, /docker/);
  t.match(result.runtime, /containerd\/k8s.io/);
  t.not(dockerTry('image', 'inspect', 'nwprune/old:1').code, 0, 'old unused image gone from docker');
  const ctrImages = ctrTry('-n', 'k8s.io', 'images', 'ls', '-q').stdout;
  t.notMatch(ctrImages, /nwprune\/old:1/, 'and from containerd');
  for (const keep of ['nwprune/used:1', 'nwprune/pause:3.9', 'nwprune/new:1']) {
    t.equal(dockerTry('image', 'inspect', keep).code, 0, `docker kept ${keep}`);
    t.match(ctrImages, new RegExp(keep.replace(/[./]/g, '\\$&')), `containerd kept ${keep}`);
  }
  t.match(ctrImages, /nwprune\/pinned:1/, 'containerd kept the pinned image');
});
