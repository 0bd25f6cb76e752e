// containerd through its gRPC API: tasks, containers, images, content, snapshot mounts and usage,
// namespace by namespace.
import { GrpcClient, splitFrames } from './grpc.js';
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

/** gRPC's NOT_FOUND: what containerd answers a Get for an id it does not have. */
const GRPC_NOT_FOUND = 5;
const notFound = (err: unknown): boolean => (err as { cause?: { grpcStatus?: number } } | undefined)?.cause?.grpcStatus === GRPC_NOT_FOUND;

export interface ContainerdImage {
  name: string;
  labels: Record<string, string>;
  target: { mediaType: string; digest: string; size: number };
  createdAt?: string;
}

export interface SnapshotMount {
  type: string;
  source: string;
  options: string[];
}

type Fields = ReturnType<typeof decodeMessage>;

function taskOf(p: Fields): ContainerdTask {
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
}

function containerOf(c: Fields): ContainerdContainer {
  const out: ContainerdContainer = { id: pb.string(c, 1), labels: pb.stringMap(c, 2), image: pb.string(c, 3), snapshotter: pb.string(c, 6), snapshotKey: pb.string(c, 7) };
  const createdAt = pb.timestamp(c, 8);
  if (createdAt) out.createdAt = createdAt;
  return out;
}

export class ContainerdClient {
  private readonly grpc: GrpcClient;

  constructor(readonly socketPath: string, private readonly timeoutMs: number) {
    this.grpc = new GrpcClient(socketPath);
  }

  private call(path: string, body: Buffer, namespace?: string): Promise<Buffer> {
    return this.grpc.unary(path, body, { timeoutMs: this.timeoutMs, metadata: namespace ? { 'containerd-namespace': namespace } : {} });
  }

  async images(namespace: string): Promise<ContainerdImage[]> {
    const r = decodeMessage(await this.call('/containerd.services.images.v1.Images/List', Buffer.alloc(0), namespace));
    return pb.messages(r, 1).map((img) => {
      const target = pb.message(img, 3);
      const out: ContainerdImage = {
        name: pb.string(img, 1),
        labels: pb.stringMap(img, 2),
        target: target ? { mediaType: pb.string(target, 1), digest: pb.string(target, 2), size: pb.int(target, 3) } : { mediaType: '', digest: '', size: 0 },
      };
      const createdAt = pb.timestamp(img, 7);
      if (createdAt) out.createdAt = createdAt;
      return out;
    });
  }

  async deleteImage(namespace: string, name: string): Promise<void> {
    await this.call('/containerd.services.images.v1.Images/Delete', encodeMessage([{ n: 1, string: name }, { n: 2, uint: 1 }]), namespace);
  }

  /** Reads a blob from the content store (a server-streaming call: the data arrives in pieces). */
  async readBlob(namespace: string, digest: string, maxBytes = 4 * 1024 * 1024): Promise<Buffer> {
    const body = await this.grpc.call('/containerd.services.content.v1.Content/Read', encodeMessage([{ n: 1, string: digest }]), {
      timeoutMs: this.timeoutMs,
      metadata: { 'containerd-namespace': namespace },
    });
    const parts = splitFrames(body).map((f) => {
      return pb.bytes(decodeMessage(f), 2);
    });
    const data = Buffer.concat(parts.filter((p): p is Buffer => p !== undefined));
    if (data.length > maxBytes) throw new Error(`blob ${digest} is larger than ${maxBytes} bytes`);
    return data;
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
    return pb.messages(r, 1).map(taskOf);
  }

  /** One container's task (Tasks/Get), or undefined when it has none. */
  async task(namespace: string, id: string): Promise<ContainerdTask | undefined> {
    try {
      const r = decodeMessage(await this.call('/containerd.services.tasks.v1.Tasks/Get', encodeMessage([{ n: 1, string: id }]), namespace));
      const p = pb.message(r, 1);
      return p ? { ...taskOf(p), containerId: id } : undefined;
    } catch (err) {
      if (notFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Every container of a namespace. Each one carries its whole OCI spec (15-30 KB): a namespace of 30
   * containers is most of a megabyte, so the runtime model keeps the list and asks one by one (container())
   * for what is new (model.ts).
   */
  async containers(namespace: string): Promise<ContainerdContainer[]> {
    const r = decodeMessage(await this.call('/containerd.services.containers.v1.Containers/List', Buffer.alloc(0), namespace));
    return pb.messages(r, 1).map(containerOf);
  }

  /** One container (Containers/Get), or undefined when containerd does not have it. */
  async container(namespace: string, id: string): Promise<ContainerdContainer | undefined> {
    try {
      const r = decodeMessage(await this.call('/containerd.services.containers.v1.Containers/Get', encodeMessage([{ n: 1, string: id }]), namespace));
      const c = pb.message(r, 1);
      return c ? containerOf(c) : undefined;
    } catch (err) {
      if (notFound(err)) return undefined;
      throw err;
    }
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

  /**
   * What a snapshot holds on disk (Snapshots/Usage): for a committed layer (key = its chain id) the
   * bytes its snapshotter recorded at commit, for an active one its upper dir now. Undefined when the
   * snapshotter has no such snapshot (an image not unpacked for it).
   */
  async snapshotUsage(namespace: string, snapshotter: string, key: string): Promise<{ size: number; inodes: number } | undefined> {
    const body = encodeMessage([
      { n: 1, string: snapshotter },
      { n: 2, string: key },
    ]);
    try {
      const r = decodeMessage(await this.call('/containerd.services.snapshots.v1.Snapshots/Usage', body, namespace));
      return { size: pb.int(r, 1), inodes: pb.int(r, 2) };
    } catch (err) {
      if (notFound(err)) return undefined;
      throw err;
    }
  }

  close(): void {
    this.grpc.close();
  }
}
