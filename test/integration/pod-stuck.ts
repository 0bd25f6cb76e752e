// pod.stuck end to end: the agent daemon against the local API server and the real dockerd/containerd,
// with containers carrying the pod's Kubernetes labels; the Event lands on the Pod; `nodewarden why`.
// @live: uses the real machine through test/helpers/live.ts or runtime.ts, so it runs serially
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../agent/config.js';
import { startAgent, type AgentDaemon } from '../../agent/daemon.js';
import type { Finding } from '../../protocol/finding.js';
import { quietLog } from '../helpers/context.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { TOKENS, freePort, runAsync, startAggregator, until, writeTokens } from '../helpers/processes.js';
import { dockerTry, ensureTestImage, makeImmutableContainer, requireRuntime } from '../helpers/runtime.js';

const TOKEN = 'agent-token-0123456789abcdef';
const NODE = 'test-node';
const NS = 'nwtest';
const RULES = [
  { verbs: ['get'], resources: ['nodes'] },
  { verbs: ['patch'], resources: ['nodes/status'] },
  { verbs: ['create'], resources: ['events'] },
  { verbs: ['get', 'list', 'watch'], resources: ['pods'] },
];
const ago = (s: number) => new Date(Date.now() - s * 1000);
const labels = (uid: string, name: string) => ['--label', `io.kubernetes.pod.uid=${uid}`, '--label', `io.kubernetes.pod.name=${name}`, '--label', `io.kubernetes.pod.namespace=${NS}`, '--label', 'io.kubernetes.container.name=app'];

