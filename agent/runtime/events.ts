// Runtime events: dockerd's `GET /events` stream, decoded and validated (it is outside input), kept
// connected with backoff. A container that dies or is destroyed makes the runtime collectors look again
// at once; after any gap in the stream (a reconnect) everything is read afresh, because events lost in
// the gap are exactly the seeds' bug. Polling stays the safety net.
import { EventEmitter } from 'node:events';
import { NodewardenError, errorMessage } from '../../protocol/errors.js';
import { httpStream } from '../../protocol/http-request.js';

/** One container event, as much of it as nodewarden uses. */
export interface ContainerEvent {
  runtime: 'docker' | 'containerd';
  /** containerd's namespace and topic (containerd events only). */
  namespace?: string;
  topic?: string;
  /** die, oom, kill, destroy, start, create, ... */
  action: string;
  id: string;
  /** Seconds since the epoch, as docker reports it (0 when missing). */
  time: number;
  name?: string;
}

/** A single line longer than this is not a docker event: the stream is dropped and made again. */
export const MAX_EVENT_LINE = 256 * 1024;

const ID_RE = /^[0-9a-f]{12,64}$/;

/**
 * Pure: one line of the stream to an event, or undefined when it is not a container event we can
 * trust (not JSON, another type, no id, fields of the wrong type).
 */
export function decodeDockerEvent(line: string): ContainerEvent | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if ((o['Type'] ?? o['type']) !== 'container') return undefined;
  const action = o['Action'] ?? o['status'];
  if (typeof action !== 'string' || action.length === 0 || action.length > 200) return undefined;
  const actor = o['Actor'];
  const actorObj = typeof actor === 'object' && actor !== null && !Array.isArray(actor) ? (actor as Record<string, unknown>) : {};
  const id = actorObj['ID'] ?? o['id'];
  if (typeof id !== 'string' || !ID_RE.test(id)) return undefined;
  const time = typeof o['time'] === 'number' && Number.isFinite(o['time']) ? o['time'] : 0;
  // "exec_start: sh -c ..." and "health_status: healthy": the verb is before the colon.
  const ev: ContainerEvent = { runtime: 'docker', action: action.split(':')[0]!.trim(), id, time };
  const attrs = actorObj['Attributes'];
  if (typeof attrs === 'object' && attrs !== null && typeof (attrs as Record<string, unknown>)['name'] === 'string') ev.name = (attrs as Record<string, string>)['name']!;
  return ev;
}

/**
 * Pure: splits what arrived into complete lines (decoded) and the unfinished rest. `overflow` is true
 * when the rest is longer than any event can be: the caller drops the stream.
 */
export function splitEventLines(carry: string, chunk: string): { events: ContainerEvent[]; rest: string; overflow: boolean } {
  const text = carry + chunk;
  const lines = text.split('\n');
  const rest = lines.pop() ?? '';
  const events: ContainerEvent[] = [];
  for (const l of lines) {
    if (l.length > MAX_EVENT_LINE) continue;
    const ev = l.trim() === '' ? undefined : decodeDockerEvent(l);
    if (ev) events.push(ev);
  }
  return { events, rest, overflow: rest.length > MAX_EVENT_LINE };
}

/** Full-jitter exponential backoff: 0.5 s doubling to 30 s. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  return Math.round(random() * Math.min(30_000, 500 * 2 ** Math.min(attempt, 16)));
}

/**
 * What every runtime event stream shares: start/stop, reconnecting with backoff, and 'connected' then
 * 'resync' on every connection but the first (what happened while we were away is unknown);
 * 'disconnected' when a connection that was up ends.
 */
export abstract class EventFollower extends EventEmitter {
  private current: { close(): void } | undefined;
  private timer: NodeJS.Timeout | undefined;
  protected stopped = true;
  protected attempt = 0;
  private connections = 0;

  /** Opens one connection; it calls opened() once it is up and retry() when it is over. */
  protected abstract open(): { close(): void };

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.current?.close();
    this.current = undefined;
  }

  private connect(): void {
    if (this.stopped) return;
    this.current = this.open();
  }

  private live = false;
  /** The stream is up now (opened, and not ended since). */
  get connected(): boolean {
    return this.live && !this.stopped;
  }

  protected opened(resetBackoff = true): void {
    if (resetBackoff) this.attempt = 0;
    this.live = true;
    this.connections += 1;
    this.emit('connected');
    // A resubscription we asked for is no outage: the resync still reads everything afresh, said quietly.
    if (this.connections > 1) this.emit('resync', this.resubscribing ? 'resubscribed' : 'reconnected');
    this.resubscribing = false;
  }

  /** Ends the current connection, if any: retry() then makes the next (with what open() asks now). */
  protected resubscribe(): void {
    if (this.current) this.resubscribing = true;
    this.current?.close();
  }

  private resubscribing = false;

  protected retry(): void {
    if (this.live) this.emit('disconnected');
    this.live = false;
    this.current = undefined;
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), backoffMs(this.attempt++));
    this.timer.unref();
  }
}

/** Follows dockerd's container events. Emits 'event' (ContainerEvent), 'connected' and 'resync'. */
export class DockerEvents extends EventFollower {
  constructor(
    private readonly socketPath: string,
    private readonly connectTimeoutMs: number,
  ) {
    super();
  }

