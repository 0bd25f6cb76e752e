// Helpers for tests that use the real machine: loop-mounted filesystems, root-only tools.
// Outside CI a missing capability skips the test loudly; with CI=true it fails the run.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';

/** The part of a tap test the capability checks use. */
export type TapLike = Pick<Test, 'skip' | 'fail' | 'comment'>;

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
    t.skip(`SKIPPED: ${why}`, () => {});
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

/**
 * `sleep 600` in a private mount namespace of its own (`unshare -m`): it keeps a copy of every mount
 * there was when it started, whatever the host unmounts afterwards. `first`, a shell script, runs in
 * that namespace before the sleep (to unmount some of the copies, say). Resolves once the sleep runs
 * there, so a test can unmount on the host at once (a fixed delay lost this race on a loaded machine).
 */
export async function holdMountsInNewNamespace(first?: string): Promise<{ pid: number; stop(): Promise<void> }> {
  const cmd = first === undefined ? ['sleep', '600'] : ['sh', '-c', `${first}; exec sleep 600`];
  const child = spawn('unshare', ['-m', '--propagation', 'private', ...cmd], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ours = readlinkSync('/proc/self/ns/mnt');
  const ready = () => {
    try {
      return readlinkSync(`/proc/${child.pid}/ns/mnt`) !== ours && readFileSync(`/proc/${child.pid}/comm`, 'utf8') === 'sleep\n';
    } catch {
      return false;
    }
  };
  for (let i = 0; !ready(); i++) {
    if (i > 1200 || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error('unshare -m did not start its sleep');
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    async stop() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * A fresh loop filesystem (makeLoopFs) with a holder of it in another mount namespace
 * (holdMountsInNewNamespace); both are cleaned up when the test ends. Still mounted on the host.
 */
export async function heldLoopFs(t: Pick<Test, 'teardown'>, sizeMiB: number): Promise<{ fs: LoopFs; holder: Awaited<ReturnType<typeof holdMountsInNewNamespace>> }> {
  const fs = makeLoopFs(sizeMiB);
  const holder = await holdMountsInNewNamespace().catch((err: unknown) => {
    fs.cleanup();
    throw err;
  });
  t.teardown(async () => {
    await holder.stop();
    fs.cleanup();
  });
  return { fs, holder };
}

/**
 * A FUSE mount whose daemon never answers (this process holds /dev/fuse open and never reads it):
 * statfs on it waits exactly as on a dead NFS server. `abort` closes the connection, as when the
 * daemon dies: the mount stays and answers at once, with an error. `cleanup` also unmounts it and
 * removes its directory. `at`: an existing directory to mount on (inside a tree a test walks).
 */
export function hungFuseMount(at?: string): { mountPoint: string; abort(): void; cleanup(): void } {
  const mountPoint = at ?? mkdtempSync(path.join(os.tmpdir(), 'nw-hung-'));
  const fd = openSync('/dev/fuse', 'r+');
  const r = spawnSync('mount', ['-t', 'fuse', '-o', 'fd=3,rootmode=40000,user_id=0,group_id=0', 'nwhung', mountPoint], { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
  if (r.status !== 0) {
    closeSync(fd);
    rmSync(mountPoint, { recursive: true, force: true });
    throw new Error(`mount -t fuse: ${r.stderr}`);
  }
  let open = true;
  const abort = () => {
    if (open) closeSync(fd);
    open = false;
  };
  return {
    mountPoint,
    abort,
    cleanup() {
      abort();
      spawnSync('umount', ['-l', mountPoint]);
      rmSync(mountPoint, { recursive: true, force: true });
    },
  };
}
