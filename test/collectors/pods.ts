import t from 'tap';
import { podStuckObservation, pods, stuckState } from '../../collectors/pods.js';
import type { DiagnosisStep, PodAccess, PodInfo } from '../../collectors/types.js';
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
