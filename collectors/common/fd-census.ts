// The socket census: for each process, how many of its fds are sockets. This is the hot path, so it is
// plain synchronous syscalls (one readdir per process, one readlink per fd, the same floor as C),
// split across a worker thread on large hosts because both cores are there to use.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { parseNofileSoftLimit } from './process.js';

export interface CensusRow {
  pid: number;
  sockets: number;
  fds: number;
  /** Soft nofile limit; read only for processes with at least `limitFrom` sockets. */
  nofileSoft?: number;
}

export interface CensusRequest {
  procDir: string;
  pids: number[];
  /** Read /proc/PID/limits only for processes holding at least this many sockets. */
  limitFrom: number;
}

/** Counts socket fds for each pid; processes that vanish mid-scan are skipped. Only holders are returned. */
export function censusSockets(req: CensusRequest): CensusRow[] {
  const rows: CensusRow[] = [];
  for (const pid of req.pids) {
    const base = `${req.procDir}/${pid}/fd/`;
    let fds: string[];
    try {
      fds = readdirSync(base);
    } catch {
      continue; // gone, or a kernel thread we may not read
    }
    let sockets = 0;
    for (const fd of fds) {
      try {
        // "socket:[inode]"
        const link = readlinkSync(base + fd);
        if (link.charCodeAt(0) === 115 && link.startsWith('socket:')) sockets++;
      } catch {
        // the fd closed between readdir and readlink
      }
    }
    if (sockets === 0) continue;
    const row: CensusRow = { pid, sockets, fds: fds.length };
    if (sockets >= req.limitFrom) {
      try {
        const soft = parseNofileSoftLimit(readFileSync(`${req.procDir}/${pid}/limits`, 'utf8'));
        if (soft !== undefined) row.nofileSoft = soft;
      } catch {
        // gone
      }
    }
    rows.push(row);
  }
  return rows;
}

/** Below this many processes a worker's start-up costs more than it saves. */
export const WORKER_THRESHOLD = 600;

function workerUrl(): URL {
  // Compiled: ./fd-census-worker.js; under the test runner's TypeScript loader: the .ts source.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./fd-census-worker${ext}`, import.meta.url);
}

/**
 * Runs the census, sharing the pids with one worker thread on hosts with many processes and more than
 * one core. Falls back to the calling thread if the worker cannot start.
 */
export async function runSocketCensus(req: CensusRequest): Promise<CensusRow[]> {
  if (req.pids.length < WORKER_THRESHOLD || os.availableParallelism() < 2) return censusSockets(req);
  // Interleave so both halves see a similar mix of busy and idle processes.
  const mine: number[] = [];
  const theirs: number[] = [];
  req.pids.forEach((pid, i) => (i % 2 === 0 ? mine : theirs).push(pid));
  let worker: Worker;
  try {
    worker = new Worker(workerUrl(), { workerData: { ...req, pids: theirs } });
  } catch {
    return censusSockets(req);
  }
  const fromWorker = new Promise<CensusRow[] | undefined>((resolve) => {
    worker.once('message', (rows: CensusRow[]) => resolve(rows));
    worker.once('error', () => resolve(undefined));
    worker.once('exit', () => resolve(undefined));
  });
  const local = censusSockets({ ...req, pids: mine });
  const remote = (await fromWorker) ?? censusSockets({ ...req, pids: theirs });
  void worker.terminate();
  return local.concat(remote);
}
