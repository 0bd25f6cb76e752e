// Runs collectors: each on its own interval with its own timeout. A collector that throws or never
// settles becomes a finding about itself (collector.failed, collector.timeout) and never delays others.
import { EventEmitter } from 'node:events';
import type { Observation } from '../protocol/finding.js';
import { compareFindings } from '../protocol/finding.js';
import { errnoCode, errorMessage } from '../protocol/errors.js';
import { withDeadline } from '../protocol/deadline.js';
import { PERMISSION_DENIED, type AnyCollector, type ConfirmationStore, type CollectorProgress, type CollectResult, type Log, type RuntimeAccess } from '../collectors/types.js';
import type { Environment } from './environment.js';
import type { Config, CollectorSettings } from './config.js';
import { FindingTracker, type Transition } from './tracker.js';

/** At most this many runtime deadlines' worth of a run's runtime waits are not counted against its timeout. */
const RUNTIME_WAIT_CAP = 3;

export type RunStatus = 'ok' | 'no-data' | 'unavailable' | 'failed' | 'timeout';

export interface CollectorStatus {
  name: string;
  status: RunStatus;
  durationMs: number;
  /** Why: the error for failed, the reason for no-data, what is still running for skipped. */
  detail?: string;
  finishedAt: string;
}

export interface RunnerOptions {
  collectors: readonly AnyCollector[];
  config: Config;
  env: Environment;
  log: Log & { child?(bindings: object): Log };
  now?: () => number;
}

export interface CycleResult {
  statuses: CollectorStatus[];
  /** Collector data by name, for display. */
  data: Record<string, unknown>;
  transitions: Transition[];
}

interface Slot {
  collector: AnyCollector;
  settings: CollectorSettings;
  inFlight?: Promise<void>;
  startedAt?: number;
  timer?: NodeJS.Timeout;
  lastData?: unknown;
  /** What a no-data run kept for the next one (not reported as data). */
  carry?: unknown;
  lastStatus?: CollectorStatus;
  /** Someone asked for a run at once while one was in flight: it yields early and runs again. */
  rerun?: boolean;
  /** The next run is one a runtime event asked for (see CollectorContext.triggered). */
  triggered?: boolean;
  /** Runs skipped because an earlier run is still stuck, in this episode. */
  skipped?: number;
  /** An earlier run outlived its timeout and is still running. */
  stalled?: boolean;
  /** When the next scheduled run is due (wall clock, ms): a run an event asked for does not move it. */
  dueAt?: number;
  tick?: () => void;
  /** Suspects carried between runs (confirmation across runs, in start()'s mode). */
  confirmations?: ConfirmationStore;
  /** When a run asked to run again for a confirming read (wall clock, ms). */
  rerunAt?: number;
  /** The next run is the confirming read rerunAt asked for. */
  confirming?: boolean;
  /** The runtime as this collector's runs see it (one object, so a collector may key state by it), timing its waits. */
  runtime?: RuntimeAccess;
  /** The current run's time spent waiting on the runtime: done waits, and the one in flight since `since`. */
  waits?: RuntimeWaits;
}

interface RuntimeWaits {
  total: number;
  inflight: number;
  since: number;
}

/**
 * The runtime for one collector's runs, recording how long each run waits on it. Those waits do not count
 * against the run's timeout: the runtime has its own deadline (runtime.timeout) and its own findings
 * (runtime.unresponsive), so a run that waited on a slow docker is not a collector that hangs (at 2 s
 * intervals, a 5 s runtime wait plus a loaded node's mountinfo reads made false collector.timeout pages).
 */
function timedRuntime(rt: RuntimeAccess, slot: Slot): RuntimeAccess {
  const timed = <T>(call: () => Promise<T>): Promise<T> => {
    const w = slot.waits;
    if (!w) return call();
    if (w.inflight++ === 0) w.since = Date.now();
    return call().finally(() => {
      if (--w.inflight === 0) w.total += Date.now() - w.since;
    });
  };
  const out: RuntimeAccess = {
    snapshot: (opts) => timed(() => rt.snapshot(opts)),
    ping: () => timed(() => rt.ping()),
    get settleMs() {
      return rt.settleMs;
    },
    ...(rt.namespaces ? { namespaces: rt.namespaces } : {}),
  };
  if (rt.imageLayers) out.imageLayers = () => timed(() => rt.imageLayers!());
  return out;
}

