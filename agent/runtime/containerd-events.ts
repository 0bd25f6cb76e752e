// Runtime events, containerd's half: `containerd.services.events.v1.Events/Subscribe` (server-streaming
// gRPC on our own client), every Envelope validated (outside input), kept connected with backoff and a
// full re-read after any gap. A task that exits or a container being deleted in a configured namespace
// (moby, k8s.io: the CRI's, where nodes without docker run everything) becomes a ContainerEvent that
// followDockerEvents (events.ts) turns into re-checks, exactly as docker's own events are.
import { grpcStream } from './grpc.js';
import { EventFollower, type ContainerEvent } from './events.js';
import { decodeMessage, encodeMessage, pb } from './protobuf.js';

export const SUBSCRIBE = '/containerd.services.events.v1.Events/Subscribe';
/** Asked every ping interval on the stream's session to prove containerd answers (see grpcStream's `probe`). */
export const VERSION_METHOD = '/containerd.services.version.v1.Version/Version';

/** Topics followed, and the docker action each one stands for in the re-check logic. */
export const CONTAINERD_TOPICS: Readonly<Record<string, string>> = {
  '/tasks/exit': 'die',
  '/tasks/delete': 'die',
  '/containers/delete': 'destroy',
};

/**
 * containerd's filter syntax: several filters are OR'ed, the selectors of one AND'ed. With `namespaces`,
 * one filter per topic and namespace (the envelope's namespace field), so containerd sends nothing of the
 * others; without, every namespace (picked client-side). The decoder checks both again anyway.
 */
export function subscribeRequest(namespaces?: readonly string[]): Buffer {
  const topics = Object.keys(CONTAINERD_TOPICS);
  const filters = namespaces ? topics.flatMap((topic) => namespaces.map((ns) => `topic=="${topic}",namespace=="${ns}"`)) : topics.map((topic) => `topic=="${topic}"`);
  return encodeMessage(filters.map((f) => ({ n: 1, string: f })));
}

// containerd ids are free-form but bounded: [A-Za-z0-9][A-Za-z0-9_.-]{0,75} (identifiers.Validate).
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$/;
const NS_RE = ID_RE;

/**
 * Pure: one message of the stream (an Envelope {timestamp 1, namespace 2, topic 3, event Any 4}) to a
 * container event, or undefined when it is not one we follow or cannot trust (garbage protobuf,
 * wrong wire types, an Any of another type, ids that are not containerd ids, another namespace).
 */
export function decodeEnvelope(msg: Buffer, namespaces: readonly string[]): ContainerEvent | undefined {
  try {
    const env = decodeMessage(msg);
    const namespace = pb.string(env, 2);
    const topic = pb.string(env, 3);
    const action = CONTAINERD_TOPICS[topic];
    if (!action || !Object.hasOwn(CONTAINERD_TOPICS, topic) || !NS_RE.test(namespace) || !namespaces.includes(namespace)) return undefined;
    const any = pb.message(env, 4);
    if (!any) return undefined;
    const typeUrl = pb.string(any, 1);
    const value = pb.bytes(any, 2);
    if (!value) return undefined;
    const ev = decodeMessage(value);
    // TaskExit / TaskDelete: container_id = 1. ContainerDelete: id = 1. The Any names the type.
    const want = topic === '/containers/delete' ? 'containerd.events.ContainerDelete' : topic === '/tasks/exit' ? 'containerd.events.TaskExit' : 'containerd.events.TaskDelete';
    if (!typeUrl.endsWith(want)) return undefined;
    const id = pb.string(ev, 1);
    if (!ID_RE.test(id)) return undefined;
    const ts = pb.message(env, 1);
    const seconds = ts ? pb.int(ts, 1) : 0;
    return { runtime: 'containerd', namespace, action, id, time: seconds > 0 && Number.isSafeInteger(seconds) ? seconds : 0, topic };
  } catch {
    return undefined;
  }
}

/**
 * Follows containerd's task and container events in `namespaces`. Emits 'event' (ContainerEvent),
 * 'connected', 'resync' after a gap, and 'gap' (why the stream ended), like DockerEvents.
 */
export class ContainerdEvents extends EventFollower {
  private skipped: readonly string[] = [];

  constructor(
    private readonly socketPath: string,
    private readonly namespaces: readonly string[],
    private readonly timeoutMs: number,
    private readonly pingMs = 10_000,
  ) {
    super();
  }

  /** The namespaces this stream follows now: all of `namespaces` but the skipped ones. */
  get following(): readonly string[] {
    return this.namespaces.filter((ns) => !this.skipped.includes(ns));
  }

  /**
   * Leaves these namespaces out of the subscription (docker's `moby` while docker's own event stream is
   * up: the same containers' endings, a third of the events on a busy node, that the agent then only
   * used to drop a cached view docker's events drop anyway). Never all of them: a subscription without a
   * namespace filter would be every namespace. A change subscribes again at once; that reconnection's
   * resync (a full re-read) covers the moment between.
   */
  skip(namespaces: readonly string[]): void {
    const next = this.namespaces.filter((ns) => namespaces.includes(ns));
    if (next.length === this.namespaces.length || next.join('\n') === this.skipped.join('\n')) return;
    this.skipped = next;
    this.resubscribe();
  }

  protected open(): { close(): void } {
    let openedAt = 0;
    const following = this.following;
    // No containerd-namespace header: Subscribe then sees every namespace; the filters name ours.
    return grpcStream(this.socketPath, SUBSCRIBE, subscribeRequest(following), { timeoutMs: this.timeoutMs, pingMs: this.pingMs, probe: VERSION_METHOD }, {
      onOpen: () => {
        openedAt = Date.now();
        this.opened(false);
      },
      onMessage: (msg) => {
        const ev = decodeEnvelope(msg, following);
        if (ev) this.emit('event', ev);
      },
      onEnd: (err) => {
        if (this.stopped) return;
        if (err) this.emit('gap', err);
        // The backoff starts over only after a stream that held: one that opens and dies at once
        // (a restarting daemon) must not make a resync every half second.
        if (openedAt > 0 && Date.now() - openedAt > 5000) this.attempt = 0;
        this.retry();
      },
    });
  }
}

/**
 * containerd's answer to "what is this container now", for followDockerEvents' re-check a moment
 * after its event: undefined when it is gone (the normal end), otherwise its task status. It is
 * stuck in removal when it is still there after containerd announced its deletion, or its task is
 * still listed after /tasks/delete; it is dead when its task exited and the container is still there
 * (a CRI container kept for the kubelet, or one whose deletion is failing): its storage and mounts
 * are then looked at at once, as docker's dead containers are.
 */
export async function containerdStatus(
  client: { container(ns: string, id: string): Promise<{ id: string } | undefined>; task(ns: string, id: string): Promise<{ containerId: string; status: string } | undefined> },
  id: string,
  ev: ContainerEvent,
): Promise<{ status: string; dead: boolean; removing: boolean } | undefined> {
  const ns = ev.namespace ?? '';
  // This one container and its task, by id: listing the namespace costs a whole OCI spec per container.
  const [container, task] = await Promise.all([client.container(ns, id), client.task(ns, id)]);
  if (!container) return undefined;
  const status = task?.status ?? 'no task';
  return { status, dead: ev.topic === '/tasks/delete' ? task !== undefined : task === undefined || task.status === 'STOPPED', removing: ev.action === 'destroy' };
}
