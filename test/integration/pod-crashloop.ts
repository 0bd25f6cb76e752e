// pod.crashLoop end to end: kubelet's status updates (restartCount, lastState.terminated) written to the
// fake API server, seen by the real pod watcher over its watch, handed to the pods collector as ctx.pods
// the way the agent does (createPodAccess), run after run with its own data as ctx.previous.
// Waits are generous bounds (20 s), not speed claims.
import t, { type Test } from 'tap';
import { createPodAccess, diagnoseSettings } from '../../agent/actions/diagnose.js';
import { loadConfig } from '../../agent/config.js';
import { pods, type PodsData } from '../../collectors/pods.js';
import type { Observation } from '../../protocol/finding.js';
import { contextFor, envFor } from '../helpers/context.js';
import { podWatch } from '../helpers/pod-watch.js';
import { until } from '../helpers/processes.js';

const NODE = 'test-node';
const NS = 'shop';
type Json = Record<string, unknown>;

const probe = { httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 };
const spec = (name: string, memory: string, liveness?: Json): Json => ({
  restartPolicy: 'Always',
  containers: [{ name, image: `registry.example.com/shop/${name}:1.0`, resources: { requests: { memory: '64Mi' }, limits: { memory } }, ...(liveness ? { livenessProbe: liveness } : {}) }],
});
/** status.containerStatuses as kubelet writes it: the whole array, replaced by each merge patch. */
const statuses = (name: string, restartCount: number, last?: { reason: string; exitCode: number }): Json => {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    status: {
      containerStatuses: [{
        name, image: `registry.example.com/shop/${name}:1.0`, containerID: `containerd://${name}${restartCount}`, ready: true, started: true, restartCount,
        state: { running: { startedAt: now } },
        lastState: last ? { terminated: { ...last, startedAt: now, finishedAt: now, containerID: `containerd://${name}${restartCount - 1}` } } : {},
      }],
    },
  };
};

async function setup(t: Test) {
  const { api, watcher } = await podWatch(t, NODE);
  const env = envFor('/');
  const access = createPodAccess(() => watcher.state(), env, diagnoseSettings(loadConfig({ sets: [], node: NODE })));
  const ctx = { ...contextFor(pods, '/', { env }), node: NODE, pods: access };
  let previous: PodsData | undefined;
  /** One run of the collector, as the runner does it: the last run's data handed back. */
  const collect = async (): Promise<Observation[]> => {
    const r = await pods.collect({ ...ctx, previous: previous as never });
    if (r.kind !== 'ok') throw new Error(`pods collector: ${r.kind}`);
    previous = r.data as PodsData;
    return r.observations;
  };
  /** Kubelet restarted the container: the watcher has seen restartCount n. */
  const restart = async (pod: string, container: string, n: number, last: { reason: string; exitCode: number }) => {
    api.updatePod(NS, pod, statuses(container, n, last));
    await until(() => {
      const st = watcher.state();
      return 'pods' in st && st.pods.find((p) => p.name === pod)?.containers[0]?.restartCount === n;
    }, 20_000, `${pod} restartCount ${n} through the watch`);
  };
  /** The watcher has the pod (it came through the watch). */
  const seen = (pod: string) => until(() => {
    const st = watcher.state();
    return 'pods' in st && st.pods.some((p) => p.name === pod);
  }, 20_000, `${pod} through the watch`);
  watcher.start();
  t.ok(await watcher.whenSynced(20_000), 'the watcher has listed the pods');
  await until(() => api.openWatches() === 1, 20_000, 'the watch');
  return { api, collect, restart, seen };
}

const crashLoops = (obs: Observation[]) => obs.filter((o) => o.check === 'pod.crashLoop');

t.test('OOMKilled twice within the window: pod.crashLoop names the memory limit; once is not a loop', async (t) => {
  const { api, collect, restart, seen } = await setup(t);
  api.addPod(NS, 'cart-api-1', NODE, 'Running', { spec: spec('api', '256Mi', probe), ...statuses('api', 0) });
  api.addPod(NS, 'search-1', NODE, 'Running', { spec: spec('search', '2Gi', probe), ...statuses('search', 0) });
  await seen('cart-api-1');
  await seen('search-1');
  t.same(await collect(), [], 'never restarted: nothing');
  const oom = { reason: 'OOMKilled', exitCode: 137 };

  await restart('cart-api-1', 'api', 1, oom);
  await restart('search-1', 'search', 1, oom);
  let obs = await collect();
  t.same(crashLoops(obs), [], 'one restart each: no crash loop');
  t.match(obs.find((o) => o.check === 'pod.restarts'), { severity: 'info', message: /^2 containers on this node restarted in the last 10 minutes/ });

  await restart('cart-api-1', 'api', 2, oom);
  obs = await collect();
  const loops = crashLoops(obs);
  t.same(loops.map((o) => o.subject), ['shop/cart-api-1/api'], 'the second restart makes the loop; search-1 restarted once and stays quiet');
  t.match(loops[0]?.message, /last terminated OOMKilled \(exit code 137\): it was killed at its memory limit of 256Mi/);
  t.equal(loops[0]?.remedy, 'kubectl logs -p -n shop cart-api-1 -c api --tail=100; kubectl describe pod -n shop cart-api-1');
  t.equal(loops[0]?.severity, 'warning');

  obs = await collect();
  t.same(crashLoops(obs).map((o) => o.subject), ['shop/cart-api-1/api'], 'still firing on the next run, no new restart counted');
  t.equal(crashLoops(obs)[0]?.evidence['restartsInWindow'], 2);

  api.removePod(NS, 'cart-api-1');
  await until(async () => crashLoops(await collect()).length === 0, 20_000, 'the pod gone from the watch');
  t.pass('the pod is gone: the crash loop is resolved');
});

t.test('exit 137 without OOMKilled, twice, with a liveness probe: the probe is named', async (t) => {
  const { api, collect, restart, seen } = await setup(t);
  api.addPod(NS, 'ledger-0', NODE, 'Running', { spec: spec('ledger', '1Gi', probe), ...statuses('ledger', 0) });
  await seen('ledger-0');
  t.same(await collect(), [], 'never restarted: nothing');
  const killed = { reason: 'Error', exitCode: 137 };
  await restart('ledger-0', 'ledger', 1, killed);
  t.same(crashLoops(await collect()), [], 'one restart');
  await restart('ledger-0', 'ledger', 2, killed);
  const [loop] = crashLoops(await collect());
  t.equal(loop?.subject, 'shop/ledger-0/ledger');
  t.match(loop?.message, /last terminated Error \(exit code 137\): killed by SIGKILL: its liveness probe \(HTTP GET :8080\/healthz every 10s, timeout 1s, 3 failures\) failing, or a signal/);
});
