import t from 'tap';
import { readFileSync } from 'node:fs';
import { describeEviction, evaluateEphemeral, evaluateRestarts, limitUses, podStuckObservation, pods, storageRoots, stuckState, terminationMeaning, trackRestarts, type PodsData, type RestartHistory, type StorageConsumer } from '../../collectors/pods.js';
import type { DiagnosisStep, PodAccess, PodContainerStatus, PodInfo, PodStorageLimits, RuntimeContainer } from '../../collectors/types.js';
import { toPodInfo } from '../../agent/kube/pods.js';
import type { Observation } from '../../protocol/finding.js';
import { contextFor } from '../helpers/context.js';

const CFG = { terminatingMargin: 60_000, waitingFor: 600_000, waitingReasons: ['ContainerCreating', 'CreateContainerError'] };
const NOW = Date.parse('2026-11-22T10:00:00Z');
const pod = (extra: Partial<PodInfo> = {}): PodInfo => ({ uid: 'u1', namespace: 'shop', name: 'web-1', finalizers: [], owners: ['ReplicaSet/web'], containers: [], volumes: [], phase: 'Running', ...extra });

t.test('stuck: Terminating past deletionTimestamp (deletion + grace) plus the margin; not within it', async (t) => {
  t.equal(stuckState(pod(), NOW, CFG), undefined, 'a running pod is not stuck');
  t.equal(stuckState(pod({ deletionTimestamp: '2026-11-22T09:59:30Z', deletionGracePeriodSeconds: 30 }), NOW, CFG), undefined, '30 s past its deadline: still within the 1 min margin');
  t.equal(stuckState(pod({ deletionTimestamp: '2026-11-22T10:00:20Z', deletionGracePeriodSeconds: 30 }), NOW, CFG), undefined, 'within its grace period');
  const s = stuckState(pod({ deletionTimestamp: '2026-11-22T09:58:00Z', deletionGracePeriodSeconds: 30 }), NOW, CFG);
  t.same(s, { kind: 'terminating', since: '2026-11-22T09:58:00Z', overdueMs: 60_000 });
});

t.test('stuck: a container waiting to be created or started longer than waitingFor; image pulls and crash loops are not the node\'s', async (t) => {
  const waiting = (reason: string, startTime: string) => pod({ phase: 'Pending', startTime, containers: [{ name: 'app', state: 'waiting', reason }] });
  t.same(stuckState(waiting('ContainerCreating', '2026-11-22T09:40:00Z'), NOW, CFG), { kind: 'waiting', since: '2026-11-22T09:40:00Z', overdueMs: 600_000, container: 'app', reason: 'ContainerCreating' });
  t.equal(stuckState(waiting('ContainerCreating', '2026-11-22T09:55:00Z'), NOW, CFG), undefined, '5 minutes is not yet 10');
  t.equal(stuckState(waiting('ImagePullBackOff', '2026-11-22T09:00:00Z'), NOW, CFG), undefined);
  t.equal(stuckState(waiting('CrashLoopBackOff', '2026-11-22T09:00:00Z'), NOW, CFG), undefined);
  const restarted = pod({ startTime: '2026-11-20T00:00:00Z', containers: [{ name: 'app', state: 'waiting', reason: 'CreateContainerError', finishedAt: '2026-11-22T09:58:00Z' }] });
  t.equal(stuckState(restarted, NOW, CFG), undefined, 'waiting counts from the last finish, not the pod\'s start');
});

const step = (cause: DiagnosisStep['cause'], found: boolean, summary: string, remedy?: string): DiagnosisStep => ({ cause, checked: true, found, summary, ...(remedy ? { remedy } : {}), facts: {} });

