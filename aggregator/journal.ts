// The journal: the aggregator's state on disk, so history and every node's last known active set (and
// its silence) survive a restart. One JSON record per line, appended as things happen; bounded in
// bytes by compaction, which rewrites it as the current state plus the recent history that fits. It
// is read back as a stream (never whole), a torn last line is cut off before appending, and a failed
// write never stops the aggregator: it says so in /healthz and a metric, and retries by compacting.
import { closeSync, ftruncateSync, openSync, readSync, renameSync, statSync, writeSync, fstatSync, appendFileSync } from 'node:fs';
import { NodewardenError, errnoCode } from '../protocol/errors.js';
import type { Problem } from '../protocol/schema.js';
import { findingSpec, NODE_NAME } from '../protocol/wire.js';
import type { Finding } from '../protocol/finding.js';
import type { FleetState, TimedTransition } from './fleet.js';

/**
 * Records, one per line. A transition is history and changes its node's active set; `node` starts a
 * node's state (it exists, its active set is emptied), `active` adds to it; `forget` removes a node.
 */
export type JournalRecord =
  | TimedTransition
  | { type: 'node'; node: string; lastMessageAt?: string; disconnectedAt?: string }
  | { type: 'active'; finding: Finding }
  | { type: 'forget'; node: string };

/** What load() hands each valid record to. */
export interface JournalSink {
  transition(t: TimedTransition): void;
  node(node: string, info: { lastMessageAt?: string; disconnectedAt?: string }): void;
  active(f: Finding): void;
  forget(node: string): void;
}

export interface JournalHealth {
  ok: boolean;
  /** The errno code (ENOSPC, EROFS, ENOENT...) of the failure, while failing. */
  error?: string;
  failingSince?: string;
  bytes: number;
  writeFailures: number;
  compactions: number;
}

export interface JournalOptions {
  file: string;
  /** The file's ceiling in bytes; compaction brings it back to half. */
  maxBytes: number;
  /** How often a failing journal is retried (by a full compaction). */
  retryMs?: number;
  /** The state compaction writes: history oldest first, then each node's state. */
  state: () => { history: Iterable<TimedTransition>; nodes: Iterable<FleetState> };
  onFailure?: (code: string, err: unknown) => void;
}

/** Lines longer than this are not ours (one finding is at most ~24 KiB, escaped a few times that). */
const MAX_LINE_BYTES = 1024 * 1024;
const READ_CHUNK = 64 * 1024;
const TRANSITIONS = new Set(['firing', 'updated', 'resolved']);
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function validFinding(f: unknown): f is Finding {
  const problems: Problem[] = [];
  findingSpec.check(f, 'finding', problems);
  return problems.length === 0;
}

const optIso = (v: unknown) => v === undefined || (typeof v === 'string' && ISO.test(v));

/** Validates one parsed line and hands it on; false when it is not a record of ours. */
function dispatch(r: unknown, sink: JournalSink): boolean {
  if (typeof r !== 'object' || r === null) return false;
  const rec = r as Record<string, unknown>;
  const type = rec['type'];
  if (typeof type === 'string' && TRANSITIONS.has(type)) {
    if (typeof rec['at'] !== 'string' || !ISO.test(rec['at']) || !validFinding(rec['finding'])) return false;
    sink.transition(rec as unknown as TimedTransition);
    return true;
  }
  if (type === 'active') {
    if (!validFinding(rec['finding'])) return false;
    sink.active(rec['finding']);
    return true;
  }
  const node = rec['node'];
  if (typeof node !== 'string' || !NODE_NAME.test(node)) return false;
  if (type === 'node') {
    if (!optIso(rec['lastMessageAt']) || !optIso(rec['disconnectedAt'])) return false;
    sink.node(node, { ...(rec['lastMessageAt'] ? { lastMessageAt: rec['lastMessageAt'] as string } : {}), ...(rec['disconnectedAt'] ? { disconnectedAt: rec['disconnectedAt'] as string } : {}) });
    return true;
  }
  if (type === 'forget') {
    sink.forget(node);
    return true;
  }
  return false;
}

