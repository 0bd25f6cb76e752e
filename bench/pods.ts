// Bench: the agent's memory with 1,000 pods on its node. Two `nodewarden agent` processes side by side
// for SECONDS (default 120), every collector at its default interval: one without an API server, one
// watching 1,000 realistic pods (about 6 KB of JSON each) on a local API server (the test helper, on
// loopback) under churn: a status update every 200 ms, a pod deleted and one added every 2 s, 10 pods
// stuck Terminating (diagnosed every cycle), and the watch expired (410 Gone, a full re-list) every
// 30 s (NW_PODS_RELIST=SECONDS, 0 for none). Peak RSS (VmHWM) and CPU from /proc, against the 80 MiB budget.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpuSeconds } from './footprint.js';
import { ROOT } from './util.js';

const NODE = 'bench-node';
const TOKEN = 'bench-agent-token-0123456789';

const status = (pid: number, key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

/** A Pod as kubelet and the controllers leave it: managed fields, env, annotations, statuses. */
export function realisticPod(i: number): Record<string, unknown> {
  const env = Array.from({ length: 20 }, (_, k) => ({ name: `SETTING_${k}`, value: `value-${i}-${k}-${'x'.repeat(16)}` }));
  const container = (name: string) => ({ name, image: `registry.example.com/team/${name}:1.${i % 50}.0`, env, ports: [{ containerPort: 8080, protocol: 'TCP' }], resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } }, volumeMounts: [{ name: 'data', mountPath: '/data' }, { name: 'kube-api-access', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }] });
  const cstatus = (name: string) => ({ name, containerID: `containerd://${i.toString(16).padStart(8, '0')}${'ab'.repeat(28)}`, image: 'x', imageID: `sha256:${'cd'.repeat(32)}`, ready: true, restartCount: 0, started: true, state: { running: { startedAt: '2026-11-20T00:00:00Z' } }, lastState: {} });
  return {
    metadata: {
      uid: `00000000-0000-0000-0000-${i.toString().padStart(12, '0')}`,
      labels: { app: `svc-${i % 40}`, 'pod-template-hash': '7d9f8c6b5', team: 'payments', tier: 'backend' },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-11-20T00:00:00Z', 'prometheus.io/scrape': 'true', 'checksum/config': 'f'.repeat(64), 'kubernetes.io/psp': 'restricted' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `svc-${i % 40}-7d9f8c6b5`, uid: 'u', controller: true, blockOwnerDeletion: true }],
      managedFields: [{ manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:containers': { 'k:{"name":"app"}': { '.': {}, 'f:env': {}, 'f:image': {} } } } } }, { manager: 'kubelet', operation: 'Update', apiVersion: 'v1', subresource: 'status', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { 'f:conditions': {}, 'f:containerStatuses': {}, 'f:podIP': {} } } }],
    },
    spec: { terminationGracePeriodSeconds: 30, containers: [container('app'), container('sidecar')], volumes: [{ name: 'data', emptyDir: {} }, { name: 'kube-api-access', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3607 } }] } }], serviceAccountName: 'default', tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }] },
    status: { startTime: '2026-11-20T00:00:00Z', podIP: `10.0.${i >> 8}.${i & 255}`, conditions: ['Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => ({ type, status: 'True', lastTransitionTime: '2026-11-20T00:00:00Z' })), containerStatuses: [cstatus('app'), cstatus('sidecar')] },
  };
}

/** The DaemonSet's NODE_OPTIONS (manifests/agent-daemonset.yaml). */
const DAEMONSET_NODE_OPTIONS = '--max-semi-space-size=2';

function startAgent(extra: string[], nodeOptions = DAEMONSET_NODE_OPTIONS): ChildProcess {
  return spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'agent', '--node', NODE, '--set', 'logLevel=warn', '--set', "agent.listen=''", ...extra], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_OPTIONS: nodeOptions } });
}

/** The parts of the test suite's local API server (test/helpers/fake-apiserver.ts) this bench drives. */
interface ApiServer {
  url: string;
  pods: Map<string, unknown>;
  events: Record<string, unknown>[];
  requests: { path: string }[];
  start(): Promise<string>;
  stop(): Promise<void>;
  grant(token: string, user: string, rules: { verbs: string[]; resources: string[] }[]): void;
  addNode(name: string): void;
  addPod(namespace: string, name: string, node: string, phase: string, extra: Record<string, unknown>): unknown;
  updatePod(namespace: string, name: string, patch: Record<string, unknown>): unknown;
  markDeleted(namespace: string, name: string, opts: { graceSeconds: number; at: Date }): unknown;
  removePod(namespace: string, name: string): void;
  compact(): void;
}