  protected open(): { close(): void } {
    // Only what the re-checks and the model's cache act on: a container that starts (a restart changes
    // its pid) or ends. create, attach, exec_*, resize, health_status... were 2-3 more events per
    // short-lived container, each decoded and each dropping the cached runtime view.
    const filters = encodeURIComponent(JSON.stringify({ type: ['container'], event: DOCKER_EVENTS_FOLLOWED }));
    const controller = new AbortController();
    let carry = '';
    // A frozen dockerd accepts the connection and never answers the headers: the timeout is for those.
    // Whatever ends the stream (its end, an error, a status other than 200, an overlong line) reconnects.
    void httpStream(
      { what: 'docker GET /events', socketPath: this.socketPath, path: `/events?filters=${filters}`, headers: { host: 'docker' }, timeoutMs: this.connectTimeoutMs, signal: controller.signal },
      {
        onOpen: () => this.opened(),
        onText: (chunk) => {
          const r = splitEventLines(carry, chunk);
          carry = r.rest;
          for (const ev of r.events) this.emit('event', ev);
          if (r.overflow) throw new NodewardenError('NW_ERR_PARSE', `docker /events: a line longer than ${MAX_EVENT_LINE} bytes`);
        },
      },
    ).then(
      () => this.retry(),
      () => this.retry(),
    );
    return { close: () => controller.abort() };
  }
}

/** What following the events needs of the rest of the agent (the runner, the runtime model). */
export interface EventSink {
  /** Drop the cached runtime view (and, with an id, what is cached about that container; `ev` is the event that says so). */
  invalidate(id?: string, ev?: ContainerEvent): void;
  /** The state of one container now (its docker status, or containerd's task status for `ev`), or undefined when it is gone. */
  containerStatus(id: string, ev: ContainerEvent): Promise<{ status: string; dead: boolean; removing: boolean } | undefined>;
  /** Run these collectors now. */
  trigger(names: readonly string[]): void;
  log: { debug(o: object, m?: string): void; warn(o: object, m?: string): void };
}

/** Collectors that judge runtime state: run again after a gap in the events. */
export const RUNTIME_COLLECTORS = ['runtime', 'drift', 'immutable', 'mounts'] as const;
/** Collectors that name a stuck removal: what blocks it (attributes) and who holds its mounts. */
const REMOVAL_COLLECTORS = ['immutable', 'mounts'] as const;
/** docker's container events asked for: starts, and every ending in ENDINGS. */
export const DOCKER_EVENTS_FOLLOWED = ['start', 'restart', 'die', 'kill', 'oom', 'destroy', 'stop'];

/** A container still being removed at its re-check is looked at again this many re-check delays later. */
export const REMOVING_RECHECK_FACTOR = 3;

/** Actions after which a container may be stuck in removal (containerd's topics are mapped onto these). */
const ENDINGS = new Set(['die', 'kill', 'oom', 'destroy', 'stop']);

/**
 * Wires the events to re-checks: a container that died is looked at again `recheckMs` later (docker
 * removes a `--rm` or `rm -f` container right after it dies); if it is then dead or still being
 * removed, its removal is stuck and the removal collectors run at once. A gap re-reads everything.
 */
export function followDockerEvents(events: EventEmitter, sink: EventSink, recheckMs = 1000): () => void {
  const pending = new Map<string, NodeJS.Timeout>();
  const onEvent = (ev: ContainerEvent) => {
    sink.invalidate(ev.id, ev);
    // docker's destroy is the end of a removal that worked: nothing is stuck, and the re-check its die
    // asked for is not needed (on a busy node every --rm container cost an inspect a second later).
    // containerd's /containers/delete is published once the deletion is done: the same end.
    if (ev.action === 'destroy' && (ev.runtime === 'docker' || ev.topic === '/containers/delete')) {
      clearTimeout(pending.get(ev.id));
      pending.delete(ev.id);
      return;
    }
    if (!ENDINGS.has(ev.action) || pending.has(ev.id)) return;
    const recheck = (delayMs: number, again: boolean) => {
      const timer = setTimeout(() => {
        pending.delete(ev.id);
        void sink
          .containerStatus(ev.id, ev)
          .then((st) => {
            if (!st || !(st.dead || st.removing)) return;
            // Still being removed a second after it died is common on a busy node (a --rm container
            // whose layers are being deleted): looked at once more a little later before its storage
            // and mounts are checked (each such check walks every process's mounts). Dead (a removal
            // that failed) is checked at once.
            if (again && !st.dead && !pending.has(ev.id)) {
              recheck(REMOVING_RECHECK_FACTOR * recheckMs, false);
              return;
            }
            // Debug: what really blocks a removal is reported by the collectors this triggers.
            sink.log.debug({ container: ev.id, status: st.status, after: ev.action }, 'container still dead or being removed after its event; checking its storage and mounts now');
            sink.trigger(REMOVAL_COLLECTORS);
          })
          .catch((err: unknown) => sink.log.debug({ container: ev.id, err: errorMessage(err) }, 'could not re-check a container after its event'));
      }, delayMs);
      timer.unref();
      pending.set(ev.id, timer);
    };
    recheck(recheckMs, true);
  };
  const onResync = (why?: string) => {
    sink.invalidate();
    if (why === 'resubscribed') sink.log.debug({}, 'runtime event stream subscribed again with other filters: reading everything afresh');
    else sink.log.warn({}, 'runtime event stream reconnected: reading everything afresh');
    sink.trigger(RUNTIME_COLLECTORS);
  };
  events.on('event', onEvent);
  events.on('resync', onResync);
  return () => {
    events.off('event', onEvent);
    events.off('resync', onResync);
    for (const t of pending.values()) clearTimeout(t);
    pending.clear();
  };
}
