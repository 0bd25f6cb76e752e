import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CONDITIONS, NodeExporter, conditionsDiffer, desiredConditions } from '../../../agent/exporters/kubernetes.js';
import { KubeClient, type NodeCondition } from '../../../agent/kube/client.js';
import { Runner } from '../../../agent/runner.js';
import { fanOut } from '../../../agent/daemon.js';
import { configSpec, type Config } from '../../../agent/config.js';
import type { AnyCollector } from '../../../collectors/types.js';
import type { Observation } from '../../../protocol/finding.js';
import { s } from '../../../protocol/schema.js';
import { envFor, quietLog } from '../../helpers/context.js';
import { FakeApiServer, jsonPatch, mergePatch, strategicMergePatch } from '../../helpers/fake-apiserver.js';
import { finding } from '../../helpers/findings.js';
import { until } from '../../helpers/processes.js';

const AGENT_RULES = [
  { verbs: ['get'], resources: ['nodes'] },
  { verbs: ['patch'], resources: ['nodes/status'] },
  { verbs: ['create'], resources: ['events'] },
];

/** A client of the local API server with the agent's token and RBAC. */
function agentClient(t: { teardown(fn: () => void): void }, api: FakeApiServer): KubeClient {
  api.grant('agent-token', 'system:serviceaccount:nodewarden:nodewarden-agent', AGENT_RULES);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-kube-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'token'), 'agent-token\n');
  return KubeClient.inCluster({ server: api.url, tokenFile: path.join(dir, 'token'), timeoutMs: 5000 });
}

t.test('the fake API server patches as the real one does', async (t) => {
  const node = { status: { conditions: [{ type: 'Ready', status: 'True' }, { type: 'A', status: 'False' }] } };
  t.same(strategicMergePatch(node, { status: { conditions: [{ type: 'A', status: 'True' }] } }), { status: { conditions: [{ type: 'Ready', status: 'True' }, { type: 'A', status: 'True' }] } }, 'strategic merge: conditions merge by type');
  t.same(mergePatch(node, { status: { conditions: [{ type: 'A', status: 'True' }] } }), { status: { conditions: [{ type: 'A', status: 'True' }] } }, 'JSON merge patch: lists replace');
  t.same(jsonPatch(node, [{ op: 'replace', path: '/status/conditions/1/status', value: 'Unknown' }]).status, { conditions: [{ type: 'Ready', status: 'True' }, { type: 'A', status: 'Unknown' }] });
});

