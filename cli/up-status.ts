// The state of things for a person watching `up`: a summary when the first cycle is done, then a quiet
// status line (collectors run, findings by severity, nodes
// connected), so "healthy" can be told from "stuck". On a terminal the line is redrawn in place and
// stream lines are printed above it; in a pipe it is a plain line at most every few minutes.
import type { Severity } from '../protocol/finding.js';
import { StatusLine } from './status.js';

export interface StatusSnapshot {
  /** Collector runs finished since the start, and how many of those failed or timed out. */
  runs: number;
  failedRuns: number;
  /** Collectors whose last run failed or timed out, by name. */
  failing: string[];
  /** When the last collector run finished (ms since the epoch), if any did. */
  lastRunAt?: number;
  findings: Record<Severity, number>;
  /** Nodes whose agent is connected, of those known; absent when the view has no such notion. */
  nodes?: { connected: number; total: number };
}

const ago = (ms: number): string => (ms < 1500 ? 'just now' : ms < 90_000 ? `${Math.round(ms / 1000)}s ago` : `${Math.round(ms / 60_000)}m ago`);

/** `findings: 1 critical, 2 warning` or `no findings`. */
export function formatFindingCounts(c: Record<Severity, number>): string {
  const parts = (['critical', 'warning', 'info'] as const).filter((s) => c[s] > 0).map((s) => `${c[s]} ${s}`);
  return parts.length === 0 ? 'no findings' : `findings: ${parts.join(', ')}`;
}

/** One line: `12:04:05  87 collector runs, last just now  ·  no findings  ·  1/1 nodes connected`. */
export function formatStatus(s: StatusSnapshot, now: number): string {
  const clock = new Date(now).toISOString().slice(11, 19);
  const failed = s.failedRuns > 0 ? ` (${s.failedRuns} failed or timed out)` : '';
  const runs = s.runs === 0 ? 'no collector has finished yet' : `${s.runs} collector run${s.runs === 1 ? '' : 's'}${failed}, last ${ago(now - (s.lastRunAt ?? now))}`;
  const failing = s.failing.length > 0 ? `  ·  failing: ${s.failing.join(', ')}` : '';
  const nodes = s.nodes ? `  ·  ${s.nodes.connected}/${s.nodes.total} node${s.nodes.total === 1 ? '' : 's'} connected` : '';
  return `${clock}  ${runs}${failing}  ·  ${formatFindingCounts(s.findings)}${nodes}`;
}

export interface UpStatusOptions {
  /** Where the status goes (stderr), and whether it is a terminal (redraw in place) or not. */
  write(text: string): void;
  tty: boolean;
  /** Where stream lines go (stdout); on a terminal the status line is cleared before them and redrawn after. */
  out(line: string): void;
  snapshot(): StatusSnapshot;
  /** Redraw period on a terminal (default 1 s) and the period of a plain line in a pipe (default 5 min). */
  ttyEveryMs?: number;
  pipeEveryMs?: number;
  /** The terminal's width: the line is cut to it, so redrawing in place never leaves wrapped remains. */
  columns?: number;
  now?: () => number;
}

/** up's status: a collector snapshot drawn on a timer through the one StatusLine that `tail` uses too. */
export class UpStatusLine {
  private timer: NodeJS.Timeout | undefined;
  private readonly line_: StatusLine;
  private readonly now: () => number;

  constructor(private readonly opts: UpStatusOptions) {
    this.now = opts.now ?? Date.now;
    this.line_ = new StatusLine({ tty: opts.tty, write: opts.write, out: opts.out, ...(opts.columns !== undefined ? { columns: opts.columns } : {}), now: this.now });
  }

  start(): void {
    const every = this.opts.tty ? (this.opts.ttyEveryMs ?? 1000) : (this.opts.pipeEveryMs ?? 5 * 60_000);
    this.timer = setInterval(() => this.tick(), every);
    this.timer.unref();
    if (this.opts.tty) this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.line_.clear();
  }

  /** A line of the stream: printed above the status line. */
  line(text: string): void {
    this.line_.line(text);
  }

  /** A message for the person (the summary, a notice): printed above the status line, on the status stream. */
  note(text: string): void {
    this.line_.clear();
    this.opts.write(`${text}\n`);
    if (this.opts.tty && this.timer) this.tick();
  }

  /** The periodic update: redrawn in place on a terminal, a plain line (on its own timer) in a pipe. */
  tick(): void {
    const text = formatStatus(this.opts.snapshot(), this.now());
    this.line_.show(this.opts.tty ? text : `status ${text}`, true);
  }
}

export interface CollectorOutcome {
  name: string;
  status: string;
  durationMs: number;
  detail?: string;
}

/**
 * The summary once every collector has run: what ran and how, and what that means for the node.
 * `healthy` only when every collector could look and nothing fires: a collector with no data (mounts
 * without hostPID, pods without an API server), unavailable (its runtime does not answer), failed or
 * timed out did not look, so its silence says nothing.
 */
export function formatSummary(statuses: readonly CollectorOutcome[], findings: Record<Severity, number>, elapsedMs: number): string {
  const each = statuses.map((s) => `${s.name} ${s.status}${s.status === 'ok' ? '' : s.detail ? ` (${s.detail})` : ''}`);
  const blind = statuses.filter((s) => s.status !== 'ok').map((s) => s.name);
  const total = findings.critical + findings.warning + findings.info;
  const verdict =
    total > 0
      ? `${total} finding${total === 1 ? '' : 's'} (${formatFindingCounts(findings).replace('findings: ', '')}), listed above; changes print as they happen.`
      : blind.length > 0
        ? `no findings, but ${blind.length === 1 ? `${blind[0]} could not look` : `${blind.length} collectors could not look (${blind.join(', ')})`}: not known to be healthy.`
        : 'this node is healthy: no findings. Changes print as they happen.';
  return `first cycle done in ${(elapsedMs / 1000).toFixed(1)}s: ${each.join(', ')}\n${verdict}`;
}
