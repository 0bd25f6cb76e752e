// kubelet's word that its image GC failed, read from the API server (the local stand-in, real protocol),
// explained by the agent's own measurement of a real container's writable layer: disk.imageGc fires on
// kubelet's ImageGCFailed although the filesystem is nowhere near the 85 % the local condition needs,
// starts the du measurement for it, then names the container's writable layer with its bytes; a report
// older than the lookback says nothing. The imagefs is docker's data root alone: a host root whose
// mountinfo makes /var/lib/docker a filesystem of its own, a read-only bind mount of the real one (dockerd
// is shared: its data root cannot be a loop filesystem, and walking this machine's whole root filesystem
// is du's own live test). Waits are generous bounds, not speed claims.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../agent/config.js';
import { createFillersAccess, measureNode } from '../../agent/actions/du.js';
import { KubeClient } from '../../agent/kube/client.js';
import { NodeView } from '../../agent/kube/node.js';
import { disk } from '../../collectors/disk.js';
import { contextFor, envFor, quietLog } from '../helpers/context.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { until } from '../helpers/processes.js';
import { dockerTry, ensureTestImage, inspectField, removeContainer, requireRuntime, runContainer } from '../helpers/runtime.js';

const NODE = 'test-node';
const TOKEN = 'agent-token-imagegc-0123456789';
const MiB = 1024 * 1024;
const DOCKER_ROOT = '/var/lib/docker';
const UID = '7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f';
const LABELS = ['--label', 'io.kubernetes.pod.namespace=nwgc', '--label', 'io.kubernetes.pod.name=writer-0', '--label', 'io.kubernetes.container.name=app', '--label', `io.kubernetes.pod.uid=${UID}`];

