// The runtime model: docker's view, containerd's view and the kernel's, joined by container id.
// Collectors read it through RuntimeAccess; nothing here depends on docker, ctr or crictl binaries.
import type { Workload } from '../../protocol/finding.js';
import type { HostAccess, RuntimeAccess, RuntimeContainer, RuntimeSnapshot, RuntimeState } from '../../collectors/types.js';
import { ContainerdClient, type ContainerdContainer, type ContainerdTask } from './containerd.js';
import { DockerClient, type DockerContainerInspect } from './docker.js';

export interface RuntimeSettings {
  dockerSocket: string;
  containerdSocket: string;
  containerdNamespaces: string[];
  timeout: number;
}

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
export function overlayDirs(options: readonly string[]): { upperDir?: string; lowerDirs?: string[] } {
  const out: { upperDir?: string; lowerDirs?: string[] } = {};
  for (const o of options) {
    if (o.startsWith('upperdir=')) out.upperDir = o.slice('upperdir='.length);
    else if (o.startsWith('lowerdir=')) out.lowerDirs = o.slice('lowerdir='.length).split(':');
  }
  return out;
}

export class Runtimes implements RuntimeAccess {
  readonly docker: DockerClient;
  readonly containerd: ContainerdClient;
  private cached: { at: number; value: Promise<RuntimeSnapshot> } | undefined;
  private readonly inspectCache = new Map<string, { key: string; value: DockerContainerInspect }>();
  private readonly snapshotDirCache = new Map<string, { upperDir?: string; lowerDirs?: string[] }>();

  constructor(
    private readonly host: HostAccess,
    readonly settings: RuntimeSettings,
    private readonly now: () => number = Date.now,
    private readonly maxAgeMs = 2000,
  ) {
    this.docker = new DockerClient(host.hostPath(settings.dockerSocket), settings.timeout);
    this.containerd = new ContainerdClient(host.hostPath(settings.containerdSocket), settings.timeout);
  }

  private async state(name: 'docker' | 'containerd', call: () => Promise<string>): Promise<RuntimeState> {
    const socket = name === 'docker' ? this.settings.dockerSocket : this.settings.containerdSocket;
    if (!(await this.host.exists(this.host.hostPath(socket)))) return { name, socket, status: 'absent' };
    const started = this.now();
    try {
      const version = await call();
      return { name, socket, status: 'ok', version, latencyMs: this.now() - started };
    } catch (err) {
      const code = (err as { code?: string }).code;
      return { name, socket, status: code === 'NW_ERR_TIMEOUT' ? 'unresponsive' : 'error', error: err instanceof Error ? err.message : String(err), latencyMs: this.now() - started };
    }
  }

  ping(): Promise<RuntimeState[]> {
    return Promise.all([this.state('docker', () => this.docker.ping()), this.state('containerd', () => this.containerd.version())]);
  }

  snapshot(): Promise<RuntimeSnapshot> {
    const now = this.now();
    if (this.cached && now - this.cached.at < this.maxAgeMs) return this.cached.value;
    const value = this.take();
    this.cached = { at: now, value };
    return value;
  }

  private async inspect(id: string, stateKey: string): Promise<DockerContainerInspect> {
    const hit = this.inspectCache.get(id);
    // A running container's pid matters every time; a stopped one's inspect does not change.
    if (hit && hit.key === stateKey && !stateKey.startsWith('running')) return hit.value;
    const value = await this.docker.inspect(id);
    this.inspectCache.set(id, { key: stateKey, value });
    return value;
  }

