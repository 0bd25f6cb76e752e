// Helpers for tests that use the real machine: loop-mounted filesystems, root-only tools.
// Outside CI a missing capability skips the test loudly; with CI=true it fails the run.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TapLike {
  skip(msg?: string): void;
  fail(msg?: string): void;
  comment(...args: unknown[]): void;
}

/** Returns why the capability is missing, or undefined when it is there. */
export function missing(requirements: { root?: boolean; commands?: string[]; paths?: string[] }): string | undefined {
  if (requirements.root && process.getuid?.() !== 0) return 'needs root';
  for (const cmd of requirements.commands ?? []) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) return `needs the ${cmd} command`;
  }
  for (const p of requirements.paths ?? []) {
    if (spawnSync('test', ['-e', p]).status !== 0) return `needs ${p}`;
  }
  return undefined;
}

/** True when the test may go on; otherwise skips (or fails under CI) with the reason. */
export function requireLive(t: TapLike, requirements: Parameters<typeof missing>[0]): boolean {
  const why = missing(requirements);
  if (why === undefined) return true;
  if (process.env['CI'] === 'true') {
    t.fail(`live test cannot run on this CI machine: ${why}`);
  } else {
    t.comment(`SKIPPED LIVE TEST: ${why} (under CI=true this fails)`);
    t.skip(`SKIPPED: ${why}`);
  }
  return false;
}

export interface LoopFs {
  image: string;
  device: string;
  mountPoint: string;
  /** Unmounts, detaches our loop device and removes the image: only what this helper made. */
  cleanup(): void;
}

/** A fresh ext4 of `sizeMiB` on a loop device, with no reserved blocks so percentages are exact. */
export function makeLoopFs(sizeMiB: number, mountOptions: string[] = []): LoopFs {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-loop-'));
  const image = path.join(dir, 'fs.img');
  const mountPoint = path.join(dir, 'mnt');
  execFileSync('truncate', ['-s', `${sizeMiB}M`, image]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
  const device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  execFileSync('mkdir', ['-p', mountPoint]);
  execFileSync('mount', ['-t', 'ext4', ...(mountOptions.length ? ['-o', mountOptions.join(',')] : []), device, mountPoint]);
  let done = false;
  return {
    image,
    device,
    mountPoint,
    cleanup() {
      if (done) return;
      done = true;
      spawnSync('umount', ['-l', mountPoint]);
      spawnSync('losetup', ['-d', device]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Adds a file so that only (100 - percent)% of the filesystem's blocks stay available, as df and kubelet
 * count it. (ext4 holds back some clusters even with -m 0, so available < free.)
 */
export function fillTo(fs: LoopFs, percent: number, name = 'fill'): void {
  const out = execFileSync('stat', ['-f', '--printf=%S %b %a', fs.mountPoint], { encoding: 'utf8' }).split(' ').map(Number);
  const [bsize, blocks, avail] = out as [number, number, number];
  const wantAvail = Math.floor((blocks * (100 - percent)) / 100);
  const add = Math.max(0, avail - wantAvail) * bsize;
  if (add > 0) execFileSync('fallocate', ['-l', String(add), path.join(fs.mountPoint, name)]);
}
