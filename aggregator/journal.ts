// The journal: the aggregator's state on disk, so history and every node's last known active set (and
// its silence) survive a restart. One JSON record per line, appended as things happen; bounded in
// bytes by compaction, which rewrites it as the current state plus the recent history that fits. It
// is read back as a stream (never whole), a torn last line is cut off before appending, and a failed
// write never stops the aggregator: it says so in /healthz and a metric, and retries by compacting.
// Writes are asynchronous, one at a time, each under a deadline: a disk that hangs (an NFS server gone,
// a frozen device) makes the journal "failing" within the deadline instead of freezing every agent and
// tailer on the event loop, and no second write is started while a stalled one still holds a thread.
import { closeSync, ftruncateSync, openSync, readSync, fstatSync, rmSync } from 'node:fs';
import { appendFile, open, rename } from 'node:fs/promises';
import { NodewardenError, errnoCode } from '../protocol/errors.js';
import { withDeadline } from '../protocol/deadline.js';
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
  | { type: 'forget'; node: string }
  /** A shared agent token spoke for a node: its node quota survives a restart. Names, never secrets. */
  | { type: 'claim'; token: string; node: string };

/** What load() hands each valid record to. */
export interface JournalSink {
  transition(t: TimedTransition): void;
  node(node: string, info: { lastMessageAt?: string; disconnectedAt?: string }): void;
  active(f: Finding): void;
  forget(node: string): void;
  claim?(token: string, node: string): void;
}

export interface JournalHealth {
  ok: boolean;
  /** The errno code (ENOSPC, EROFS, ENOENT...) of the failure, while failing; ETIMEDOUT: a write hung. */
  error?: string;
  failingSince?: string;
  bytes: number;
  /** Records waiting for the write in progress, in bytes. */
  pendingBytes: number;
  writeFailures: number;
  compactions: number;
  /** Times the disk fell behind and queued records were written by a compaction instead. */
  catchUps: number;
}