t.test('desired conditions: one per family, True with the worst finding, transition time kept while unchanged', async (t) => {
  const now = '2026-11-22T10:00:00.000Z';
  const f = finding('n1', 'disk.eviction', '/var', 'critical');
  const first = desiredConditions([f], [], now);
  t.equal(first.length, CONDITIONS.length);
  const ev = first.find((c) => c.type === 'NodewardenDiskEviction')!;
  t.same([ev.status, ev.reason], ['True', 'DiskEviction']);
  t.equal(first.find((c) => c.type === 'NodewardenRuntimeDrift')!.status, 'False');
  const later = desiredConditions([f], first, '2026-11-22T10:05:00.000Z');
  t.equal(later.find((c) => c.type === 'NodewardenDiskEviction')!.lastTransitionTime, now, 'unchanged status keeps its transition time');
  t.notOk(conditionsDiffer(later, first), 'a heartbeat alone is not a reason to write');
  const stale: NodeCondition = { type: 'NodewardenLegacyCheck', status: 'True', reason: 'X', message: 'old', lastTransitionTime: now, lastHeartbeatTime: now };
  t.same(desiredConditions([], [stale], now).find((c) => c.type === 'NodewardenLegacyCheck')?.reason, 'NoLongerChecked');
  // Whatever order the findings come in, the worst one's message leads: critical, then warning, then info.
  const full = (sev: 'info' | 'warning' | 'critical', subject: string) => ({ ...finding('n1', 'disk.usage', subject, sev), message: `${sev} on ${subject}` });
  const lead = (fs: ReturnType<typeof full>[]) => desiredConditions(fs, [], now).find((c) => c.type === 'NodewardenDiskFull')!.message;
  t.match(lead([full('info', '/a'), full('warning', '/b')]), /^warning on \/b/, 'a warning leads over info');
  t.match(lead([full('warning', '/b'), full('info', '/a'), full('critical', '/c')]), /^critical on \/c \(and 2 more/, 'a critical leads over both');
});

// A runner whose one collector reports whatever `current` holds.
function setup(observations: () => Observation[]) {
  const collector: AnyCollector = { name: 'fake', description: 'fake', checks: [], conditions: {}, defaultIntervalMs: 1000, defaultTimeoutMs: 500, configSpec: s.object({}), collect: async () => ({ kind: 'ok', observations: observations(), data: null }) };
  const config = configSpec([collector]).check({ collectors: { fake: {} } }, '', []) as Config;
  config.node = 'n1';
  return new Runner({ collectors: [collector], config, env: envFor('/'), log: quietLog });
}

t.test('against a local API server: reconcile at start, follow findings, events, 409 retries', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  const ts = '2026-11-01T00:00:00Z';
  api.addNode('n1', [
    { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status', lastTransitionTime: ts, lastHeartbeatTime: ts },
    { type: 'NodewardenRuntimeDrift', status: 'True', reason: 'RuntimeDrift', message: 'left by an agent that died', lastTransitionTime: ts, lastHeartbeatTime: ts },
  ]);
  const client = agentClient(t, api);

  let current: Observation[] = [];
  const runner = setup(() => current);
  const exporter = new NodeExporter({ client, node: 'n1', runner, log: quietLog, events: true, eventNamespace: 'default', eventIntervalMs: 600_000, eventsPerMinute: 30 });
  fanOut(runner, [exporter], quietLog);
  await exporter.start();
  const cond = (type: string) => ((api.nodes.get('n1')!['status'] as { conditions: NodeCondition[] }).conditions).find((c) => c.type === type);
  t.equal(cond('NodewardenRuntimeDrift')?.status, 'False', 'a stale condition from an earlier agent is reconciled at start');
  t.equal(cond('Ready')?.status, 'True', "kubelet's conditions are untouched (strategic merge by type)");
  t.ok(api.requests.some((r) => r.method === 'PATCH' && r.contentType === 'application/strategic-merge-patch+json'));

  current = [{ check: 'disk.eviction', severity: 'critical', subject: '/var', message: 'kubelet is evicting pods: /var is past its threshold', evidence: {}, remedy: 'docker image prune -a --filter until=72h' }];
  await runner.runOnce();
  await exporter.sync();
  t.same([cond('NodewardenDiskEviction')?.status, cond('NodewardenDiskEviction')?.reason], ['True', 'DiskEviction']);
  t.match(cond('NodewardenDiskEviction')?.message, /kubelet is evicting pods/);
  // The Event's POST is its own round trip after the transition: wait for it rather than for a fixed time.
  await until(() => api.events.length >= 1, 30_000, 'the DiskEviction event');
  const ev = api.events.at(-1) as { reason: string; type: string; involvedObject: { kind: string; name: string; uid: string }; message: string };
  t.same([ev.reason, ev.type, ev.involvedObject.kind, ev.involvedObject.name, ev.involvedObject.uid], ['DiskEviction', 'Warning', 'Node', 'n1', 'uid-n1']);
  t.match(ev.message, /Next: docker image prune/);

  // kubelet writes at the same moment: two 409s, then success.
  api.conflictNext(2);
  current = [];
  await runner.runOnce();
  await exporter.sync();
  t.equal(cond('NodewardenDiskEviction')?.status, 'False', 'resolved after retrying past two conflicts');
  t.equal(exporter.stats.conflicts, 2);
  await until(() => api.events.some((e) => e['reason'] === 'DiskEvictionResolved'), 30_000, 'the resolution event');
  t.same((api.events.at(-1) as { reason: string; type: string }).reason, 'DiskEvictionResolved');
  exporter.stop();
});

t.test('missing RBAC is a logged error, never a crash; events are rate-limited', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.addNode('n1');
  api.grant('weak', 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }, { verbs: ['create'], resources: ['events'] }]);
  const client = new KubeClient({ server: api.url, token: 'weak', timeoutMs: 5000 });
  let current: Observation[] = [];
  const runner = setup(() => current);
  const warnings: string[] = [];
  const log = { ...quietLog, warn: (o: object) => warnings.push(JSON.stringify(o)) };
  const exporter = new NodeExporter({ client, node: 'n1', runner, log, events: true, eventNamespace: 'default', eventIntervalMs: 600_000, eventsPerMinute: 2 });
  fanOut(runner, [exporter], quietLog);
  await exporter.start();
  current = ['a', 'b', 'c'].map((x) => ({ check: 'disk.usage', severity: 'warning' as const, subject: `/${x}`, message: `/${x} is full`, evidence: {}, remedy: 'du' }));
  await runner.runOnce();
  await exporter.sync();
  // The third event was dropped at once; the two sent finish their POSTs.
  await until(() => exporter.stats.events >= 2, 30_000, 'two events written');
  t.ok(warnings.some((w) => /403.*cannot patch resource \\"nodes\/status\\"/.test(w)), 'the 403 is logged with the missing permission');
  t.equal(api.events.length, 2, 'three findings fired, two events within the per-minute limit');
  t.equal(exporter.stats.eventsDropped, 1);
  exporter.stop();
});

