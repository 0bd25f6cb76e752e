// The one contract every place findings go implements: the aggregator link, the agent's HTTP endpoints,
// the Kubernetes exporter. An exporter never subscribes itself to the runner; agent/daemon.ts hands
// each runner event to every exporter in one loop (node-problem-detector's loop over its exporters).
// What an exporter needs to read besides the events (the active set for a snapshot) it gets as a
// RunnerView: read-only, with no way to subscribe.
import type { ErrorCode } from '../../protocol/errors.js';
import type { Finding } from '../../protocol/finding.js';
import type { CollectorStatus } from '../runner.js';
import type { Transition } from '../tracker.js';

export interface Exporter {
  /** Names it in the log when one of its hooks throws. */
  readonly name: string;
  /** A finding fired, changed meaning, or resolved. */
  onTransition?(t: Transition): void | Promise<void>;
  /** An active finding's numbers changed, its meaning did not (no tail line, no Event). */
  onRefresh?(f: Finding): void | Promise<void>;
  /** A collector finished a run. */
  onStatus?(st: CollectorStatus): void | Promise<void>;
  /** Called once before the runner starts; a rejection stops the agent from starting. */
  start?(): void | Promise<void>;
  stop(): void | Promise<void>;
}

/** What an exporter may read of the runner. */
export interface RunnerView {
  /** The enabled collectors. */
  names(): string[];
  /** Active findings, most severe first. */
  active(): Finding[];
  /** Each collector's last run. */
  statuses(): CollectorStatus[];
}

/** The code logged when an exporter's hook throws or rejects. */
export const EXPORTER_FAILED: ErrorCode = 'NW_ERR_EXPORTER';
