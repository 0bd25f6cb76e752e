// containerd through its gRPC API: tasks, containers and snapshot mounts, namespace by namespace.
import { GrpcClient } from './grpc.js';
import { decodeMessage, encodeMessage, pb } from './protobuf.js';

export const TASK_STATUS = ['UNKNOWN', 'CREATED', 'RUNNING', 'STOPPED', 'PAUSED', 'PAUSING'] as const;
export type TaskStatus = (typeof TASK_STATUS)[number];

export interface ContainerdTask {
  containerId: string;
  pid: number;
  status: TaskStatus;
  exitStatus: number;
  exitedAt?: string;
}

export interface ContainerdContainer {
  id: string;
  labels: Record<string, string>;
  image: string;
  snapshotter: string;
  snapshotKey: string;
  createdAt?: string;
}

export interface SnapshotMount {
  type: string;
  source: string;
  options: string[];
}

export class ContainerdClient {
  private readonly grpc: GrpcClient;

  constructor(readonly socketPath: string, private readonly timeoutMs: number) {
    this.grpc = new GrpcClient(socketPath);
  }

  private call(path: string, body: Buffer, namespace?: string): Promise<Buffer> {
    return this.grpc.call(path, body, { timeoutMs: this.timeoutMs, metadata: namespace ? { 'containerd-namespace': namespace } : {} });
  }

  async version(): Promise<string> {
    const r = decodeMessage(await this.call('/containerd.services.version.v1.Version/Version', Buffer.alloc(0)));
    return pb.string(r, 1);
  }

  async namespaces(): Promise<string[]> {
    const r = decodeMessage(await this.call('/containerd.services.namespaces.v1.Namespaces/List', Buffer.alloc(0)));
    return pb.messages(r, 1).map((ns) => pb.string(ns, 1));
  }

  async tasks(namespace: string): Promise<ContainerdTask[]> {
    const r = decodeMessage(await this.call('/containerd.services.tasks.v1.Tasks/List', Buffer.alloc(0), namespace));
    return pb.messages(r, 1).map((p) => {
      const task: ContainerdTask = {
        // Tasks/List fills the process id (the container's id) and often leaves container_id empty.
        containerId: pb.string(p, 1) || pb.string(p, 2),
        pid: pb.uint(p, 3),
        status: TASK_STATUS[pb.uint(p, 4)] ?? 'UNKNOWN',
        exitStatus: pb.uint(p, 9),
      };
      const exitedAt = pb.timestamp(p, 10);
      if (exitedAt) task.exitedAt = exitedAt;
      return task;
    });
  }

  async containers(namespace: string): Promise<ContainerdContainer[]> {
    const r = decodeMessage(await this.call('/containerd.services.containers.v1.Containers/List', Buffer.alloc(0), namespace));
    return pb.messages(r, 1).map((c) => {
      const out: ContainerdContainer = { id: pb.string(c, 1), labels: pb.stringMap(c, 2), image: pb.string(c, 3), snapshotter: pb.string(c, 6), snapshotKey: pb.string(c, 7) };
      const createdAt = pb.timestamp(c, 8);
      if (createdAt) out.createdAt = createdAt;
      return out;
    });
  }

  /** The mounts of a container's rootfs snapshot: for overlayfs, the upperdir and lowerdirs. */
  async snapshotMounts(namespace: string, snapshotter: string, key: string): Promise<SnapshotMount[]> {
    const body = encodeMessage([
      { n: 1, string: snapshotter },
      { n: 2, string: key },
    ]);
    const r = decodeMessage(await this.call('/containerd.services.snapshots.v1.Snapshots/Mounts', body, namespace));
    return pb.messages(r, 1).map((m) => ({ type: pb.string(m, 1), source: pb.string(m, 2), options: pb.strings(m, 4) }));
  }

  close(): void {
    this.grpc.close();
  }
}