  private async take(): Promise<RuntimeSnapshot> {
    const takenAt = this.now();
    const runtimes = await this.ping();
    const [dockerState, containerdState] = runtimes as [RuntimeState, RuntimeState];
    const containers: RuntimeContainer[] = [];

    // containerd: every configured namespace's containers and tasks.
    const ctd = new Map<string, { ns: string; container: ContainerdContainer; task?: ContainerdTask }>();
    const orphanTasks: { ns: string; task: ContainerdTask }[] = [];
    if (containerdState.status === 'ok') {
      try {
        for (const ns of this.settings.containerdNamespaces) {
          const [list, tasks] = await Promise.all([this.containerd.containers(ns), this.containerd.tasks(ns)]);
          const byId = new Map(tasks.map((t) => [t.containerId, t]));
          for (const c of list) {
            const entry: { ns: string; container: ContainerdContainer; task?: ContainerdTask } = { ns, container: c };
            const task = byId.get(c.id);
            if (task) entry.task = task;
            ctd.set(`${ns}/${c.id}`, entry);
            byId.delete(c.id);
          }
          for (const task of byId.values()) orphanTasks.push({ ns, task });
        }
      } catch (err) {
        containerdState.status = (err as { code?: string }).code === 'NW_ERR_TIMEOUT' ? 'unresponsive' : 'error';
        containerdState.error = err instanceof Error ? err.message : String(err);
      }
    }

    // docker: every container, inspected for its pid and storage.
    const seen = new Set<string>();
    if (dockerState.status === 'ok') {
      try {
        const list = await this.docker.containers();
        const inspected = await Promise.all(list.map((c) => this.inspect(c.Id, `${c.State}/${c.Status}`).catch(() => undefined)));
        const live = new Set(list.map((c) => c.Id));
        for (const id of this.inspectCache.keys()) if (!live.has(id)) this.inspectCache.delete(id);
        list.forEach((c, i) => {
          const ins = inspected[i];
          if (!ins) return; // removed between list and inspect
          const name = ins.Name.replace(/^\//, '');
          const labels = ins.Config.Labels ?? {};
          const twin = ctd.get(`moby/${c.Id}`);
          seen.add(`moby/${c.Id}`);
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
              running: ins.State.Running,
              pid: ins.State.Pid,
              dead: ins.State.Dead || ins.State.Status === 'dead',
              removing: ins.State.Status === 'removing',
              error: ins.State.Error,
              exitCode: ins.State.ExitCode,
            },
            storage,
          };
          if (ins.State.FinishedAt && !ins.State.FinishedAt.startsWith('0001')) rc.docker!.finishedAt = ins.State.FinishedAt;
          if (containerdState.status === 'ok') {
            rc.containerd = { known: twin !== undefined };
            const task = twin?.task ?? orphanTasks.find((o) => o.ns === 'moby' && o.task.containerId === c.Id)?.task;
            if (task) rc.containerd.task = { status: task.status, pid: task.pid, exitStatus: task.exitStatus };
          }
          containers.push(rc);
        });
      } catch (err) {
        dockerState.status = (err as { code?: string }).code === 'NW_ERR_TIMEOUT' ? 'unresponsive' : 'error';
        dockerState.error = err instanceof Error ? err.message : String(err);
      }
    }

    // containerd's own containers (CRI in k8s.io, and moby ones docker does not know).
    for (const [key, { ns, container, task }] of ctd) {
      if (seen.has(key)) continue;
      if (ns === 'moby' && dockerState.status !== 'ok') continue; // cannot tell without docker
      const labels = container.labels;
      const name = labels[K8S.container] ?? container.id;
      const rc: RuntimeContainer = {
        id: container.id,
        name,
        manager: 'containerd',
        namespace: ns,
        image: container.image,
        labels,
        workload: workloadFromLabels(container.id, name, labels),
        containerd: { known: true },
        storage: await this.snapshotDirs(ns, container),
      };
      if (task) rc.containerd!.task = { status: task.status, pid: task.pid, exitStatus: task.exitStatus };
      containers.push(rc);
    }
    return { runtimes, containers, takenAt };
  }

  private async snapshotDirs(ns: string, c: ContainerdContainer): Promise<RuntimeContainer['storage']> {
    if (!c.snapshotKey || !c.snapshotter) return {};
    const key = `${ns}/${c.snapshotter}/${c.snapshotKey}`;
    const hit = this.snapshotDirCache.get(key);
    if (hit) return hit;
    try {
      const mounts = await this.containerd.snapshotMounts(ns, c.snapshotter, c.snapshotKey);
      const overlay = mounts.find((m) => m.type === 'overlay');
      const dirs = overlay ? overlayDirs(overlay.options) : mounts[0]?.type === 'bind' ? { upperDir: mounts[0].source } : {};
      this.snapshotDirCache.set(key, dirs);
      return dirs;
    } catch {
      return {};
    }
  }

  close(): void {
    this.containerd.close();
  }
}