export class Journal {
  private bytes = 0;
  private failing: { code: string; since: string } | undefined;
  private writeFailures = 0;
  private compactions = 0;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly opts: JournalOptions) {}

  /**
   * Streams the file into `sink`, in chunks, each line validated. Lines that are not records (garbage,
   * overlong) are skipped and counted; a torn last line (no newline: the process died mid-write) is
   * cut off so the next append starts on a line of its own. A path that is a directory is a config
   * error; any other read failure leaves the journal failing (serve on, retry) with nothing restored.
   */
  load(sink: JournalSink): { records: number; skipped: number; repairedBytes: number } {
    let fd: number;
    try {
      fd = openSync(this.opts.file, 'r+');
    } catch (err) {
      const code = errnoCode(err) ?? 'EIO';
      if (code === 'ENOENT') return { records: 0, skipped: 0, repairedBytes: 0 };
      if (code === 'EISDIR') throw new NodewardenError('NW_ERR_CONFIG', `--journal ${this.opts.file} is a directory; give a file path inside it, e.g. ${this.opts.file.replace(/\/+$/, '')}/journal.ndjson`);
      this.fail(code, err);
      return { records: 0, skipped: 0, repairedBytes: 0 };
    }
    let records = 0;
    let skipped = 0;
    let repairedBytes = 0;
    try {
      if (fstatSync(fd).isDirectory()) throw new NodewardenError('NW_ERR_CONFIG', `--journal ${this.opts.file} is a directory`);
      const buf = Buffer.alloc(READ_CHUNK);
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let overlong = false;
      let pos = 0;
      let endOfLastLine = 0;
      const line = (parts: Buffer[]) => {
        const text = Buffer.concat(parts).toString('utf8');
        if (text.trim() === '') return;
        try {
          if (dispatch(JSON.parse(text), sink)) records++;
          else skipped++;
        } catch {
          skipped++;
        }
      };
      for (;;) {
        const n = readSync(fd, buf, 0, READ_CHUNK, pos);
        if (n === 0) break;
        let start = 0;
        for (let i = buf.indexOf(10, 0); i !== -1 && i < n; i = buf.indexOf(10, i + 1)) {
          if (!overlong) line([...pending, buf.subarray(start, i)]);
          else skipped++;
          pending = [];
          pendingBytes = 0;
          overlong = false;
          start = i + 1;
          endOfLastLine = pos + i + 1;
        }
        if (start < n && !overlong) {
          pending.push(Buffer.from(buf.subarray(start, n)));
          pendingBytes += n - start;
          if (pendingBytes > MAX_LINE_BYTES) {
            overlong = true;
            pending = [];
            pendingBytes = 0;
          }
        }
        pos += n;
      }
      if (pos > endOfLastLine) {
        repairedBytes = pos - endOfLastLine;
        skipped++;
        ftruncateSync(fd, endOfLastLine);
      }
      this.bytes = endOfLastLine;
    } catch (err) {
      if (err instanceof NodewardenError) throw err;
      this.fail(errnoCode(err) ?? 'EIO', err);
    } finally {
      closeSync(fd);
    }
    return { records, skipped, repairedBytes };
  }

  /** Appends one record; compacts when over the byte bound. Never throws. */
  append(r: JournalRecord): void {
    if (this.failing) return; // the retry's compaction writes the whole state, this record included
    const line = `${JSON.stringify(r)}\n`;
    try {
      appendFileSync(this.opts.file, line);
      this.bytes += Buffer.byteLength(line);
    } catch (err) {
      this.fail(errnoCode(err) ?? 'EIO', err);
      return;
    }
    if (this.bytes > this.opts.maxBytes) this.compact();
  }

  /**
   * Rewrites the file as the current state plus as much recent history as fits in half the bound (so
   * compactions are rare), through a temporary file and a rename. True when it worked.
   */
  compact(): boolean {
    const { history, nodes } = this.opts.state();
    const stateLines: string[] = [];
    let stateBytes = 0;
    for (const n of nodes) {
      const head = `${JSON.stringify({ type: 'node', node: n.node, ...(n.lastMessageAt ? { lastMessageAt: n.lastMessageAt } : {}), ...(n.disconnectedAt ? { disconnectedAt: n.disconnectedAt } : {}) })}\n`;
      stateLines.push(head);
      stateBytes += Buffer.byteLength(head);
      for (const f of n.active) {
        const l = `${JSON.stringify({ type: 'active', finding: f })}\n`;
        stateLines.push(l);
        stateBytes += Buffer.byteLength(l);
      }
    }
    // The newest history that fits beside the state, written oldest first.
    const all = [...history];
    const kept: string[] = [];
    let historyBytes = 0;
    for (let i = all.length - 1; i >= 0; i--) {
      const l = `${JSON.stringify(all[i])}\n`;
      const b = Buffer.byteLength(l);
      if (stateBytes + historyBytes + b > this.opts.maxBytes / 2) break;
      kept.push(l);
      historyBytes += b;
    }
    kept.reverse();
    const tmp = `${this.opts.file}.tmp`;
    try {
      const fd = openSync(tmp, 'w');
      try {
        // Written in pieces of about 1 MiB: never one string of the whole file.
        let batch: string[] = [];
        let batchBytes = 0;
        const flush = () => {
          if (batch.length) writeSync(fd, batch.join(''));
          batch = [];
          batchBytes = 0;
        };
        for (const l of [...kept, ...stateLines]) {
          batch.push(l);
          batchBytes += l.length;
          if (batchBytes > 1024 * 1024) flush();
        }
        flush();
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.opts.file);
      this.bytes = statSync(this.opts.file).size;
      this.compactions++;
      this.recovered();
      return true;
    } catch (err) {
      this.fail(errnoCode(err) ?? 'EIO', err);
      return false;
    }
  }

  private fail(code: string, err: unknown): void {
    this.writeFailures++;
    if (!this.failing) {
      this.failing = { code, since: new Date().toISOString() };
      this.opts.onFailure?.(code, err);
    }
    if (!this.retry) {
      this.retry = setInterval(() => this.compact(), this.opts.retryMs ?? 10_000);
      this.retry.unref();
    }
  }

  private recovered(): void {
    this.failing = undefined;
    clearInterval(this.retry);
    this.retry = undefined;
  }

  health(): JournalHealth {
    return {
      ok: !this.failing,
      ...(this.failing ? { error: this.failing.code, failingSince: this.failing.since } : {}),
      bytes: this.bytes,
      writeFailures: this.writeFailures,
      compactions: this.compactions,
    };
  }

  close(): void {
    clearInterval(this.retry);
    this.retry = undefined;
  }
}
