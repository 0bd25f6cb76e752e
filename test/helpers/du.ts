// `nodewarden du` as a process, and `du -s` to hold its numbers against: for the du tests.
import { execFile, execFileSync } from 'node:child_process';
import { BIN } from './processes.js';

/** `du -s` of a path: allocated bytes (-B1, same filesystem) and apparent bytes (-b). */
export function duOf(p: string): { allocated: number; apparent: number } {
  const n = (args: string[]) => Number(execFileSync('du', [...args, p], { encoding: 'utf8' }).split('\t')[0]);
  return { allocated: n(['-sx', '-B1']), apparent: n(['-sxb']) };
}

/** `nodewarden du ARGS` as a process. It walks this machine's whole root filesystem too, which after a cache drop takes a while on a loaded VM. */
export function runDu(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'du', ...args], { timeout: 240_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }));
  });
}