/**
 * Emits 'transition' (Transition), 'status' (CollectorStatus), 'refresh' (Finding: the numbers of
 * an active finding changed, its meaning did not; not a transition, so no tail line or Event) and
 * 'progress' (collector name, CollectorProgress: how far its long work is, for check's progress line).
 */
export class Runner extends EventEmitter {
  readonly tracker: FindingTracker;
  private readonly slots = new Map<string, Slot>();
  private readonly opts: RunnerOptions;
  private readonly now: () => number;
  private stopped = true;
  /** Set by start(): collectors confirm suspects across runs instead of waiting within one. */
  private acrossRuns = false;

  constructor(opts: RunnerOptions) {
    super();
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.tracker = new FindingTracker(opts.config.node);
    this.tracker.onRefresh = (f) => this.emit('refresh', f);
    for (const c of opts.collectors) {
      const settings = opts.config.collectors[c.name];
      if (settings?.enabled) this.slots.set(c.name, { collector: c, settings });
    }
  }

  names(): string[] {
    return [...this.slots.keys()];
  }

  statuses(): CollectorStatus[] {
    return [...this.slots.values()].flatMap((s) => (s.lastStatus ? [s.lastStatus] : []));
  }

  private logFor(name: string): Log {
    return this.opts.log.child ? this.opts.log.child({ collector: name }) : this.opts.log;
  }

  /** Runs one collector once, under its timeout. Resolves with its status; never rejects. */
  async runCollector(name: string): Promise<{ status: CollectorStatus; transitions: Transition[] }> {
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`unknown collector ${name}`);
    const log = this.logFor(name);
    const started = this.now();
    const finish = (status: RunStatus, observations: readonly Observation[] | undefined, selfFindings: Observation[], detail?: string) => {
      const now = this.now();
      const st: CollectorStatus = { name, status, durationMs: now - started, finishedAt: new Date(now).toISOString() };
      if (detail !== undefined) st.detail = detail;
      slot.lastStatus = st;
      const transitions: Transition[] = [];
      // A failed run says nothing about the collector's own findings: they stay as they were.
      if (observations) transitions.push(...this.tracker.update(name, observations, now));
      transitions.push(...this.tracker.update(`runner/${name}`, selfFindings, now));
      for (const t of transitions) this.emit('transition', t);
      this.emit('status', st);
      return { status: st, transitions };
    };

    if (slot.inFlight) {
      // Still stuck in an earlier run: keep reporting it, do not pile up another. Logged once per
      // episode (runtime events re-asked for it up to 840 times a second), with the count at its end.
      const stuckFor = started - (slot.startedAt ?? started);
      slot.skipped = (slot.skipped ?? 0) + 1;
      slot.stalled = true;
      if (slot.skipped === 1) log.warn({ stuckForMs: stuckFor }, 'collector still running from an earlier cycle; skipping runs until it ends (logged once)');
      return finish('timeout', undefined, [this.timeoutFinding(slot, stuckFor)], `still running after ${stuckFor} ms`);
    }