t.test('a failed write is retried and every condition resynchronised, without waiting for the next change', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.addNode('n1');
  // The RBAC is not there yet (a rollout in progress): the first write fails with 403.
  api.grant('tok', 'system:serviceaccount:nodewarden:nodewarden-agent', [{ verbs: ['get'], resources: ['nodes'] }, { verbs: ['create'], resources: ['events'] }]);
  const client = new KubeClient({ server: api.url, token: 'tok', timeoutMs: 5000 });
  const current: Observation[] = [{ check: 'runtime.drift', severity: 'critical', subject: 'c1', message: 'docker says running, the task is STOPPED', evidence: {}, remedy: 'drain' }];
  const runner = setup(() => current);
  const exporter = new NodeExporter({ client, node: 'n1', runner, log: quietLog, events: false, eventNamespace: 'default', eventIntervalMs: 600_000, eventsPerMinute: 30 });
  fanOut(runner, [exporter], quietLog);
  t.teardown(() => exporter.stop());
  await exporter.start();
  await runner.runOnce();
  await exporter.sync();
  t.ok(exporter.stats.errors >= 1, 'the write failed');
  api.grant('tok', 'system:serviceaccount:nodewarden:nodewarden-agent', AGENT_RULES);
  const cond = () => ((api.nodes.get('n1')!['status'] as { conditions?: NodeCondition[] }).conditions ?? []).find((c) => c.type === 'NodewardenRuntimeDrift');
  await until(() => cond()?.status === 'True', 30_000, 'the resync to write the condition').catch(() => undefined);
  t.equal(cond()?.status, 'True', 'the condition caught up with no new transition');
  t.ok(((api.nodes.get('n1')!['status'] as { conditions: NodeCondition[] }).conditions).filter((c) => c.type.startsWith('Nodewarden')).length >= 9, 'every condition written in the resync');
});

