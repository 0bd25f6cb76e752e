// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import path from 'node:path';
import { loadConfig } from '../../agent/config.js';
import { createEnvironment } from '../../agent/environment.js';
import { exec } from '../../agent/host/exec.js';
import { requireRuntime } from '../helpers/runtime.js';

const VM = path.resolve('test/fixtures/host/debian12-vm');
const envAt = (hostRoot: string, sets: string[] = []) => createEnvironment(loadConfig({ hostRoot, sets, node: 'test-node' }));

t.test('host access, runtimes and attrs all look under --host-root', async (t) => {
  const env = envAt(VM);
  t.equal(env.host.root, VM);
  t.same((await env.host.pids()).sort((a, b) => a - b), [1, 5038], "the captured tree's processes, not this machine's");
  t.equal(env.exec, exec, 'commands only through the one exec module');
  t.ok(env.attrs, 'the native attrs module is loaded (built in build/)');
  t.equal(env.pods, undefined, 'pods are the agent\'s to add when it has an API server');
  const snap = await env.runtime.snapshot();
  t.same(snap.runtimes.map((r) => [r.name, r.status]), [['docker', 'absent'], ['containerd', 'absent']], 'no runtime sockets in the captured tree: absent, not down');
  t.same(snap.containers, []);
  env.runtime.close?.();
});

t.test('live: at / the runtimes are the ones running here, on the configured sockets', async (t) => {
  if (!requireRuntime(t)) return;
  const env = envAt('/');
  t.teardown(() => env.runtime.close?.());
  const states = await env.runtime.ping();
  t.same(states.map((r) => [r.name, r.status]), [['docker', 'ok'], ['containerd', 'ok']]);
  t.same(states.map((r) => r.socket), ['/var/run/docker.sock', '/run/containerd/containerd.sock'], 'sockets as the host knows them');

  const moved = envAt('/', ['runtime.dockerSocket=/nonexistent/docker.sock']);
  t.teardown(() => moved.runtime.close?.());
  const docker = (await moved.runtime.ping()).find((r) => r.name === 'docker');
  t.not(docker?.status, 'ok', 'a configured socket is the one asked');
});