    const controller = new AbortController();
    // Waits a run takes on purpose (confirmation within one run, in check) do not count against its timeout,
    // nor its waits on the runtime (bounded by runtime.timeout each; at most RUNTIME_WAIT_CAP of them a run).
    let paused = 0;
    const waits: RuntimeWaits = { total: 0, inflight: 0, since: 0 };
    slot.waits = waits;
    const runtime = (slot.runtime ??= timedRuntime(this.opts.env.runtime, slot));
    const runtimeCap = RUNTIME_WAIT_CAP * Number(this.opts.config.runtime?.timeout ?? 5000);
    const pausedNow = () => paused + Math.min(runtimeCap, waits.total + (waits.inflight > 0 ? Date.now() - waits.since : 0));
    slot.rerunAt = undefined;
    const confirming = slot.confirming === true;
    slot.confirming = false;
    const confirm = this.acrossRuns
      ? {
          confirmations: (slot.confirmations ??= new Map()),
          confirming,
          rerunIn: (ms: number) => {
            const at = Date.now() + Math.max(0, ms);
            slot.rerunAt = slot.rerunAt === undefined ? at : Math.min(slot.rerunAt, at);
          },
        }
      : { pausing: (ms: number) => void (paused += Math.max(0, ms)) };
    const run = (async (): Promise<CollectResult<unknown>> =>
      slot.collector.collect({
        node: this.opts.config.node,
        host: this.opts.env.host,
        exec: this.opts.env.exec,
        runtime,
        attrs: this.opts.env.attrs,
        config: slot.settings,
        now: this.now,
        log,
        signal: controller.signal,
        previous: slot.lastData ?? slot.carry,
        rerunRequested: () => slot.rerun === true,
        triggered: slot.triggered === true,
        ...(this.opts.env.pods ? { pods: this.opts.env.pods } : {}),
        ...(this.opts.env.kube ? { kube: this.opts.env.kube } : {}),
        ...(this.opts.env.kmsg ? { kmsg: this.opts.env.kmsg } : {}),
        ...(this.opts.env.fillers ? { fillers: this.opts.env.fillers } : {}),
        ...(this.opts.env.walker ? { walker: this.opts.env.walker } : {}),
        active: () => this.tracker.active(),
        ...confirm,
        // Only for someone listening (check on a terminal): reporting can make long work take other paths.
        ...(this.listenerCount('progress') > 0 ? { progress: (p: CollectorProgress) => this.emit('progress', name, p) } : {}),
      }))();
    slot.triggered = false;
    slot.startedAt = started;
    const settled = run.then(
      (r) => ({ ok: true as const, r }),
      (err: unknown) => ({ ok: false as const, err }),
    );
    slot.inFlight = settled.then(() => {
      slot.inFlight = undefined;
      if (slot.skipped) log.warn({ skippedRuns: slot.skipped, stuckForMs: this.now() - started }, 'collector finished its stuck run');
      slot.skipped = 0;
      slot.stalled = false;
    });
    let outcome = await withDeadline(settled, slot.settings.timeout, () => 'timeout' as const);
    for (let granted = 0; outcome === 'timeout' && pausedNow() > granted; ) {
      const now = pausedNow();
      const more = now - granted;
      granted = now;
      outcome = await withDeadline(settled, more, () => 'timeout' as const);
    }

