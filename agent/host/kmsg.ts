// The kernel-log reader: /dev/kmsg under --host-root, read without ever blocking a libuv worker.
//
// Why O_NONBLOCK and polling (not a worker thread, not fs.read in the thread pool): a blocking read of
// /dev/kmsg waits until the kernel logs something, and Node's fs.read runs it on one of the four libuv
// threads, which it would hold for ever (starving every other fs call and dns lookup). Node has no
// poll(2) and no lseek on a character device, and fs.watch does not fire for it. Opened O_NONBLOCK, a
// read returns one record or EAGAIN at once, so reading synchronously on the main thread until EAGAIN
// costs microseconds per record and never waits; the kernel collector calls read() on its interval
// (1 s by default), so a record is seen within about a second. A worker thread would add a second
// event loop and a message channel for no gain at this rate.
//
// Losses are counted, never silent: EPIPE (the ring overwrote records we had not read yet) moves our
// position to the oldest record left, and the gap between sequence numbers is exactly how many were
// lost. A cursor (boot id + last sequence number) persisted in a small JSON file lets a restarted agent
// skip what it already read and pick up what was logged while it was down (what the ring still holds).
// The reader never dies: any error closes the fd, is reported in the batch, and the next read reopens.
import { closeSync, constants, openSync, readFileSync, readSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { errnoCode, errorMessage } from '../../protocol/errors.js';
import type { HostAccess, KernelLog, KernelLogBatch, KmsgRecord } from '../../collectors/types.js';

/** The most bytes the kernel puts in one record (CONSOLE_EXT_LOG_MAX is 8 KiB). */
const RECORD_BUF = 8192;
/** At most this many records per read() call: the rest wait in the ring (or are counted lost). */
export const MAX_RECORDS_PER_READ = 50_000;

/** Unescapes the kernel's \xNN escapes of non-printable bytes. */
function unescape(s: string): string {
  return s.includes('\\x') ? s.replace(/\\x([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))) : s;
}

/**
 * One /dev/kmsg record: `PRIO,SEQ,USEC,FLAGS[,more];MESSAGE\n[ KEY=VALUE\n]...`. PRIO is facility*8 +
 * level; FLAGS `-` (whole), `c` (a line to be continued, kernels before 4.9), `+` (its continuation).
 * bootWallMs is the wall-clock time of monotonic zero. Undefined when malformed. Pure.
 */
export function parseKmsgRecord(text: string, bootWallMs: number): KmsgRecord | undefined {
  const semi = text.indexOf(';');
  if (semi <= 0) return undefined;
  const fields = text.slice(0, semi).split(',');
  if (fields.length < 4) return undefined;
  const prio = Number(fields[0]);
  const seq = Number(fields[1]);
  const usec = Number(fields[2]);
  if (!Number.isInteger(prio) || prio < 0 || !Number.isInteger(seq) || seq < 0 || !Number.isFinite(usec) || usec < 0) return undefined;
  const lines = text.slice(semi + 1).split('\n');
  const dict: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    if (!l.startsWith(' ')) continue;
    const eq = l.indexOf('=');
    if (eq > 1) dict[l.slice(1, eq)] = unescape(l.slice(eq + 1));
  }
  const flag = fields[3] ?? '-';
  const rec: KmsgRecord = {
    seq,
    facility: prio >> 3,
    level: prio & 7,
    usec,
    wallMs: Math.round(bootWallMs + usec / 1000),
    message: unescape(lines[0] ?? ''),
  };
  if (flag.startsWith('c')) rec.cont = 'start';
  else if (flag.startsWith('+')) rec.cont = 'more';
  if (Object.keys(dict).length > 0) rec.dict = dict;
  return rec;
}

/** Joins old kernels' continuation fragments (`c` then `+`) into the record they continue. Pure. */
export function joinContinuations(records: readonly KmsgRecord[]): KmsgRecord[] {
  const out: KmsgRecord[] = [];
  for (const r of records) {
    const last = out[out.length - 1];
    if (r.cont === 'more' && last && last.cont === 'start' && last.facility === r.facility) {
      out[out.length - 1] = { ...last, message: last.message + r.message };
      continue;
    }
    out.push(r);
  }
  return out.map((r) => {
    if (r.cont === undefined) return r;
    const { cont: _c, ...rest } = r;
    return rest;
  });
}

export interface KmsgCursor {
  bootId: string;
  seq: number;
}

export function parseCursor(text: string | undefined): KmsgCursor | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null) return undefined;
    const { bootId, seq } = v as Record<string, unknown>;
    if (typeof bootId !== 'string' || bootId.length > 64 || typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0) return undefined;
    return { bootId, seq };
  } catch {
    return undefined;
  }
}

export interface KmsgReaderOptions {
  host: HostAccess;
  /** Where the cursor is kept (agent's filesystem); undefined: no state (check, tests). */
  cursorFile?: string;
  /** Override of the device path (tests); default hostPath('/dev/kmsg'). */
  device?: string;
  /** Wall-clock ms of monotonic zero; default from process.hrtime (CLOCK_MONOTONIC, the clock kmsg uses). */
  bootWallMs?: () => number;
  maxRecordsPerRead?: number;
}