t.test("live: kubelet's ImageGCFailed fires disk.imageGc below the local threshold, starts the measurement, and names a real container's writable layer with its bytes", async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const name = 'nw-gcev-writer';
  removeContainer(name);
  t.teardown(() => removeContainer(name));
  runContainer(name, ['sh', '-c', 'dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null && touch /done && exec sleep 600'], LABELS);
  await until(() => dockerTry('exec', name, 'test', '-e', '/done').code === 0, 60_000, 'the container wrote 64 MiB into its writable layer');
  const upper = inspectField(name, '{{.GraphDriver.Data.UpperDir}}');
  const layer = upper.replace(/\/diff$/, '');

  // The host root: /var/lib/docker is its only disk filesystem (its device as the kernel numbers it, so
  // the walk stays on it); docker's socket; kubelet's root dir, so imagefs is evaluated.
  const root = mkdtempSync(path.join(os.tmpdir(), 'nw-gcev-'));
  const dockerAt = path.join(root, DOCKER_ROOT);
  for (const d of ['proc/1', 'var/lib/kubelet', 'var/run', DOCKER_ROOT]) mkdirSync(path.join(root, d), { recursive: true });
  symlinkSync('/var/run/docker.sock', path.join(root, 'var/run/docker.sock'));
  const majMin = execFileSync('findmnt', ['-n', '-o', 'MAJ:MIN', '-T', DOCKER_ROOT], { encoding: 'utf8' }).trim();
  writeFileSync(path.join(root, 'proc/1/mountinfo'), `1 0 0:99 / / rw - tmpfs tmpfs rw\n2 1 ${majMin} / ${DOCKER_ROOT} rw,relatime - ext4 /dev/nw-gcev rw\n`);
  execFileSync('mount', ['--bind', '-o', 'ro', DOCKER_ROOT, dockerAt]);
  t.teardown(() => {
    // Never remove the tree while docker's data root is still bound into it.
    if (spawnSync('umount', [dockerAt]).status === 0 || spawnSync('mountpoint', ['-q', dockerAt]).status !== 0) rmSync(root, { recursive: true, force: true });
  });
  t.match(execFileSync('findmnt', ['-n', '-o', 'OPTIONS', dockerAt], { encoding: 'utf8' }), /^ro[,\s]/, 'the bind mount is read-only');

  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }, { verbs: ['create', 'list'], resources: ['events'] }]);
  api.addNode(NODE);
  const view = new NodeView({ client: new KubeClient({ server: api.url, token: TOKEN, timeoutMs: 5000 }), node: NODE, log: quietLog, pollMs: 1000, gcEventsMaxAgeMs: 200 });
  view.start();
  t.teardown(() => view.stop());

  const env = envFor(root);
  const cfg = loadConfig({ node: NODE, hostRoot: root });
  let measured = 0;
  const fillers = createFillersAccess(() => (measured++, measureNode(env, cfg, { timeoutMs: 30_000, maxEntries: 2_000_000, threads: 2 })));
  const imageGc = async () => {
    const r = await disk.collect({ ...contextFor(disk, root, { env }), kube: view, fillers });
    t.equal(r.kind, 'ok');
    return r.kind === 'ok' ? r.observations.filter((f) => f.check === 'disk.imageGc') : [];
  };
  const listedSince = async (n: number) => until(() => (view.kubeletGcFailures(), view.stats.gcLists > n), 20_000, "this Node's Events listed");

  await listedSince(0);
  t.same(await imageGc(), [], `docker's filesystem is ${execFileSync('df', ['--output=pcent', DOCKER_ROOT], { encoding: 'utf8' }).split('\n')[1]?.trim()} used and kubelet said nothing: nothing`);
  t.equal(measured, 0, 'not measured either');

  const event = (reason: string, message: string, minutesAgo: number) => ({
    metadata: { name: `${NODE}.${reason}.${minutesAgo}`, namespace: 'default' },
    involvedObject: { kind: 'Node', name: NODE, uid: NODE },
    reason,
    message,
    source: { component: 'kubelet', host: NODE },
    firstTimestamp: new Date(Date.now() - (minutesAgo + 45) * 60_000).toISOString(),
    lastTimestamp: new Date(Date.now() - minutesAgo * 60_000).toISOString(),
    count: 14,
    type: 'Warning',
  });
  const words = 'Failed to garbage collect required amount of images. Attempted to free 6012954214 bytes, but only found 0 bytes eligible to free.';
  api.addEvent(event('FreeDiskSpaceFailed', words, 1));
  api.addEvent(event('ImageGCFailed', words, 1));
  await listedSince(view.stats.gcLists);
  const [first, ...more] = await imageGc();
  t.equal(more.length, 0, 'one finding');
  t.equal(first?.subject, DOCKER_ROOT);
  t.equal(first?.severity, 'critical', 'kubelet found nothing of 5.6G to free');
  // Near midnight UTC the first report is of the day before: its time then carries the date ("Dec 4 23:15").
  t.match(first?.message, /kubelet \((ImageGCFailed|FreeDiskSpaceFailed)\): wanted to free 5\.6G, freed 0 at (?:[A-Z][a-z]{2} \d{1,2} )?\d\d:\d\d UTC \(14 times since (?:[A-Z][a-z]{2} \d{1,2} )?\d\d:\d\d UTC\)\. Where the space is: being measured now/, `kubelet's words, before the measurement: ${first?.message}`);
  t.equal(measured, 1, "kubelet's report started the measurement, with the filesystem under the 85 % threshold");

  await fillers.idle();
  const [found] = await imageGc();
  t.equal(measured, 1, 'paced: not measured again within fillersEvery');
  const rows = (found?.evidence['topConsumers'] ?? []) as { kind: string; bytes: number; path: string; pod: string | null; container: string | null }[];
  const row = rows.find((r) => r.path === layer);
  t.ok(row, `the container's writable layer is among the largest: ${found?.message}`);
  if (row) {
    const du = Number(execFileSync('du', ['-sxb', upper], { encoding: 'utf8' }).split('\t')[0]);
    t.match(row, { kind: 'writable-layer', pod: 'nwgc/writer-0', container: 'app' });
    t.ok(row.bytes >= 64 * MiB, `at least the 64 MiB written (${row.bytes})`);
    t.ok(Math.abs(row.bytes - du) <= du * 0.05, `within 5 % of du -sb of its upper dir (${row.bytes} vs ${du})`);
    t.match(found?.message, new RegExp(`writable layer of nwgc/writer-0/app \\(6\\dM\\)`), 'named in the message with its size');
  }
  t.match(found?.message, /kubelet \((ImageGCFailed|FreeDiskSpaceFailed)\): wanted to free 5\.6G, freed 0/, "beside kubelet's words");
  t.match(found?.remedy, /kubectl -n nwgc describe pod writer-0/);

  // Twenty minutes later, nothing new from kubelet: its GC has not failed since.
  api.events.length = 0;
  api.addEvent(event('ImageGCFailed', words, 20));
  await listedSince(view.stats.gcLists);
  t.same(await imageGc(), [], 'a report older than the 15 min lookback says nothing');
});