t.test("node-problem-detector's Event reasons; an OOM kill and a crash loop also get an Event on their Pod", async (t) => {
  const { eventReason, alsoOnPod, podEventFor } = await import('../../../agent/exporters/kubernetes.js');
  t.equal(eventReason({ check: 'kernel.oom', message: '' }), 'OOMKilling');
  t.equal(eventReason({ check: 'kernel.systemOom', message: '' }), 'OOMKilling');
  t.equal(eventReason({ check: 'kernel.hungTask', message: '' }), 'TaskHung');
  t.equal(eventReason({ check: 'kernel.fsError', message: 'EXT4-fs error (device loop0): ...' }), 'Ext4Error');
  t.equal(eventReason({ check: 'kernel.fsError', message: 'The kernel reports an ext4 error on loop0: ext4_lookup:1855: inode #2: comm ls: deleted inode referenced: 12' }), 'Ext4Error', "the kernel collector's own message");
  t.equal(eventReason({ check: 'kernel.fsError', message: 'The kernel warns about the ext4 filesystem on sda1: ext4_dx_add_entry:2461: Directory (ino: 1234) index full' }), 'Ext4Warning');
  t.equal(eventReason({ check: 'kernel.fsError', message: 'The kernel reports an xfs error on sdc1: Metadata corruption detected' }), 'KernelFsError');
  t.equal(eventReason({ check: 'kernel.oops', message: '' }), 'KernelOops');
  t.equal(eventReason({ check: 'kernel.netdevice', message: '' }), 'UnregisterNetDevice');
  t.equal(eventReason({ check: 'kernel.hardware', message: 'The hardware corrected a memory error (1 CE memory read error on DIMM#0)' }), 'MemoryReadError');
  t.equal(eventReason({ check: 'kernel.fsError', message: 'XFS (sdb1): Corruption detected' }), 'KernelFsError');
  t.equal(eventReason({ check: 'disk.eviction', message: '' }), 'DiskEviction', 'our own checks keep their names');
  const oom = { id: 'x', node: 'n1', check: 'kernel.oom', severity: 'warning', subject: 'c1', message: 'web (pod shop/web-1) was OOM-killed at its 16 MiB limit', evidence: {}, remedy: 'kubectl describe pod -n shop web-1', state: 'firing', firstSeen: '', lastSeen: '', workload: { containerId: 'c1', pod: 'web-1', namespace: 'shop', podUid: 'u1' } } as never;
  t.same(alsoOnPod(oom), { namespace: 'shop', name: 'web-1', uid: 'u1' });
  t.equal(alsoOnPod({ ...(oom as object), workload: { containerId: 'c1' } } as never), undefined, 'a container of no pod: the Node only');
  t.equal(alsoOnPod({ ...(oom as object), check: 'disk.usage' } as never), undefined);
  t.same(alsoOnPod({ ...(oom as object), check: 'kernel.hungTask' } as never), { namespace: 'shop', name: 'web-1', uid: 'u1' }, "a hung task in a pod's container: its Pod too");
  const ev = podEventFor(oom, { namespace: 'shop', name: 'web-1', uid: 'u1' }, 'n1', '2026-12-04T00:00:00Z') as { reason: string; type: string; involvedObject: { kind: string; name: string }; message: string };
  t.same([ev.reason, ev.type, ev.involvedObject.kind, ev.involvedObject.name], ['OOMKilling', 'Warning', 'Pod', 'web-1']);
  t.match(ev.message, /OOM-killed at its 16 MiB limit Next: kubectl describe pod/);

  // Through the exporter against the local API server: the Node's and the Pod's Events.
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.stop());
  api.addNode('n1', []);
  const client = agentClient(t, api);
  let current: Observation[] = [];
  const runner = setup(() => current);
  const exporter = new NodeExporter({ client, node: 'n1', runner, log: quietLog, events: true, eventNamespace: 'default', eventIntervalMs: 600_000, eventsPerMinute: 30 });
  fanOut(runner, [exporter], quietLog);
  await exporter.start();
  current = [{ check: 'kernel.oom', severity: 'warning', subject: 'c1', message: 'web (pod shop/web-1) was OOM-killed at its 16 MiB limit', evidence: {}, remedy: 'kubectl describe pod -n shop web-1', workload: { containerId: 'c1', pod: 'web-1', namespace: 'shop' } }];
  await runner.runOnce();
  await until(() => api.events.length >= 2, 30_000, 'the Node and Pod events');
  const kinds = api.events.map((e) => `${(e['involvedObject'] as { kind: string }).kind}:${e['reason'] as string}`);
  t.same(kinds.sort(), ['Node:OOMKilling', 'Pod:OOMKilling']);
  exporter.stop();
});