/** Wall-clock time of CLOCK_MONOTONIC zero: the clock of kmsg timestamps. */
export function monotonicZeroWallMs(): number {
  return Date.now() - Number(process.hrtime.bigint() / 1_000_000n);
}

export class KmsgReader implements KernelLog {
  private fd: number | undefined;
  private lastSeq: number | undefined;
  private bootId: string | undefined;
  private cursorLoaded = false;
  private readonly buf = Buffer.alloc(RECORD_BUF);
  /** Totals since this reader started, for /metrics and evidence. */
  readonly totals = { records: 0, lost: 0, overflows: 0, errors: 0, reopens: 0 };
  private lastError: string | undefined;

  constructor(private readonly opts: KmsgReaderOptions) {}

  health(): { ok: boolean; error?: string; totals: KmsgReader['totals'] } {
    return this.lastError ? { ok: false, error: this.lastError, totals: { ...this.totals } } : { ok: true, totals: { ...this.totals } };
  }

  private device(): string {
    return this.opts.device ?? this.opts.host.hostPath('/dev/kmsg');
  }

  private async loadCursor(): Promise<void> {
    if (this.cursorLoaded) return;
    this.cursorLoaded = true;
    const bootText = await this.opts.host.readText(this.opts.host.procPath('sys', 'kernel', 'random', 'boot_id')).catch(() => undefined);
    this.bootId = bootText?.trim() || undefined;
    if (!this.opts.cursorFile) return;
    let text: string | undefined;
    try {
      text = readFileSync(this.opts.cursorFile, 'utf8');
    } catch {
      text = undefined;
    }
    const cursor = parseCursor(text);
    // Another boot's sequence numbers mean nothing in this one: start from the ring's beginning.
    if (cursor && this.bootId && cursor.bootId === this.bootId) this.lastSeq = cursor.seq;
  }

  private saveCursor(): void {
    const file = this.opts.cursorFile;
    if (!file || !this.bootId || this.lastSeq === undefined) return;
    try {
      mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, JSON.stringify({ bootId: this.bootId, seq: this.lastSeq }));
      renameSync(tmp, file);
    } catch (err) {
      this.lastError = `cannot save the kmsg cursor to ${file}: ${errorMessage(err)}`;
    }
  }

  private close(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        /* already gone */
      }
      this.fd = undefined;
    }
  }

  stop(): void {
    this.close();
  }

  async read(): Promise<KernelLogBatch> {
    await this.loadCursor();
    const batch: KernelLogBatch = { status: 'ok', records: [], lost: 0, overflows: 0 };
    if (this.bootId) batch.bootId = this.bootId;
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.device(), constants.O_RDONLY | constants.O_NONBLOCK);
        if (this.totals.records > 0 || this.totals.errors > 0) this.totals.reopens++;
      } catch (err) {
        const code = errnoCode(err);
        this.totals.errors++;
        if (code === 'ENOENT') return { ...batch, status: 'absent', error: `${this.device()} does not exist` };
        this.lastError = `cannot open ${this.device()}: ${errorMessage(err)}`;
        return { ...batch, status: 'error', error: this.lastError };
      }
    }
    const bootWall = (this.opts.bootWallMs ?? monotonicZeroWallMs)();
    const max = this.opts.maxRecordsPerRead ?? MAX_RECORDS_PER_READ;
    const raw: KmsgRecord[] = [];
    let more = true;
    while (raw.length < max) {
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, RECORD_BUF, null);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'EAGAIN') {
          more = false;
          break;
        }
        if (code === 'EPIPE') {
          // The ring overwrote what we had not read; the next read gives the oldest record left and
          // the sequence gap says how many were lost.
          batch.overflows++;
          this.totals.overflows++;
          continue;
        }
        if (code === 'EINVAL') continue; // a record longer than our buffer: skipped, its seq gap counts it
        this.totals.errors++;
        this.lastError = `reading ${this.device()}: ${errorMessage(err)}`;
        this.close();
        batch.status = 'error';
        batch.error = this.lastError;
        break;
      }
      if (n === 0) {
        more = false;
        break;
      }
      const rec = parseKmsgRecord(this.buf.toString('utf8', 0, n), bootWall);
      if (!rec) continue;
      if (this.lastSeq !== undefined) {
        if (rec.seq <= this.lastSeq) continue; // already read before a restart (the cursor)
        const gap = rec.seq - this.lastSeq - 1;
        if (gap > 0) batch.lost += gap;
      }
      this.lastSeq = rec.seq;
      raw.push(rec);
    }
    if (batch.status === 'ok') this.lastError = undefined;
    batch.more = more && batch.status === 'ok';
    this.totals.records += raw.length;
    this.totals.lost += batch.lost;
    batch.records = joinContinuations(raw);
    if (raw.length > 0) this.saveCursor();
    return batch;
  }
}