export async function benchPods(opts: { seconds?: number; pods?: number } = {}): Promise<string> {
  const seconds = opts.seconds ?? Number(process.env['NW_PODS_SECONDS'] ?? 120);
  const count = opts.pods ?? 1000;
  // Loaded by URL, not imported: the image build has no test/ (.dockerignore) and compiles bench/ all the same.
  const helper = new URL('../test/helpers/fake-apiserver.js', import.meta.url).href;
  const { FakeApiServer } = (await import(helper)) as { FakeApiServer: new () => ApiServer };
  const api = new FakeApiServer();
  await api.start();
  api.grant(TOKEN, 'bench', [{ verbs: ['get', 'list', 'watch'], resources: ['pods'] }, { verbs: ['get'], resources: ['nodes'] }, { verbs: ['patch'], resources: ['nodes/status'] }, { verbs: ['create'], resources: ['events'] }]);
  api.addNode(NODE);
  for (let i = 0; i < count; i++) api.addPod('bench', `pod-${i}`, NODE, 'Running', realisticPod(i));
  for (let i = 0; i < 10; i++) api.markDeleted('bench', `pod-${i}`, { graceSeconds: 30, at: new Date(Date.now() - 600_000) });
  const podBytes = JSON.stringify([...api.pods.values()]).length;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-bench-pods-'));
  writeFileSync(path.join(dir, 'token'), TOKEN);
  const procs: ChildProcess[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    const kube = ['--set', 'kubernetes.enabled=true', '--set', `kubernetes.server=${api.url}`, '--set', `kubernetes.tokenFile=${path.join(dir, 'token')}`];
    const without = startAgent([]);
    const withPods = startAgent(kube);
    const defaultV8 = startAgent(kube, '');
    procs.push(without, withPods, defaultV8);
    let next = count;
    timers.push(setInterval(() => {
      const n = 10 + Math.floor(Math.random() * (next - 10));
      if (api.pods.has(`bench/pod-${n}`)) api.updatePod('bench', `pod-${n}`, { status: { conditions: [{ type: 'Ready', status: Math.random() < 0.5 ? 'True' : 'False', lastTransitionTime: new Date().toISOString() }] } });
    }, 200));
    timers.push(setInterval(() => {
      api.removePod('bench', `pod-${10 + Math.floor(Math.random() * (next - 10))}`);
      api.addPod('bench', `pod-${next}`, NODE, 'Running', realisticPod(next));
      next++;
    }, 2000));
    const relist = Number(process.env['NW_PODS_RELIST'] ?? 30);
    if (relist > 0) timers.push(setInterval(() => api.compact(), relist * 1000));
    const cpu0 = procs.map((p) => cpuSeconds(p.pid!));
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const rows = [
      { name: 'nodewarden agent, no API server', p: without, i: 0 },
      { name: `nodewarden agent, ${count} pods watched`, p: withPods, i: 1 },
      { name: `the same without NODE_OPTIONS (V8's default young generation)`, p: defaultV8, i: 2 },
    ].map(({ name, p, i }) => ({ name, peak: status(p.pid!, 'VmHWM') / 1024, rss: status(p.pid!, 'VmRSS') / 1024, mc: ((cpuSeconds(p.pid!) - cpu0[i]!) / seconds) * 1000 }));
    const lists = api.requests.filter((r) => r.path === '/api/v1/pods').length;
    const stuckEvents = api.events.filter((e) => (e['involvedObject'] as { kind: string }).kind === 'Pod').length;
    const lines = [
      `${count} pods on the node (${(podBytes / 1024 / 1024).toFixed(1)} MiB of Pod JSON at the API server), ${seconds} s, agents side by side with every collector at its default interval and the DaemonSet's NODE_OPTIONS=${DAEMONSET_NODE_OPTIONS} unless said otherwise:`,
      '',
      '| process | peak RSS | RSS at the end | average CPU |',
      '| --- | --- | --- | --- |',
      ...rows.map((r) => `| ${r.name} | ${r.peak.toFixed(0)} MiB | ${r.rss.toFixed(0)} MiB | ${r.mc.toFixed(1)} millicores |`),
      '',
      `Pods cost ${(rows[1]!.peak - rows[0]!.peak).toFixed(1)} MiB of peak RSS; budget 80 MiB: ${rows[1]!.peak <= 80 ? 'within' : 'OVER'}. ${lists} list/watch requests (${relist > 0 ? `watch expired, so a full re-list, every ${relist} s` : 'no forced re-list'}), ${stuckEvents} Events on the 10 stuck pods from the two watching agents.`,
    ];
    return lines.join('\n');
  } finally {
    for (const t of timers) clearInterval(t);
    for (const p of procs) p.kill('SIGTERM');
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