export interface JournalOptions {
  file: string;
  /**
   * The ceiling on everything the journal has on disk at any moment: the file plus compaction's
   * temporary file. The file is compacted before an append would take it past half of this, and a
   * compaction writes at most half (the state, and the newest history up to a quarter), so the two
   * together never pass it.
   */
  maxBytes: number;
  /** How often a failing journal is retried (by a full compaction). */
  retryMs?: number;
  /** A write (an append, a whole compaction) not done in this long counts as hung (default 10 s). */
  writeTimeoutMs?: number;
  /** Records waiting for the disk beyond this many bytes: it is not keeping up; fail, and compact later. */
  maxPendingBytes?: number;
  /** The state compaction writes: history oldest first, then each node's state. */
  state: () => { history: Iterable<TimedTransition>; nodes: Iterable<FleetState>; claims?: Iterable<{ token: string; node: string }> };
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
  if (type === 'claim') {
    if (typeof rec['token'] !== 'string' || rec['token'].length === 0 || rec['token'].length > 256) return false;
    sink.claim?.(rec['token'], node);
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
  /** Records appended and not yet handed to a write. */
  private pending: string[] = [];
  private pendingBytes = 0;
  /** Records were folded into the next compaction because the disk fell behind. */
  private compactNext = false;
  private catchUps = 0;
  /** A drain is queued behind the write in progress. */
  private draining = false;
  /** A write outlived its deadline and the kernel has not let go of it yet. */
  private stalled = false;
  /** The tail of the one-at-a-time chain of writes. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: JournalOptions) {}

  /**
   * Streams the file into `sink`, in chunks, each line validated. Lines that are not records (garbage,
   * overlong) are skipped and counted; a torn last line (no newline: the process died mid-write) is
   * cut off so the next append starts on a line of its own. A path that is a directory is a config
   * error; any other read failure leaves the journal failing (serve on, retry) with nothing restored.
   */
  load(sink: JournalSink): { records: number; skipped: number; repairedBytes: number } {
    // A compaction cut off by a crash leaves its temporary file: it counts against the disk bound.
    rmSync(`${this.opts.file}.tmp`, { force: true });
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

  /**
   * Queues one record and starts writing if no write is in progress; compacts when over the byte
   * bound. Never throws and never waits on the disk. Records are written in the order appended.
   */
  append(r: JournalRecord): void {
    if (this.failing) return; // the retry's compaction writes the whole state, this record included
    const line = `${JSON.stringify(r)}\n`;
    this.pending.push(line);
    this.pendingBytes += Buffer.byteLength(line);
    if (this.pendingBytes > (this.opts.maxPendingBytes ?? 8 * 1024 * 1024)) {
      // The disk is behind: rather than queue more (or give up, as it once did with EAGAIN), the next
      // write is a compaction, whose state holds every record dropped here. Nothing is lost.
      this.pending = [];
      this.pendingBytes = 0;
      this.compactNext = true;
      this.catchUps++;
    }
    if (!this.draining) {
      this.draining = true;
      void this.serial(() => this.drain());
    }
  }

  /** Everything appended so far is on disk (or the journal is failing): for tests and a clean stop. */
  flushed(): Promise<void> {
    return this.serial(async () => {
      await this.drain();
    });
  }

  /** Runs `fn` after every write already asked for: one write at a time, in order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async drain(): Promise<void> {
    this.draining = false;
    if (this.compactNext && !this.failing) {
      this.compactNext = false;
      if (!(await this.compactNow())) return;
    }
    while (this.pending.length > 0 && !this.failing) {
      const data = this.pending.join('');
      const bytes = this.pendingBytes;
      this.pending = [];
      this.pendingBytes = 0;
      // Past half the bound the file is compacted instead (the state it writes holds these records).
      if (this.bytes + bytes > this.opts.maxBytes / 2) {
        if (!(await this.compactNow())) return;
        continue;
      }
      if (!(await this.io('append', () => appendFile(this.opts.file, data)))) return;
      this.bytes += bytes;
    }
  }

  /**
   * One write under the deadline; false, and the journal failing, when it failed or hung. A write that
   * hung keeps its thread until the kernel lets go of it: until then no other write is started.
   */
  private async io(what: string, op: () => Promise<unknown>): Promise<boolean> {
    const ms = this.opts.writeTimeoutMs ?? 10_000;
    let settled = false;
    const work = op().finally(() => {
      settled = true;
      this.stalled = false;
    });
    try {
      await withDeadline(work, ms, () => new NodewardenError('NW_ERR_TIMEOUT', `a journal ${what} to ${this.opts.file} has not finished in ${ms} ms: the disk hangs or is very slow`));
      return true;
    } catch (err) {
      if (!settled) this.stalled = true;
      this.fail(err instanceof NodewardenError && err.code === 'NW_ERR_TIMEOUT' ? 'ETIMEDOUT' : (errnoCode(err) ?? 'EIO'), err);
      return false;
    }
  }

  /**
   * Rewrites the file as the current state plus as much recent history as fits in half the bound (so
   * compactions are rare), through a temporary file and a rename, after the write in progress. True
   * when it worked.
   */
  compact(): Promise<boolean> {
    return this.serial(() => this.compactNow());
  }

  private async compactNow(): Promise<boolean> {
    if (this.stalled) return false; // a hung write still holds its thread: do not hang another
    // The state taken now includes every record still waiting: they are not written again.
    this.pending = [];
    this.pendingBytes = 0;
    const { history, nodes, claims = [] } = this.opts.state();
    const stateLines: string[] = [];
    let stateBytes = 0;
    for (const c of claims) {
      const l = `${JSON.stringify({ type: 'claim', token: c.token, node: c.node })}\n`;
      stateLines.push(l);
      stateBytes += Buffer.byteLength(l);
    }
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
    // The state alone must fit in half the bound, or file and temporary file could pass it together.
    if (stateBytes > this.opts.maxBytes / 2) {
      this.fail('EFBIG', new NodewardenError('NW_ERR_CONFIG', `the aggregator's state (${stateBytes} bytes) does not fit in half the journal's bound (${this.opts.maxBytes} bytes): raise the bound and the volume behind it`));
      return false;
    }
    // The newest history that fits beside the state in a quarter of the bound (so compactions are
    // rare), written oldest first.
    const all = [...history];
    const kept: string[] = [];
    let historyBytes = 0;
    for (let i = all.length - 1; i >= 0; i--) {
      const l = `${JSON.stringify(all[i])}\n`;
      const b = Buffer.byteLength(l);
      if (stateBytes + historyBytes + b > this.opts.maxBytes / 4) break;
      kept.push(l);
      historyBytes += b;
    }
    kept.reverse();
    const tmp = `${this.opts.file}.tmp`;
    const ok = await this.io('compaction', async () => {
      const fh = await open(tmp, 'w');
      try {
        // Written in pieces of about 1 MiB: never one string of the whole file.
        let batch: string[] = [];
        let batchBytes = 0;
        for (const l of [...kept, ...stateLines]) {
          batch.push(l);
          batchBytes += l.length;
          if (batchBytes > 1024 * 1024) {
            await fh.write(batch.join(''));
            batch = [];
            batchBytes = 0;
          }
        }
        if (batch.length) await fh.write(batch.join(''));
      } finally {
        await fh.close();
      }
      await rename(tmp, this.opts.file);
    });
    if (!ok) return false;
    this.bytes = stateBytes + historyBytes;
    this.compactions++;
    this.recovered();
    return true;
  }

  private fail(code: string, err: unknown): void {
    this.writeFailures++;
    this.pending = []; // the retry's compaction writes the whole state, these records included
    this.pendingBytes = 0;
    if (!this.failing) {
      this.failing = { code, since: new Date().toISOString() };
      this.opts.onFailure?.(code, err);
    }
    if (!this.retry) {
      this.retry = setInterval(() => void this.compact(), this.opts.retryMs ?? 10_000);
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
      pendingBytes: this.pendingBytes,
      writeFailures: this.writeFailures,
      compactions: this.compactions,
      catchUps: this.catchUps,
    };
  }

  /** Stops retrying and waits for what was appended to be written, at most one write deadline. */
  async close(): Promise<void> {
    clearInterval(this.retry);
    this.retry = undefined;
    const ms = this.opts.writeTimeoutMs ?? 10_000;
    await withDeadline(this.flushed(), ms, () => undefined);
  }
}
