// The join of docker's and containerd's replies into one container model, by container id. Pure: the
// replies come in, the containers go out; model.ts does the asking (and the caching) and then calls this.
import type { Workload } from '../../protocol/finding.js';
import type { RuntimeContainer, RuntimeName, RuntimeState } from '../../collectors/types.js';
import type { ContainerdContainer, ContainerdTask, SnapshotMount } from './containerd.js';
import type { DockerContainerInspect, DockerContainerSummary } from './docker.js';

/** What docker answered: its container list and each one's inspect (none for one removed in between). */
export interface DockerReplies {
  list: readonly DockerContainerSummary[];
  inspected: ReadonlyMap<string, DockerContainerInspect>;
}

/** What containerd answered, namespace by namespace (in the configured order). */
export type ContainerdReplies = ReadonlyMap<string, { containers: readonly ContainerdContainer[]; tasks: readonly ContainerdTask[] }>;

/** A containerd snapshot's directories on the host (from its mounts). */
export interface SnapshotDirs {
  upperDir?: string;
  lowerDirs?: string[];
}

export interface JoinInput {
  /** docker's replies, or its state when it did not answer them (then docker contributes nothing fresh). */
  docker: DockerReplies | RuntimeState;
  containerd: ContainerdReplies | RuntimeState;
  /** By snapshotKeyOf(): the snapshot dirs of the containers containerd manages itself. */
  snapshotDirs: ReadonlyMap<string, SnapshotDirs>;
  /** The containers each runtime reported when it last answered: kept, marked stale, while it does not. */
  lastKnown?: Partial<Record<RuntimeName, readonly RuntimeContainer[]>>;
}

export interface Joined {
  containers: RuntimeContainer[];
  /** Runtimes whose containers are their last known ones (set only when there are any). */
  stale?: RuntimeName[];
}

/** A containerd container with its namespace and its task, if it has one. */
export interface ContainerdEntry {
  ns: string;
  container: ContainerdContainer;
  task?: ContainerdTask;
}

/** containerd's task bundle: a CRI container's rootfs is mounted at <bundle>/rootfs. */
const TASK_BUNDLES = '/run/containerd/io.containerd.runtime.v2.task';

const K8S = {
  pod: 'io.kubernetes.pod.name',
  namespace: 'io.kubernetes.pod.namespace',
  container: 'io.kubernetes.container.name',
  uid: 'io.kubernetes.pod.uid',
};

export function workloadFromLabels(id: string, name: string, labels: Record<string, string>): Workload {
  const w: Workload = { containerId: id, containerName: labels[K8S.container] ?? name };
  if (labels[K8S.pod]) w.pod = labels[K8S.pod];
  if (labels[K8S.namespace]) w.namespace = labels[K8S.namespace];
  if (labels[K8S.uid]) w.podUid = labels[K8S.uid];
  return w;
}

/** upperdir= and lowerdir= from overlay mount options. */
export function overlayDirs(options: readonly string[]): SnapshotDirs {
  const out: SnapshotDirs = {};
  for (const o of options) {
    if (o.startsWith('upperdir=')) out.upperDir = o.slice('upperdir='.length);
    else if (o.startsWith('lowerdir=')) out.lowerDirs = o.slice('lowerdir='.length).split(':');
  }
  return out;
}

/** A snapshot's dirs from the mounts containerd gives for it: overlay's options, or a bind's source. */
export function snapshotDirsFromMounts(mounts: readonly SnapshotMount[]): SnapshotDirs {
  const overlay = mounts.find((m) => m.type === 'overlay');
  if (overlay) return overlayDirs(overlay.options);
  return mounts[0]?.type === 'bind' ? { upperDir: mounts[0].source } : {};
}

/** The key of a container's snapshot in JoinInput.snapshotDirs; undefined when it names no snapshot. */
export function snapshotKeyOf(ns: string, c: ContainerdContainer): string | undefined {
  if (!c.snapshotKey || !c.snapshotter) return undefined;
  return `${ns}/${c.snapshotter}/${c.snapshotKey}`;
}

/** Whether a side holds the runtime's replies rather than the state it was in when it did not answer. */
const answered = <T extends object>(side: T | RuntimeState): side is T => !('status' in side);

/**
 * The containers containerd manages itself: CRI's (k8s.io) and any other namespace's, and moby's that
 * docker does not list. Nothing of moby's while docker does not answer: then nobody can tell.
 * (model.ts asks containerd for the snapshot mounts of exactly these.)
 */
