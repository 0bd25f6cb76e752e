// Shared bench helpers: timing whole commands side by side, building the C programs, reporting ratios.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Measured {
  name: string;
  /** Wall seconds of each run. */
  runs: number[];
  median: number;
  /** Peak RSS in KiB of the last run, when GNU time is there to tell. */
  maxRssKiB?: number;
  output: string;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const GNU_TIME = ['/usr/bin/time'].find((p) => spawnSync(p, ['-f', '%M', 'true']).status === 0);

/** Runs a command once and returns wall seconds, its stdout and (with GNU time) its peak RSS. */
export function timeCommand(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): { seconds: number; stdout: string; maxRssKiB?: number } {
  const start = process.hrtime.bigint();
  const r = GNU_TIME
    ? spawnSync(GNU_TIME, ['-f', 'NW_MAXRSS=%M', cmd, ...args], { encoding: 'utf8', timeout: opts.timeoutMs ?? 300_000, maxBuffer: 256 * 1024 * 1024 })
    : spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 300_000, maxBuffer: 256 * 1024 * 1024 });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.error) throw r.error;
  const rss = /NW_MAXRSS=(\d+)/.exec(r.stderr ?? '');
  const out: { seconds: number; stdout: string; maxRssKiB?: number } = { seconds, stdout: r.stdout ?? '' };
  if (rss) out.maxRssKiB = Number(rss[1]);
  return out;
}

/**
 * Runs each contender `rounds` times, interleaved so machine noise hits all of them alike. A contender
 * with `inProcess` prints `elapsed_ms=N` and is timed by that (work inside an already running process).
 */
export function sideBySide(contenders: { name: string; cmd: string; args: string[]; rounds?: number; inProcess?: boolean }[], rounds: number): Measured[] {
  const results = contenders.map((c) => ({ name: c.name, runs: [] as number[], median: 0, output: '', maxRssKiB: undefined as number | undefined }));
  for (let round = 0; round < rounds; round++) {
    contenders.forEach((c, i) => {
      if (round >= (c.rounds ?? rounds)) return;
      const r = timeCommand(c.cmd, c.args);
      const inside = c.inProcess ? /elapsed_ms=([\d.]+)/.exec(r.stdout) : null;
      results[i]!.runs.push(inside ? Number(inside[1]) / 1000 : r.seconds);
      results[i]!.output = r.stdout;
      if (r.maxRssKiB !== undefined) results[i]!.maxRssKiB = r.maxRssKiB;
    });
  }
  for (const r of results) r.median = median(r.runs);
  return results.map((r) => {
    const m: Measured = { name: r.name, runs: r.runs, median: r.median, output: r.output };
    if (r.maxRssKiB !== undefined) m.maxRssKiB = r.maxRssKiB;
    return m;
  });
}

/** Compiles a bench C program into a temp dir. */
export function buildC(source: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-bench-'));
  const out = path.join(dir, path.basename(source, '.c'));
  execFileSync('gcc', ['-O2', '-o', out, path.join(ROOT, 'bench', 'c', source)]);
  return out;
}

export function report(title: string, results: Measured[], baseline: string): string {
  const base = results.find((r) => r.name === baseline)?.median ?? Number.NaN;
  const lines = [`${title}`, `${'contender'.padEnd(44)} ${'median s'.padStart(9)} ${'runs'.padStart(5)} ${`x ${baseline.split(' ')[0]}`.slice(0, 8).padStart(8)} ${'max RSS'.padStart(9)}`];
  for (const r of results) {
    lines.push(
      `${r.name.padEnd(44)} ${r.median.toFixed(3).padStart(9)} ${String(r.runs.length).padStart(5)} ${(r.median / base).toFixed(2).padStart(8)} ${(r.maxRssKiB ? `${Math.round(r.maxRssKiB / 1024)} MiB` : '-').padStart(9)}`,
    );
  }
  return lines.join('\n');
}

/**
 * A fresh ext4 on a loop device with room for `files` files (one inode each), mounted at `mnt`;
 * `cleanup` unmounts it, detaches the loop device and removes the image: only what this made.
 */
export function benchLoopFs(files: number, prefix: string): { mnt: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const image = path.join(dir, 'fs.img');
  const mnt = path.join(dir, 'mnt');
  let device = '';
  const cleanup = () => {
    spawnSync('umount', [mnt]);
    if (device) spawnSync('losetup', ['-d', device]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    execFileSync('truncate', ['-s', `${Math.ceil(files / 1000) + 512}M`, image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-N', String(Math.ceil(files * 1.1) + 10_000), image]);
    device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    execFileSync('mkdir', ['-p', mnt]);
    execFileSync('mount', [device, mnt]);
  } catch (err) {
    cleanup();
    throw err;
  }
  return { mnt, cleanup };
}