t.test('the finding leads with the cause, carries the whole walk, and holds no clock in message or remedy', async (t) => {
  const p = pod({ deletionTimestamp: '2026-11-22T09:58:00Z', deletionGracePeriodSeconds: 30 });
  const st = stuckState(p, NOW, CFG)!;
  const walk = [step('finalizers', false, 'no finalizers are set'), step('immutable', true, "'/x/diff/data/locked' in container app's writable layer is immutable (i-)", "chattr -i '/x/diff/data/locked'"), step('mount-held', true, 'held', 'nsenter ...'), step('drift', false, 'agree'), step('runtime', false, 'ok'), step('volumes', false, 'none')];
  const o = podStuckObservation(p, st, { steps: walk, containers: [{ id: 'c1', name: 'app', state: 'dead' }] });
  t.equal(o.check, 'pod.stuck');
  t.equal(o.subject, 'shop/web-1');
  t.equal(o.severity, 'critical');
  t.match(o.message, /^'\/x\/diff\/data\/locked' in container app's writable layer is immutable \(i-\): pod shop\/web-1 is stuck Terminating \(due to be gone at 2026-11-22T09:58:00Z, grace period 30s\)\. Also found: mounts held in other namespaces/);
  t.equal(o.remedy, "chattr -i '/x/diff/data/locked'");
  t.same((o.evidence['walk'] as unknown[]).length, 6, 'every step of the walk is in the evidence');
  t.same(o.workload, { pod: 'web-1', namespace: 'shop', podUid: 'u1' });
  const later = podStuckObservation(p, stuckState(p, NOW + 60_000, CFG)!, { steps: walk, containers: [] });
  t.equal(later.message, o.message, 'the same message a minute later: no update, no event storm');

  const nothing = podStuckObservation(p, st, { steps: [step('finalizers', false, 'x'), { ...step('immutable', false, 'no module'), checked: false }, step('mount-held', false, 'x'), step('drift', false, 'x'), step('runtime', false, 'x'), step('volumes', false, 'x')], containers: [] });
  t.equal(nothing.severity, 'warning');
  t.match(nothing.message, /found no cause on this node for pod shop\/web-1.*ruled out finalizers, mounts held in other namespaces, runtime drift, runtime health and full or read-only filesystems, volumes kubelet has not unmounted and could not check immutable or append-only files/);
  t.match(nothing.remedy, /kubectl -n shop describe pod web-1/);
  const fin = podStuckObservation(p, st, { steps: [step('finalizers', true, 'finalizer example.com/x is still set', 'kubectl patch ...')], containers: [] });
  t.equal(fin.severity, 'warning', 'a finalizer is not a node problem');
});

const access = (state: ReturnType<PodAccess['list']>, seen: string[] = []): PodAccess => ({
  list: () => state,
  diagnose: async (p) => {
    seen.push(p.name);
    return { steps: [step('finalizers', false, 'none')], containers: [] };
  },
});

t.test('collect: no API server is no-data; an unsynced watch keeps earlier findings; only stuck pods are diagnosed', async (t) => {
  const ctx = contextFor(pods, '/');
  t.equal((await pods.collect(ctx)).kind, 'no-data', 'without ctx.pods');
  t.equal((await pods.collect({ ...ctx, pods: access({ status: 'unsynced', reason: 'ECONNREFUSED', pods: [] }) })).kind, 'unavailable');
  const seen: string[] = [];
  const old = new Date(Date.now() - 3_600_000).toISOString();
  const r = await pods.collect({ ...ctx, pods: access({ status: 'synced', resourceVersion: '9', pods: [pod({ name: 'ok' }), pod({ name: 'gone-late', uid: 'u2', deletionTimestamp: old }), pod({ name: 'in-grace', uid: 'u3', deletionTimestamp: new Date(Date.now() + 30_000).toISOString() })] }, seen) });
  t.equal(r.kind, 'ok');
  t.same(seen, ['gone-late'], 'only the stuck pod is diagnosed');
  t.same(r.kind === 'ok' ? r.observations.map((o) => o.subject) : [], ['shop/gone-late']);
});

// Crash loops. Fixtures are Pod objects as the API server sends them (test/fixtures/k8s/pods/), reduced by the watcher's toPodInfo.
const fixture = (name: string): PodInfo => toPodInfo(JSON.parse(readFileSync(`test/fixtures/k8s/pods/${name}.json`, 'utf8')))!;
const RCFG = { restartWindow: 600_000, crashLoopRestarts: 2, restartsWarning: 10, maxTrackedContainers: 100, podLogsDir: '/var/log/pods' };
const MIN = 60_000;

/** One cycle of the collector's restart logic: the history it carries, and what it reports. */
function cycle(podList: PodInfo[], history: RestartHistory | undefined, now: number, cfg = RCFG): { history: RestartHistory; obs: Observation[] } {
  const r = evaluateRestarts(podList, trackRestarts(podList, history, now, cfg), now, cfg, 'worker-2');
  return { history: r.history, obs: r.observations };
}
const checks = (obs: Observation[], check: string) => obs.filter((o) => o.check === check);
/** A pod whose one container has restarted `count` times, the last termination finishing at `finishedAt`. */
const restarting = (count: number, finishedAt: string | undefined, extra: Partial<PodContainerStatus> = {}, podExtra: Partial<PodInfo> = {}): PodInfo =>
  pod({ containers: [{ name: 'app', state: 'running', restartCount: count, ...(finishedAt ? { lastTermination: { reason: 'OOMKilled', exitCode: 137, finishedAt }, finishedAt } : {}), memoryLimit: '256Mi', ...extra }], ...podExtra });

t.test('crash loop: the second restart within the window fires, the first does not', async (t) => {
  let c = cycle([restarting(0, undefined)], undefined, NOW);
  t.same(c.obs, [], 'never restarted');
  c = cycle([restarting(1, '2026-11-22T10:00:20Z')], c.history, NOW + 30_000);
  t.same(checks(c.obs, 'pod.crashLoop'), [], 'one restart (a single OOM) is not a loop');
  t.equal(checks(c.obs, 'pod.restarts')[0]?.severity, 'info', 'but it is a restart on this node');
  c = cycle([restarting(1, '2026-11-22T10:00:20Z')], c.history, NOW + 60_000);
  t.same(checks(c.obs, 'pod.crashLoop'), [], 'the same restart seen again is not a second one');
  c = cycle([restarting(2, '2026-11-22T10:01:10Z')], c.history, NOW + 90_000);
  const [loop] = checks(c.obs, 'pod.crashLoop');
  t.equal(loop?.subject, 'shop/web-1/app');
  t.equal(loop?.severity, 'warning');
  t.match(loop?.message, /^Container app of pod shop\/web-1 is crash-looping .*last terminated OOMKilled \(exit code 137\): it was killed at its memory limit of 256Mi/);
  t.equal(loop?.remedy, 'kubectl logs -p -n shop web-1 -c app --tail=100; kubectl describe pod -n shop web-1');
  t.same(loop?.workload, { pod: 'web-1', namespace: 'shop', podUid: 'u1', containerName: 'app' });
  t.equal(loop?.evidence['restartsInWindow'], 2);
});

t.test('crash loop: two restarts further apart than the window are not a loop; a jump between looks is dated at the earlier look', async (t) => {
  let c = cycle([restarting(1, '2026-11-22T09:59:00Z')], undefined, NOW);
  c = cycle([restarting(2, '2026-11-22T10:11:00Z')], c.history, NOW + 12 * MIN);
  t.same(checks(c.obs, 'pod.crashLoop'), [], '12 minutes apart');
  // Seen at 0 restarts, then at 3: three restarts in 30 s, two of them dated at the earlier look.
  c = cycle([restarting(0, undefined)], undefined, NOW);
  c = cycle([restarting(3, '2026-11-22T10:00:25Z')], c.history, NOW + 30_000);
  t.equal(checks(c.obs, 'pod.crashLoop').length, 1);
  t.same(c.history['u1/app']?.times, [NOW, NOW, Date.parse('2026-11-22T10:00:25Z')]);
});

t.test('crash loop: it resolves after a whole window without a restart, not when the older restart slides out', async (t) => {
  let c = cycle([restarting(1, '2026-11-22T09:51:00Z')], undefined, NOW);
  c = cycle([restarting(2, '2026-11-22T09:59:50Z')], c.history, NOW);
  t.equal(checks(c.obs, 'pod.crashLoop').length, 1, 'firing');
  c = cycle([restarting(2, '2026-11-22T09:59:50Z')], c.history, NOW + 5 * MIN);
  t.equal(checks(c.obs, 'pod.crashLoop').length, 1, 'the 09:51 restart is out of the window, the loop is not over');
  c = cycle([restarting(2, '2026-11-22T09:59:50Z')], c.history, NOW + 9 * MIN);
  t.equal(checks(c.obs, 'pod.crashLoop').length, 1, '9 minutes running');
  c = cycle([restarting(2, '2026-11-22T09:59:50Z')], c.history, NOW + 10 * MIN);
  t.same(c.obs, [], '10 minutes running without a restart: resolved, and no restarts to report');
  c = cycle([restarting(3, '2026-11-22T10:12:00Z')], c.history, NOW + 12 * MIN);
  t.same(checks(c.obs, 'pod.crashLoop'), [], 'one more restart later is one restart, not the old loop back');
});

t.test('crash loop: CrashLoopBackOff fires at first sight; a pod gone, or finished, is resolved and forgotten', async (t) => {
  const oom = fixture('oom-crashloop');
  let c = cycle([oom], undefined, NOW);
  const [loop] = checks(c.obs, 'pod.crashLoop');
  t.equal(loop?.subject, 'shop/cart-api-7d9f8b6c4-x2lqp/api');
  t.match(loop?.message, /last terminated OOMKilled \(exit code 137\): it was killed at its memory limit of 256Mi \(resources\.limits\.memory\)/);
  t.same(loop?.evidence['lastTermination'], { reason: 'OOMKilled', exitCode: 137, signal: null, finishedAt: '2026-11-22T09:58:40Z' });
  t.equal(loop?.evidence['waitingReason'], 'CrashLoopBackOff');
  t.ok(c.history['5f0c6a2e-8b1d-4c3a-9e7f-1a2b3c4d5e6f/api']);
  c = cycle([], c.history, NOW + 30_000);
  t.same(c.obs, [], 'the pod is gone: nothing fires');
  t.same(c.history, {}, 'and its history is evicted');
  c = cycle([{ ...oom, phase: 'Failed' }], undefined, NOW);
  t.same(checks(c.obs, 'pod.crashLoop'), [], 'a pod that has finished does not loop any more');
});

t.test('crash loop: first sight of a container restarted once (the search fixture) is not a loop', async (t) => {
  const c = cycle([fixture('restarted-once')], undefined, NOW);
  t.same(checks(c.obs, 'pod.crashLoop'), []);
  t.match(checks(c.obs, 'pod.restarts')[0]?.message, /^1 container on this node restarted in the last 10 minutes: shop\/search-6f8d7c5b9-vt7mw\/search \(1\)/);
  const old = cycle([restarting(40, '2026-11-21T10:00:00Z')], undefined, NOW);
  t.same(old.obs, [], 'a high restartCount from yesterday says nothing about now');
});

t.test('what a termination means: OOM at the limit, SIGKILL and the liveness probe, SIGTERM, an exit code and where the logs are', async (t) => {
  const liveness = fixture('liveness-sigkill');
  const ledger = liveness.containers[0]!;
  t.equal(terminationMeaning(liveness, ledger, '/var/log/pods'), 'last terminated Error (exit code 137): killed by SIGKILL: its liveness probe (HTTP GET :8080/healthz every 10s, timeout 1s, 3 failures) failing, or a signal');
  t.match(terminationMeaning(pod(), { name: 'app', state: 'running', lastTermination: { reason: 'Error', exitCode: 137 } }, '/var/log/pods'), /killed by SIGKILL: a failing liveness probe or a signal \(it has no liveness probe/);
  t.match(terminationMeaning(liveness, { ...ledger, lastTermination: { reason: 'Error', exitCode: 143 } }, '/var/log/pods'), /stopped by SIGTERM: kubelet restarting it after its liveness probe \(HTTP GET :8080\/healthz/);
  const batch = fixture('exit-1-crashloop');
  const worker = batch.containers.find((c) => c.name === 'worker')!;
  t.equal(
    terminationMeaning(batch, worker, '/var/log/pods/'),
    'last terminated Error (exit code 1): the application exited with code 1; its last log lines: kubectl logs -p -n batch report-worker-5b7c9d8f6-kq4zt -c worker, or on the node /var/log/pods/batch_report-worker-5b7c9d8f6-kq4zt_7c6b5a49-3829-4170-8f6e-5d4c3b2a1908/worker/',
  );
  t.match(terminationMeaning(pod(), { name: 'app', state: 'running', lastTermination: { reason: 'Error', exitCode: 139 } }, '/var/log/pods'), /exited with code 139 \(128 \+ 11: SIGSEGV\)/);
  t.match(terminationMeaning(pod(), { name: 'app', state: 'running', lastTermination: { reason: 'OOMKilled', exitCode: 137 } }, '/var/log/pods'), /it has no memory limit/);
  const c = cycle([batch], undefined, NOW);
  t.same(checks(c.obs, 'pod.crashLoop').map((o) => o.subject), ['batch/report-worker-5b7c9d8f6-kq4zt/worker'], 'the looping container, not its healthy sidecar');
});

t.test('crash loop: the message stays the same while the container flips between running and CrashLoopBackOff', async (t) => {
  let c = cycle([restarting(1, '2026-11-22T09:58:00Z')], undefined, NOW);
  c = cycle([restarting(2, '2026-11-22T09:59:30Z', { state: 'waiting', reason: 'CrashLoopBackOff' })], c.history, NOW);
  const first = checks(c.obs, 'pod.crashLoop')[0]!;
  c = cycle([restarting(3, '2026-11-22T10:00:30Z')], c.history, NOW + MIN);
  const second = checks(c.obs, 'pod.crashLoop')[0]!;
  t.equal(second.message, first.message);
  t.equal(second.remedy, first.remedy);
});

t.test('pod.restarts: info naming the top ones, warning above restartsWarning', async (t) => {
  const many = (n: number) => Array.from({ length: n }, (_, i) => pod({ uid: `u${i}`, name: `p${String(i).padStart(2, '0')}`, containers: [{ name: 'c', state: 'running', restartCount: 1 + (i % 3), lastTermination: { reason: 'Error', exitCode: 1, finishedAt: '2026-11-22T09:59:00Z' } }] }));
  const small = checks(cycle(many(3), undefined, NOW).obs, 'pod.restarts');
  t.equal(small[0]?.severity, 'info');
  t.equal(small[0]?.subject, 'containers');
  let c = cycle(many(12), undefined, NOW);
  c = cycle(many(12).map((p) => ({ ...p, containers: p.containers.map((x) => ({ ...x, restartCount: x.restartCount! + (p.uid === 'u4' ? 3 : 1), lastTermination: { ...x.lastTermination!, finishedAt: '2026-11-22T10:00:20Z' } })) })), c.history, NOW + 30_000);
  const [r] = checks(c.obs, 'pod.restarts');
  t.equal(r?.severity, 'warning', '12 is above 10');
  t.match(r?.message, /^12 containers on this node restarted in the last 10 minutes: shop\/p04\/c \(4\), shop\/p00\/c \(2\), shop\/p01\/c \(2\), shop\/p02\/c \(2\), shop\/p03\/c \(2\) and 7 more/);
  t.match(r?.remedy, /kubectl get pods -A -o wide --field-selector spec\.nodeName=worker-2/);
});

t.test('the restart history is bounded: over maxTrackedContainers the oldest restarts are forgotten first', async (t) => {
  const list = Array.from({ length: 30 }, (_, i) => pod({ uid: `u${i}`, name: `p${i}`, containers: [{ name: 'c', state: 'running', restartCount: 1, lastTermination: { reason: 'Error', exitCode: 1, finishedAt: new Date(NOW - (30 - i) * 1000).toISOString() } }] }));
  const h = trackRestarts(list, undefined, NOW, { ...RCFG, maxTrackedContainers: 10 });
  t.same(Object.keys(h).sort(), Array.from({ length: 10 }, (_, i) => `u${20 + i}/c`).sort());
});

t.test('collect: the restart history goes from one run to the next through ctx.previous', async (t) => {
  const ctx = contextFor(pods, '/');
  let now = NOW;
  let list = [restarting(1, '2026-11-22T09:59:00Z')];
  const run = async (previous: PodsData | undefined) => {
    const r = await pods.collect({ ...ctx, now: () => now, previous: previous as never, pods: access({ status: 'synced', resourceVersion: '9', pods: list }) });
    return r.kind === 'ok' ? (r as unknown as { observations: Observation[]; data: PodsData }) : undefined;
  };
  const first = await run(undefined);
  t.same(first?.observations.map((o) => o.check), ['pod.restarts']);
  now += 30_000;
  list = [restarting(2, '2026-11-22T10:00:20Z')];
  const second = await run(first?.data);
  t.same(second?.observations.map((o) => o.check).sort(), ['pod.crashLoop', 'pod.restarts']);
  const fresh = await run(undefined);
  t.same(fresh?.observations.map((o) => o.check), ['pod.restarts'], 'without the history, the same pod shows one restart only');
});

// ---- pod.ephemeral ----
const MiB = 2 ** 20;
const EPH = { ephemeral: { warning: 80, critical: 95 }, ephemeralClearBelow: 5 };
const LIMITS: PodStorageLimits = {
  containers: [{ name: 'app', limit: 100 * MiB }, { name: 'sidecar' }],
  emptyDirs: [{ name: 'cache', memory: false, sizeLimit: 50 * MiB }, { name: 'scratch', memory: false }, { name: 'shm', memory: true, sizeLimit: 10 * MiB }],
};
const ingest = pod({ uid: 'uid-ingest', namespace: 'data', name: 'ingest-3' });
const use = (cache: number, layer: number, logs = 0, scratch = 0, sidecar = 0): StorageConsumer[] => [
  { kind: 'emptydir', name: 'cache', path: '/var/lib/kubelet/pods/uid-ingest/volumes/kubernetes.io~empty-dir/cache', bytes: cache * MiB },
  { kind: 'emptydir', name: 'scratch', path: '/var/lib/kubelet/pods/uid-ingest/volumes/kubernetes.io~empty-dir/scratch', bytes: scratch * MiB },
  { kind: 'writable-layer', name: 'app', path: '/var/lib/docker/overlay2/abc/diff', bytes: layer * MiB },
  { kind: 'logs', name: 'app', path: '/var/log/pods/data_ingest-3_uid-ingest/app', bytes: logs * MiB },
  { kind: 'writable-layer', name: 'sidecar', path: '/var/lib/docker/overlay2/def/diff', bytes: sidecar * MiB },
];

t.test("pod.ephemeral: kubelet's three limits (an emptyDir's sizeLimit, a container's layer and logs, the pod's sum) with what counts against each", async (t) => {
  const uses = limitUses(LIMITS, use(10, 20, 5, 30, 7));
  t.same(uses.map((u) => [u.key, u.used / MiB, u.limit / MiB]), [['emptyDir:cache', 10, 50], ['container:app', 25, 100], ['pod', 72, 100]], 'the pod counts every container and every disk-backed emptyDir; the memory one is not disk');
  t.equal(evaluateEphemeral(ingest, LIMITS, use(10, 20, 5, 30, 7), undefined, NOW, EPH).observation, undefined, 'at 72 % of its tightest limit: quiet');
});

t.test('pod.ephemeral: an emptyDir near its sizeLimit warns, names it, and with a second sample says the rate and when it is full', async (t) => {
  const first = evaluateEphemeral(ingest, LIMITS, use(42, 1), undefined, NOW, EPH);
  t.equal(first.observation?.severity, 'warning');
  t.equal(first.observation?.subject, 'data/ingest-3');
  t.equal(first.observation?.message, "Pod data/ingest-3 uses 42M of emptyDir cache's 50M sizeLimit (84%): kubelet evicts the pod when it passes the limit.");
  t.equal(first.observation?.remedy, "kubectl -n data describe pod ingest-3; du -sh '/var/lib/kubelet/pods/uid-ingest/volumes/kubernetes.io~empty-dir/cache'  # what writes there, or raise the limit in the pod's spec");
  t.same(first.observation?.workload, { pod: 'ingest-3', namespace: 'data', podUid: 'uid-ingest' });
  const second = evaluateEphemeral(ingest, LIMITS, use(46, 1), first.sample, NOW + 60_000, EPH);
  t.match(second.observation?.message, /uses 46M of emptyDir cache's 50M sizeLimit \(92%\), growing 4\.0M\/min \(the limit in about 1 min\)/);
  t.equal(second.observation?.evidence['ratePerMinute'], 4 * MiB);
  const third = evaluateEphemeral(ingest, LIMITS, use(49, 1), second.sample, NOW + 70_000, EPH);
  t.equal(third.observation?.severity, 'critical', '98 %: critical');
  t.match(third.observation?.message, /growing 18M\/min/, 'a rate from samples 10 s apart');
  const past = evaluateEphemeral(ingest, LIMITS, use(51, 1), third.sample, NOW + 75_000, EPH);
  t.match(past.observation?.message, /\(102%\): past it, kubelet evicts the pod at its next eviction check\.$/, 'samples 5 s apart: no rate claimed');
});

t.test('pod.ephemeral: hysteresis: a critical stays critical down to 90 %, a warning clears under 75 %', async (t) => {
  const crit = evaluateEphemeral(ingest, LIMITS, use(48, 1), undefined, NOW, EPH);
  t.equal(crit.observation?.severity, 'critical');
  const still = evaluateEphemeral(ingest, LIMITS, use(46, 1), crit.sample, NOW + 30_000, EPH);
  t.equal(still.observation?.severity, 'critical', '92 % after critical: critical');
  const warn = evaluateEphemeral(ingest, LIMITS, use(38, 1), still.sample, NOW + 60_000, EPH);
  t.equal(warn.observation?.severity, 'warning', '76 % after critical: a warning');
  t.notMatch(warn.observation?.message, /growing/, 'shrinking says no rate');
  t.equal(evaluateEphemeral(ingest, LIMITS, use(37, 1), warn.sample, NOW + 90_000, EPH).observation, undefined, '74 %: cleared');
});

t.test("pod.ephemeral: a container's layer and logs against its limit; the pod's sum names its largest consumer", async (t) => {
  const c = evaluateEphemeral(ingest, LIMITS, use(0, 70, 15), undefined, NOW, EPH).observation;
  t.equal(c?.message, "Pod data/ingest-3 uses 85M of container app's 100M ephemeral-storage limit (its writable layer and logs) (85%) (writable layer 70M, logs 15M): kubelet evicts the pod when it passes the limit.");
  const p = evaluateEphemeral(ingest, LIMITS, use(20, 10, 0, 60, 0), undefined, NOW, EPH).observation;
  t.match(p?.message, /^Pod data\/ingest-3 uses 90M of its 100M ephemeral-storage limit \(the sum of its containers' limits, against their layers, logs and its emptyDirs\) \(90%\), most in emptyDir scratch \(60M\)/);
  t.match(p?.remedy, /du -sh '\/var\/lib\/kubelet\/pods\/uid-ingest\/volumes\/kubernetes\.io~empty-dir\/scratch/);
  t.equal(evaluateEphemeral(ingest, { containers: [{ name: 'app' }], emptyDirs: [{ name: 'cache', memory: false }] }, use(500, 500), undefined, NOW, EPH).observation, undefined, 'no limit set: never');
});

t.test("pod.ephemeral: the roots measured are the pod's emptyDirs (not memory), its containers' logs and writable layers by pod uid", async (t) => {
  const rc = (id: string, podUid: string, containerName: string, upperDir: string) => ({ id, manager: 'docker', workload: { podUid, containerName }, storage: { upperDir, containerDir: `/var/lib/docker/containers/${id}` } }) as unknown as RuntimeContainer;
  const roots = storageRoots(ingest, LIMITS, [rc('c1', 'uid-ingest', 'app', '/var/lib/docker/overlay2/abc/diff'), rc('c2', 'other', 'app', '/var/lib/docker/overlay2/zzz/diff')], { kubeletRootDir: '/var/lib/kubelet/', podLogsDir: '/var/log/pods' });
  t.same(roots.map((r) => `${r.kind} ${r.name} ${r.path}`), [
    'emptydir cache /var/lib/kubelet/pods/uid-ingest/volumes/kubernetes.io~empty-dir/cache',
    'emptydir scratch /var/lib/kubelet/pods/uid-ingest/volumes/kubernetes.io~empty-dir/scratch',
    'logs app /var/log/pods/data_ingest-3_uid-ingest/app',
    'writable-layer app /var/lib/docker/overlay2/abc/diff',
    'logs app /var/lib/docker/containers/c1',
    'logs sidecar /var/log/pods/data_ingest-3_uid-ingest/sidecar',
  ]);
});

t.test("describeEviction names the consumer of an evicted pod that grew, from kubelet's message", async (t) => {
  const dirs = { kubeletRootDir: '/var/lib/kubelet', podLogsDir: '/var/log/pods/' };
  const evicted = (message: string) => toPodInfo({ metadata: { uid: 'u7', namespace: 'data', name: 'ingest-3' }, status: { phase: 'Failed', reason: 'Evicted', message } })!;
  t.equal(describeEviction(evicted('Usage of EmptyDir volume "cache" exceeds the limit "1Gi". '), dirs), 'Kubelet evicted data/ingest-3 for local storage: emptyDir cache grew past its sizeLimit of 1.0G (/var/lib/kubelet/pods/u7/volumes/kubernetes.io~empty-dir/cache).');
  t.equal(describeEviction(evicted('Container app exceeded its local ephemeral storage limit "500Mi". '), dirs), "Kubelet evicted data/ingest-3 for local storage: container app's writable layer and logs (/var/log/pods/data_ingest-3_u7/app) grew past its ephemeral-storage limit of 500M.");
  t.match(describeEviction(evicted('Pod ephemeral local storage usage exceeds the total limit of containers 2Gi. '), dirs), /together grew past the pod's ephemeral-storage limit of 2\.0G/);
  t.equal(
    describeEviction(evicted('The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. Container side was using 12Mi, which exceeds its request of 1Mi. Container app was using 900Mi, which exceeds its request of 0. '), dirs),
    'Kubelet evicted data/ingest-3 because the node ran low on ephemeral storage (DiskPressure), ranking pods by use over request: container app used 900M against a request of 0B (its writable layer and logs, /var/log/pods/data_ingest-3_u7/app).',
    'the container furthest over its request is the one named',
  );
  t.equal(describeEviction(pod(), dirs), undefined, 'a running pod has no eviction to describe');
  t.equal(describeEviction(evicted('The node was low on resource: memory. '), dirs), undefined, 'nor a memory eviction');
});