    if (outcome === 'timeout') {
      controller.abort();
      log.error({ timeoutMs: slot.settings.timeout }, 'collector timed out');
      return finish('timeout', undefined, [this.timeoutFinding(slot, slot.settings.timeout)], `no result within ${slot.settings.timeout} ms`);
    }
    if (!outcome.ok) {
      const err = outcome.err;
      const message = errorMessage(err);
      const code = errnoCode(err);
      if (code === 'EACCES' || code === 'EPERM') {
        // The kernel said no: the collector could not look (not root, no capability). Not a failure of
        // the node, and no finding; check and up name it, and check exits 3 (unknown).
        log.warn({ code, err: message }, 'collector may not read what it checks');
        return finish('unavailable', undefined, [], `${PERMISSION_DENIED}: ${message}`);
      }
      log.error({ err, code: errnoCode(err) }, 'collector failed');
      return finish('failed', undefined, [
        {
          check: 'collector.failed',
          severity: 'warning',
          subject: name,
          message: `The ${name} collector failed: ${message}. Its checks (${slot.collector.checks.join(', ')}) are not being evaluated.`,
          evidence: { collector: name, error: message },
          remedy: `nodewarden check --only ${name}  # and read the agent's log for collector=${name}`,
        },
      ], message);
    }
    const result = outcome.r;
    if (result.kind === 'no-data') {
      log.debug({ reason: result.reason }, 'collector does not apply here');
      slot.carry = result.carry;
      return finish('no-data', [], [], result.reason);
    }
    if (result.kind === 'unavailable') {
      // Its findings stand; whatever it depends on is reported by its own check.
      log.warn({ reason: result.reason }, 'collector cannot see what it checks right now');
      return finish('unavailable', undefined, [], result.reason);
    }
    slot.lastData = result.data;
    slot.carry = undefined;
    return finish('ok', result.observations, []);
  }

  private timeoutFinding(slot: Slot, ms: number): Observation {
    const name = slot.collector.name;
    return {
      check: 'collector.timeout',
      severity: 'warning',
      subject: name,
      message: `The ${name} collector has not finished for ${Math.round(ms / 1000)}s (timeout ${Math.round(slot.settings.timeout / 1000)}s): something it reads is hanging. Its checks are not being evaluated; the other collectors carry on.`,
      evidence: { collector: name, timeoutMs: slot.settings.timeout, stuckForMs: ms },
      remedy: `nodewarden check --only ${name}; look for processes in D state: ps -eo pid,stat,wchan:32,cmd | awk '$2 ~ /D/'`,
    };
  }

  /** Runs the given collectors (default: all enabled) once, concurrently. */
  async runOnce(names: readonly string[] = this.names()): Promise<CycleResult> {
    const results = await Promise.all(names.map((n) => this.runCollector(n)));
    const data: Record<string, unknown> = {};
    for (const n of names) {
      const d = this.slots.get(n)?.lastData;
      if (d !== undefined) data[n] = d;
    }
    return { statuses: results.map((r) => r.status), data, transitions: results.flatMap((r) => r.transitions) };
  }

  /**
   * Runs every collector on its own interval until stop(). The first runs are spread over the first
   * second (`staggerMs`), so start-up does not do all the work, and hold all the memory, at once.
   */
  start(staggerMs = 1000): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.acrossRuns = true;
    const slots = [...this.slots.values()];
    slots.forEach((slot, i) => {
      slot.tick = (): void => {
        if (this.stopped) return;
        clearTimeout(slot.timer);
        slot.timer = undefined;
        slot.rerun = false;
        // A run an event asked for may do less than a scheduled one (immutable skips its storage sweep),
        // so it leaves the schedule where it was: on a busy node, where containers die every few
        // seconds, events must not push the scheduled run away for ever (it did, and the sweep starved).
        const scheduled = slot.triggered !== true;
        void this.runCollector(slot.collector.name).finally(() => {
          if (this.stopped) return;
          clearTimeout(slot.timer);
          if (scheduled) slot.dueAt = Date.now() + slot.settings.interval;
          // A request that came in during the run: run again now, else when the schedule says. Not
          // while an earlier run is stuck: re-asking then only skips again, as fast as events come.
          if (slot.stalled) slot.dueAt = Math.max(slot.dueAt ?? 0, Date.now() + slot.settings.interval);
          let wait = slot.rerun && !slot.stalled ? 0 : Math.max(0, (slot.dueAt ?? 0) - Date.now());
          // A suspect's next confirming read, when it comes before the schedule: a light run like an
          // event's (it leaves the schedule where it is, and immutable skips its sweep).
          if (!slot.stalled && slot.rerunAt !== undefined && slot.rerunAt - Date.now() < wait) {
            wait = Math.max(0, slot.rerunAt - Date.now());
            slot.triggered = true;
            slot.confirming = true;
          }
          slot.timer = setTimeout(slot.tick!, wait);
        });
      };
      const first = Math.round((i * staggerMs) / Math.max(1, slots.length));
      slot.dueAt = Date.now() + first;
      slot.timer = setTimeout(slot.tick, first);
    });
  }

  /**
   * Runs these collectors now instead of at their next interval (a runtime event: a container died,
   * its removal failed). One in flight is asked to yield early and runs again right after.
   */
  trigger(names: readonly string[]): void {
    if (this.stopped) return;
    for (const name of names) {
      const slot = this.slots.get(name);
      if (!slot?.tick) continue;
      slot.triggered = true;
      // An event's run is not a confirming read: what it sees first asks for its own early read.
      slot.confirming = false;
      if (slot.inFlight) slot.rerun = true;
      else {
        clearTimeout(slot.timer);
        slot.timer = setTimeout(slot.tick, 0);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    for (const slot of this.slots.values()) clearTimeout(slot.timer);
  }

  /** Active findings, most severe first. */
  active() {
    return this.tracker.active().sort(compareFindings);
  }
}