export function containerdOwn(docker: DockerReplies | RuntimeState, containerd: ContainerdReplies | RuntimeState): ContainerdEntry[] {
  if (!answered(containerd)) return [];
  const dockerIds = answered(docker) ? new Set(docker.list.filter((c) => docker.inspected.has(c.Id)).map((c) => c.Id)) : undefined;
  const out: ContainerdEntry[] = [];
  for (const [ns, { containers, tasks }] of containerd) {
    if (ns === 'moby' && !dockerIds) continue;
    for (const container of containers) {
      if (ns === 'moby' && dockerIds?.has(container.id)) continue;
      const entry: ContainerdEntry = { ns, container };
      const task = tasks.find((t) => t.containerId === container.id);
      if (task) entry.task = task;
      out.push(entry);
    }
  }
  return out;
}

const taskView = (task: ContainerdTask) => ({ status: task.status, pid: task.pid, exitStatus: task.exitStatus });

function fromDocker(c: DockerContainerSummary, ins: DockerContainerInspect, containerd: ContainerdReplies | RuntimeState): RuntimeContainer {
  const name = ins.Name.replace(/^\//, '');
  const labels = ins.Config.Labels ?? {};
  const gd = ins.GraphDriver.Data ?? {};
  const storage: RuntimeContainer['storage'] = {};
  if (gd['UpperDir']) storage.upperDir = gd['UpperDir'];
  if (gd['MergedDir']) storage.mergedDir = gd['MergedDir'];
  if (gd['LowerDir']) storage.lowerDirs = gd['LowerDir'].split(':');
  if (ins.HostnamePath) storage.containerDir = ins.HostnamePath.replace(/\/[^/]*$/, '');
  const rc: RuntimeContainer = {
    id: c.Id,
    name,
    manager: 'docker',
    namespace: 'moby',
    image: ins.Config.Image,
    labels,
    workload: workloadFromLabels(c.Id, name, labels),
    docker: {
      status: ins.State.Status,
      // In restart back-off docker says Running with Restarting set and pid 0: nothing runs.
      running: ins.State.Running && !ins.State.Restarting && ins.State.Pid > 0,
      pid: ins.State.Pid,
      dead: ins.State.Dead || ins.State.Status === 'dead',
      removing: ins.State.Status === 'removing',
      restarting: ins.State.Restarting,
      error: ins.State.Error,
      exitCode: ins.State.ExitCode,
    },
    storage,
  };
  if (ins.State.FinishedAt && !ins.State.FinishedAt.startsWith('0001')) rc.docker!.finishedAt = ins.State.FinishedAt;
  if (ins.State.StartedAt && !ins.State.StartedAt.startsWith('0001')) rc.docker!.startedAt = ins.State.StartedAt;
  if (answered(containerd)) {
    // Its twin in namespace moby, and the task by the same id (a task outlives its container record).
    const moby = containerd.get('moby');
    rc.containerd = { known: moby?.containers.some((x) => x.id === c.Id) ?? false };
    const task = moby?.tasks.find((t) => t.containerId === c.Id);
    if (task) rc.containerd.task = taskView(task);
  }
  return rc;
}

function fromContainerd({ ns, container, task }: ContainerdEntry, snapshotDirs: ReadonlyMap<string, SnapshotDirs>): RuntimeContainer {
  const labels = container.labels;
  const name = labels[K8S.container] ?? container.id;
  const key = snapshotKeyOf(ns, container);
  const rc: RuntimeContainer = {
    id: container.id,
    name,
    manager: 'containerd',
    namespace: ns,
    image: container.image,
    labels,
    workload: workloadFromLabels(container.id, name, labels),
    containerd: { known: true },
    storage: { ...(key ? snapshotDirs.get(key) : undefined), mergedDir: `${TASK_BUNDLES}/${ns}/${container.id}/rootfs` },
  };
  if (task) rc.containerd!.task = taskView(task);
  return rc;
}

/**
 * docker's containers (in its list's order; one removed between list and inspect is left out), then the
 * ones containerd manages itself; then, for a runtime that did not answer (but is not absent), its last
 * known containers, marked stale: good for attribution, never for judging their state.
 */
export function joinRuntimes(input: JoinInput): Joined {
  const { docker, containerd } = input;
  const containers: RuntimeContainer[] = [];
  if (answered(docker)) {
    for (const c of docker.list) {
      const ins = docker.inspected.get(c.Id);
      if (ins) containers.push(fromDocker(c, ins, containerd));
    }
  }
  for (const entry of containerdOwn(docker, containerd)) containers.push(fromContainerd(entry, input.snapshotDirs));

  const stale: RuntimeName[] = [];
  const unanswered = { docker: answered(docker) ? undefined : docker, containerd: answered(containerd) ? undefined : containerd };
  for (const name of ['docker', 'containerd'] as const) {
    const state = unanswered[name];
    const last = input.lastKnown?.[name];
    if (!state || state.status === 'ok' || state.status === 'absent' || !last) continue;
    stale.push(name);
    const have = new Set(containers.map((c) => c.id));
    for (const c of last) if (!have.has(c.id)) containers.push(c);
  }
  return stale.length > 0 ? { containers, stale } : { containers };
}