t.test('live: pod.stuck through the agent: chattr +i, finalizer, grace period, unknown cause; Events on the Pods; nodewarden why', async (t) => {
  if (!requireRuntime(t)) return;
  ensureTestImage();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-podstuck-'));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, TOKEN);
  const api = new FakeApiServer();
  await api.start();
  api.grant(TOKEN, 'system:serviceaccount:nodewarden:nodewarden-agent', RULES);
  api.addNode(NODE);

  // web-1: deleted a while ago; its container's writable layer holds an immutable file, so removal failed.
  const web1 = await makeImmutableContainer('nw-stuck-web', labels('uid-web-1', 'web-1'));
  t.teardown(() => web1.cleanup());
  const { locked } = web1;
  t.not(web1.remove().code, 0, 'docker rm -f fails, as kubelet\'s removal does');
  api.addPod(NS, 'web-1', NODE, 'Running', { spec: { terminationGracePeriodSeconds: 30 } });
  api.markDeleted(NS, 'web-1', { graceSeconds: 30, at: ago(120) });
  // fin-1: a finalizer nobody removes. calm-1: deleted, still within its grace period. ghost-1: stuck, no cause here.
  api.addPod(NS, 'fin-1', NODE, 'Running', { metadata: { finalizers: ['example.com/cleanup'], ownerReferences: [{ kind: 'Job', name: 'backup' }] } });
  api.markDeleted(NS, 'fin-1', { graceSeconds: 30, at: ago(120) });
  api.addPod(NS, 'calm-1', NODE, 'Running');
  api.markDeleted(NS, 'calm-1', { graceSeconds: 600 });
  api.addPod(NS, 'ghost-1', NODE, 'Running');
  api.markDeleted(NS, 'ghost-1', { graceSeconds: 30, at: ago(120) });
  api.addPod(NS, 'elsewhere', 'other-node', 'Running');
  api.markDeleted(NS, 'elsewhere', { graceSeconds: 30, at: ago(120) });

  const sets = ['kubernetes.enabled=true', `kubernetes.server=${api.url}`, `kubernetes.tokenFile=${tokenFile}`, "agent.listen=''", 'collectors.pods.terminatingMargin=10s', 'collectors.pods.interval=2s', 'collectors.pods.timeout=2s'];
  for (const c of ['disk', 'sockstat', 'sockets', 'runtime', 'immutable', 'mounts', 'kernel', 'pids', 'conntrack', 'pressure']) sets.push(`collectors.${c}.enabled=false`);
  // Shims leaked on this machine by other tests' daemon kills are real runtime.orphan findings, and
  // their Events would use up the node's Event budget before this test's resolution Event.
  sets.push('collectors.drift.orphanMinAge=3650d');
  let agent: AgentDaemon | undefined;
  t.teardown(async () => {
    await agent?.stop();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const aggPort = await freePort();
  const agg = await startAggregator(aggPort, writeTokens(dir));
  t.teardown(() => {
    agg.kill('SIGTERM');
  });
  agent = await startAgent(loadConfig({ sets, node: NODE }), { log: quietLog, aggregator: { url: `ws://127.0.0.1:${aggPort}`, token: TOKENS.agent } });
  const stuck = () => agent!.runner.active().filter((f) => f.check === 'pod.stuck');
  const by = (name: string): Finding | undefined => stuck().find((f) => f.subject === `${NS}/${name}`);
  await until(() => Boolean(by('web-1') && by('fin-1') && by('ghost-1')), 30_000, 'pod.stuck findings');

  const web = by('web-1')!;
  t.equal(web.severity, 'critical');
  t.match(web.message, new RegExp(`^${locked.replace(/[/.]/g, '\\$&')} in container nw-stuck-web's writable layer is immutable \\(i-\\).*pod ${NS}/web-1 is stuck Terminating`), 'leads with the file');
  t.match(web.remedy, new RegExp(`^chattr -i ${locked.replace(/[/.]/g, '\\$&')}`));
  t.same(web.workload, { pod: 'web-1', namespace: NS, podUid: 'uid-web-1' });
  t.equal((web.evidence['walk'] as unknown[]).length, 6, 'the whole walk in the evidence');

  const fin = by('fin-1')!;
  t.match(fin.message, /^finalizer example.com\/cleanup is still set.*until example.com removes it \(the pod is owned by Job\/backup\)/);
  t.match(fin.remedy, /patch pod fin-1 --type=merge/);

  const ghost = by('ghost-1')!;
  t.match(ghost.message, /found no cause on this node for pod nwtest\/ghost-1.*ruled out finalizers, immutable or append-only files, mounts held in other namespaces/, 'says what was ruled out');
  t.notOk(by('calm-1'), 'a pod within its grace period has no finding');
  t.notOk(by('elsewhere'), 'another node\'s pod is not ours');

  // The Event on the Pod says the same as the finding.
  await until(() => api.events.some((e) => (e['involvedObject'] as { name: string }).name === 'web-1'), 10_000, 'the Pod event');
  const ev = api.events.find((e) => (e['involvedObject'] as { name: string }).name === 'web-1')!;
  t.same(ev['involvedObject'], { apiVersion: 'v1', kind: 'Pod', namespace: NS, name: 'web-1', uid: 'uid-web-1' });
  t.equal(ev['reason'], 'NodewardenStuck');
  t.equal(ev['type'], 'Warning');
  t.equal((ev['metadata'] as { namespace: string }).namespace, NS, 'in the pod\'s namespace');
  t.ok(String(ev['message']).startsWith(web.message) && String(ev['message']).includes(`chattr -i ${locked}`), 'the same cause and command');
  t.notOk(api.events.some((e) => (e['involvedObject'] as { name: string }).name === 'calm-1'), 'no Event for the pod within its grace period');

  // `nodewarden why --local`, from a terminal on this node.
  const why = await runAsync(['why', 'web-1', '-n', NS, '--local', '--node', NODE, '--set', `kubernetes.server=${api.url}`, '--set', `kubernetes.tokenFile=${tokenFile}`, '--set', 'collectors.pods.terminatingMargin=10s']);
  t.equal(why.code, 2, `why exits 2 for a stuck pod (${why.stderr.trim()})`);
  t.match(why.stdout, /FOUND\s+'?\/var\/lib\/docker/);
  t.match(why.stdout, new RegExp(`next: chattr -i ${locked.replace(/[/.]/g, '\\$&')}`));
  const calm = await runAsync(['why', 'calm-1', '-n', NS, '--local', '--json', '--node', NODE, '--set', `kubernetes.server=${api.url}`, '--set', `kubernetes.tokenFile=${tokenFile}`]);
  t.equal(calm.code, 0, 'within its grace period: exit 0');
  t.match(JSON.parse(calm.stdout), { pod: `${NS}/calm-1`, stuck: false });
  t.equal((await runAsync(['why', 'nope', '-n', NS, '--local', '--node', NODE, '--set', `kubernetes.server=${api.url}`, '--set', `kubernetes.tokenFile=${tokenFile}`])).code, 3, 'no such pod: 3');
  t.equal((await runAsync(['why', 'web-1', '-n', NS, '--local', '--node', NODE])).code, 3, 'no API server: 3, unknown');

  // `nodewarden why` from any terminal, through the aggregator with a tail token.
  const remote = ['--aggregator', `http://127.0.0.1:${aggPort}`];
  await until(async () => (await runAsync(['why', 'web-1', '-n', NS, ...remote], { NODEWARDEN_TOKEN: TOKENS.tail })).code === 2, 15_000, 'the finding at the aggregator');
  const viaAgg = await runAsync(['why', 'web-1', '-n', NS, ...remote, '--json'], { NODEWARDEN_TOKEN: TOKENS.tail });
  t.equal(viaAgg.code, 2, 'why through the aggregator: 2, stuck');
  t.equal((JSON.parse(viaAgg.stdout) as { finding: Finding }).finding.message, web.message, 'the same diagnosis');
  const calmAgg = await runAsync(['why', 'calm-1', '-n', NS, ...remote], { NODEWARDEN_TOKEN: TOKENS.tail });
  t.equal(calmAgg.code, 0, 'not stuck: 0');
  t.match(calmAgg.stdout, /nwtest\/calm-1: not stuck/);
  t.equal((await runAsync(['why', 'web-1', '-n', NS, '--aggregator', 'http://127.0.0.1:1'], { NODEWARDEN_TOKEN: TOKENS.tail })).code, 3, 'aggregator unreachable: 3');

  // chattr -i, kubelet's removal goes through, the pod goes away: resolved.
  execFileSync('chattr', ['-i', locked]);
  t.equal(dockerTry('rm', '-f', 'nw-stuck-web').code, 0, 'the removal succeeds after chattr -i');
  api.removePod(NS, 'web-1');
  // fin-1's controller finishes: the finalizer goes, and with it the pod.
  api.updatePod(NS, 'fin-1', { metadata: { finalizers: null } });
  api.removePod(NS, 'fin-1');
  await until(() => !by('web-1') && !by('fin-1'), 30_000, 'resolution');
  t.ok(by('ghost-1'), 'the pod stuck for an unseen cause stays');
  // The Event is written after the finding resolves (its POST is a round trip of its own): wait for it.
  const resolvedEvent = () => api.events.some((e) => (e['involvedObject'] as { name: string }).name === 'web-1' && e['reason'] === 'NodewardenStuckResolved');
  await until(resolvedEvent, 10_000, 'the resolution Event').catch(() => undefined);
  t.ok(resolvedEvent(), 'the resolution is an Event too');

  // Without an API server the feature reports no data and the rest of the agent is unchanged.
  await agent.stop();
  agent = await startAgent(loadConfig({ sets: ["agent.listen=''", 'collectors.pods.interval=2s', 'collectors.pods.timeout=2s', ...sets.filter((s) => s.endsWith('enabled=false'))], node: NODE }), { log: quietLog, aggregator: { url: `ws://127.0.0.1:${aggPort}`, token: TOKENS.agent } });
  await agent.runner.runOnce(['pods']);
  t.match(agent.runner.statuses().find((s) => s.name === 'pods'), { status: 'no-data', detail: /no API server configured/ });
  // Asked through the aggregator, an agent that cannot see pods is not taken to mean "not stuck".
  let blind: { code: number | null; stdout: string } = { code: null, stdout: '' };
  await until(async () => (blind = await runAsync(['why', 'ghost-1', '-n', NS, ...remote], { NODEWARDEN_TOKEN: TOKENS.tail })).code === 3, 15_000, 'the blind agent\'s status at the aggregator').catch(() => undefined);
  t.equal(blind.code, 3, `no agent watches pods: why exits 3, unknown (${blind.stdout.trim()})`);
  t.match(blind.stdout, new RegExp(`nwtest/ghost-1: unknown\\. No agent watches pods.*${NODE} \\(pods no-data: no API server configured`));
});
