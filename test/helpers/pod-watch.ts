// The API server stand-in with one agent's pod watcher on it, as the agent runs it: what the pod-level
// integration tests (crash loops, ephemeral storage) start from. Stopped in the test's teardown.
import type { Test } from 'tap';
import { KubeClient } from '../../agent/kube/client.js';
import { PodWatcher } from '../../agent/kube/pods.js';
import { quietLog } from './context.js';
import { FakeApiServer } from './fake-apiserver.js';

export const AGENT_TOKEN = 'agent-token-0123456789abcdef';

export async function podWatch(t: Test, node: string): Promise<{ api: FakeApiServer; watcher: PodWatcher }> {
  const api = new FakeApiServer();
  await api.start();
  api.grant(AGENT_TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get', 'list', 'watch'], resources: ['pods'] }]);
  const watcher = new PodWatcher({ client: new KubeClient({ server: api.url, token: AGENT_TOKEN, timeoutMs: 2000 }), node, log: quietLog, initialBackoffMs: 20, maxBackoffMs: 100 });
  t.teardown(async () => {
    await watcher.stop();
    await api.stop();
  });
  return { api, watcher };
}
