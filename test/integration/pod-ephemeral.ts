// @live: the native du walk on this machine's disk and a real docker container's writable layer
// pod.ephemeral end to end: pods with local-storage limits served by the API server stand-in, seen by the
// real pod watcher, measured with the native walk in a kubelet tree on this machine (an emptyDir filled
// toward its sizeLimit) and in a real container's writable layer (labelled as the pod's container, as the
// CRI labels it), judged run after run with the collector's own data handed back as ctx.previous.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPodAccess, diagnoseSettings } from '../../agent/actions/diagnose.js';
import { loadConfig } from '../../agent/config.js';
import { pods, type PodsData } from '../../collectors/pods.js';
import type { Observation } from '../../protocol/finding.js';
import { contextFor, envFor } from '../helpers/context.js';
import { podWatch } from '../helpers/pod-watch.js';
import { until } from '../helpers/processes.js';
import { ensureTestImage, removeContainer, requireRuntime, runContainer, inspectField } from '../helpers/runtime.js';
import { execFileSync } from 'node:child_process';

const NODE = 'test-node';
const MiB = 2 ** 20;

async function setup(t: Test) {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-ephemeral-'));
  const kubelet = path.join(root, 'kubelet');
  const logs = path.join(root, 'pods-logs');
  mkdirSync(logs, { recursive: true });
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const { api, watcher } = await podWatch(t, NODE);
  const sets = [`collectors.pods.kubeletRootDir=${kubelet}`, `collectors.pods.podLogsDir=${logs}`];
  const env = envFor('/', sets);
  t.ok(env.walker, 'the native du walk is built');
  const access = createPodAccess(() => watcher.state(), env, diagnoseSettings(loadConfig({ sets, node: NODE })));
  let clock = Date.now();
  const ctx = { ...contextFor(pods, '/', { env, sets }), node: NODE, pods: access, now: () => clock };
  let previous: PodsData | undefined;
  /** One run, `advance` ms after the last, as the runner does it: the last run's data handed back. */
  const collect = async (advance = 30_000): Promise<Observation[]> => {
    clock += advance;
    const r = await pods.collect({ ...ctx, previous: previous as never });
    if (r.kind !== 'ok') throw new Error(`pods collector: ${r.kind}`);
    previous = r.data as PodsData;
    return r.observations.filter((o) => o.check === 'pod.ephemeral');
  };
  const seen = (pod: string) => until(() => {
    const st = watcher.state();
    return 'pods' in st && st.pods.some((p) => p.name === pod);
  }, 20_000, `${pod} through the watch`);
  const emptyDir = (uid: string, volume: string) => {
    const dir = path.join(kubelet, 'pods', uid, 'volumes', 'kubernetes.io~empty-dir', volume);
    mkdirSync(dir, { recursive: true });
    return dir;
  };
  /** Writes `mib` MiB of real blocks (not sparse: du counts allocated bytes, as kubelet does). */
  const fill = (file: string, mib: number) => writeFileSync(file, Buffer.alloc(mib * MiB, 7));
  watcher.start();
  t.ok(await watcher.whenSynced(20_000), 'the watcher has listed the pods');
  return { api, collect, seen, emptyDir, fill, previous: () => previous };
}

t.test('live: an emptyDir filled toward its sizeLimit warns, then critical with its rate, and clears once emptied; a pod without limits never fires', async (t) => {
  const { api, collect, seen, emptyDir, fill, previous } = await setup(t);
  api.addPod('data', 'ingest-3', NODE, 'Running', { spec: { containers: [{ name: 'app', image: 'x' }], volumes: [{ name: 'cache', emptyDir: { sizeLimit: '20Mi' } }] } });
  api.addPod('data', 'free-1', NODE, 'Running', { spec: { containers: [{ name: 'app', image: 'x' }], volumes: [{ name: 'cache', emptyDir: {} }] } });
  await seen('ingest-3');
  await seen('free-1');
  const cache = emptyDir('uid-ingest-3', 'cache');
  fill(path.join(emptyDir('uid-free-1', 'cache'), 'big'), 64);
  fill(path.join(cache, 'a'), 8);
  t.same(await collect(), [], '8 MiB of 20: quiet; 64 MiB in a pod without a limit: quiet');
  t.same(Object.keys(previous()?.ephemeral ?? {}), ['uid-ingest-3'], 'only the limited pod was measured');

  fill(path.join(cache, 'b'), 9);
  let [f] = await collect();
  t.equal(f?.severity, 'warning', '17 MiB of 20 (85 %): a warning');
  t.match(f?.message, /^Pod data\/ingest-3 uses 17M of emptyDir cache's 20M sizeLimit \(8[45]%\), growing 18M\/min/);
  t.match(f?.remedy, `du -sh '${cache}'`);
  t.same(f?.workload, { pod: 'ingest-3', namespace: 'data', podUid: 'uid-ingest-3' });
  const measured = Number(f?.evidence['usedBytes']);
  const du = Number(execFileSync('du', ['-sB1', cache], { encoding: 'utf8' }).split('\t')[0]);
  t.ok(Math.abs(measured - du) <= 64 * 1024, `the walk's bytes match du -sB1 of the emptyDir (${measured} vs ${du})`);

  fill(path.join(cache, 'c'), 2);
  [f] = await collect(60_000);
  t.equal(f?.severity, 'critical', '19 MiB of 20 (95 %): critical');
  t.match(f?.message, /growing 2\.0M\/min \(the limit in about 1 min\)/, 'the rate from the two samples a minute apart');

  rmSync(path.join(cache, 'b'));
  rmSync(path.join(cache, 'c'));
  t.same(await collect(), [], 'emptied to 8 MiB: resolved');
});

t.test("live: a real container's writable layer against its ephemeral-storage limit, named with the layer and the pod", async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const { api, collect, seen } = await setup(t);
  const name = `nw-ephemeral-${process.pid}`;
  t.teardown(() => removeContainer(name));
  api.addPod('data', 'writer-0', NODE, 'Running', { spec: { containers: [{ name: 'app', image: 'x', resources: { limits: { 'ephemeral-storage': '40Mi' } } }] } });
  await seen('writer-0');
  const labels = ['io.kubernetes.pod.uid=uid-writer-0', 'io.kubernetes.pod.name=writer-0', 'io.kubernetes.pod.namespace=data', 'io.kubernetes.container.name=app'].flatMap((l) => ['--label', l]);
  runContainer(name, ['sh', '-c', 'dd if=/dev/urandom of=/data.bin bs=1M count=36 2>/dev/null; touch /done; sleep 600'], labels);
  const upper = inspectField(name, '{{.GraphDriver.Data.UpperDir}}');
  await until(() => execFileSync('ls', [upper]).toString().includes('done'), 30_000, 'the container wrote 36 MiB');
  const [f] = await collect();
  t.equal(f?.severity, 'warning', '36 MiB of 40 (90 %): a warning');
  t.match(f?.message, /^Pod data\/writer-0 uses 3[67]M of container app's 40M ephemeral-storage limit/);
  t.match(JSON.stringify(f?.evidence['consumers']), upper, 'the writable layer measured is the container\'s upper dir');
  removeContainer(name);
  t.same(await collect(), [], 'the container gone (its layer with it): resolved');
});
