// The quiet status line of `tail` (and `up`): findings by severity, nodes connected, collectors run. On a
// terminal it is one line at the bottom, rewritten in place, that other output scrolls above; in a pipe
// it is an ordinary line at most every few minutes, so a log of a healthy quiet cluster still shows
// that the stream is alive. One module, so `tail` and `up` say it the same way.
import type { Finding, Severity } from '../protocol/finding.js';
import type { Painter } from './format.js';

export interface FleetStatus {
  critical: number;
  warning: number;
  info: number;
  /** Nodes the aggregator knows, and how many of them have their agent connected. */
  nodes?: { connected: number; total: number };
  /** Collector runs (up: this machine's agent). */
  collectors?: { ok: number; total: number };
  /** The stream itself: up, or down since when. */
  link?: { up: boolean; since?: Date };
}

export function countBySeverity(findings: Iterable<Finding>): Record<Severity, number> {
  const out: Record<Severity, number> = { critical: 0, warning: 0, info: 0 };
  for (const f of findings) if (f.state !== 'resolved') out[f.severity]++;
  return out;
}

const clock = (d: Date) => d.toISOString().slice(11, 19);

/** `12:00:05  2 critical · 1 warning · 0 info  ·  4 of 5 nodes connected` */
export function formatStatus(s: FleetStatus, p: Painter, at: Date): string {
  const sev = (n: number, severity: Severity) => (n > 0 ? p.severity(severity, `${n} ${severity}`) : `${n} ${severity}`);
  const parts = [`${sev(s.critical, 'critical')} · ${sev(s.warning, 'warning')} · ${sev(s.info, 'info')}`];
  if (s.nodes) parts.push(`${s.nodes.connected} of ${s.nodes.total} node${s.nodes.total === 1 ? '' : 's'} connected`);
  if (s.collectors) parts.push(`collectors ${s.collectors.ok}/${s.collectors.total} ok`);
  if (s.link && !s.link.up) parts.push(p.severity('critical', `aggregator lost${s.link.since ? ` since ${clock(s.link.since)}` : ''}`));
  if (s.critical + s.warning + s.info === 0 && (!s.link || s.link.up)) parts.push('all quiet');
  return p.dim(`${clock(at)}  `) + parts.join('  ·  ');
}

/** A one-line summary for when the stream starts: `3 active findings on 2 nodes: 1 critical, 2 warning, 0 info`. */
export function formatSummary(findings: readonly Finding[]): string {
  const c = countBySeverity(findings);
  const nodes = new Set(findings.map((f) => f.node)).size;
  if (findings.length === 0) return 'no active findings';
  return `${findings.length} active finding${findings.length === 1 ? '' : 's'} on ${nodes} node${nodes === 1 ? '' : 's'}: ${c.critical} critical, ${c.warning} warning, ${c.info} info`;
}

export interface StatusLineOptions {
  /** Rewrite in place (a terminal) or print whole lines (a pipe). */
  tty: boolean;
  /** Where the status goes, raw, no newline added. */
  write(text: string): void;
  /** Where ordinary lines go when that is another stream (up: findings on stdout, status on stderr); default write. */
  out?(line: string): void;
  /** In a pipe, at most one status line this often (default 5 minutes). */
  pipeEveryMs?: number;
  /** The terminal's width: the line is cut to it, so redrawing in place never leaves wrapped remains. */
  columns?: number;
  now?: () => number;
}

/** One status line under a stream of lines: `tail` and `up` both draw theirs with it. */
export class StatusLine {
  private shown = '';
  private lastPrinted = Number.NEGATIVE_INFINITY;

  constructor(private readonly opts: StatusLineOptions) {}

  /** Shows the status: in place on a terminal; in a pipe only if the last one is old enough (or `force`). */
  show(text: string, force = false): void {
    if (this.opts.tty) {
      const max = (this.opts.columns ?? 200) - 1;
      this.shown = text.length > max ? `${text.slice(0, max - 1)}…` : text;
      this.opts.write(`\r\x1b[2K${this.shown}`);
      return;
    }
    const now = (this.opts.now ?? Date.now)();
    if (!force && now - this.lastPrinted < (this.opts.pipeEveryMs ?? 5 * 60_000)) return;
    this.lastPrinted = now;
    this.opts.write(`${text}\n`);
  }

  /** Prints one ordinary line above the status line. */
  line(text: string): void {
    if (!this.opts.out) {
      if (this.opts.tty && this.shown) this.opts.write(`\r\x1b[2K${text}\n${this.shown}`);
      else this.opts.write(`${text}\n`);
      return;
    }
    const shown = this.shown;
    this.clear();
    this.opts.out(text);
    if (shown) this.show(shown);
  }

  /** Removes the status line (a terminal), before exiting. */
  clear(): void {
    if (this.opts.tty && this.shown) this.opts.write('\r\x1b[2K');
    this.shown = '';
  }
}
