// Real dockerd + containerd for tests: the offline busybox image, containers with --network none, and
// cleanup of exactly what a test made. Uses Debian's docker CLI (/usr/bin/docker) to set things up;
// nodewarden itself reads state through the APIs.
import { execFileSync, spawnSync } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { mkdtempSync, readdirSync, rmSync, symlinkSync, mkdirSync, copyFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { followDockerEvents, type ContainerEvent, type EventSink } from '../../agent/runtime/events.js';
import { requireLive, type TapLike } from './live.js';
export { DOCKER, TEST_IMAGE, docker, dockerTry, runContainer, removeContainer, removeContainersAsync, reapLeakedShims, inspectField, ourDaemonPid, startRuntime, startContainerd, makePersistentDrift, makeImmutableContainer, copyToContainerd } from '../../bench/runtime-faults.js';
import { DOCKER, TEST_IMAGE, dockerTry } from '../../bench/runtime-faults.js';

export const DOCKER_SOCK = '/var/run/docker.sock';
export const CONTAINERD_SOCK = '/run/containerd/containerd.sock';

/** True when both daemons answer; otherwise skips loudly (fails under CI=true). */
export function requireRuntime(t: TapLike): boolean {
  if (!requireLive(t, { root: true, paths: [DOCKER_SOCK, CONTAINERD_SOCK, '/bin/busybox'] })) return false;
  const ok = spawnSync(DOCKER, ['version'], { timeout: 10_000 }).status === 0;
  if (!ok) return requireLive(t, { paths: ['/nonexistent: dockerd is not answering (run scripts/start-test-runtime.sh)'] });
  return true;
}

/** Builds the test image from busybox-static, offline, once. */
export function ensureTestImage(tag = TEST_IMAGE, created?: string): string {
  if (dockerTry('image', 'inspect', tag).code === 0) return tag;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-rootfs-'));
  try {
    mkdirSync(path.join(dir, 'bin'));
    mkdirSync(path.join(dir, 'tmp'));
    mkdirSync(path.join(dir, 'data'));
    copyFileSync('/bin/busybox', path.join(dir, 'bin', 'busybox'));
    chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
    const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const a of applets) if (a !== 'busybox') symlinkSync('busybox', path.join(dir, 'bin', a));
    const tar = execFileSync('tar', ['-C', dir, '-c', '.'], { maxBuffer: 64 * 1024 * 1024 });
    const args = ['import'];
    if (created) args.push('--message', created);
    execFileSync(DOCKER, [...args, '-', tag], { input: tar, timeout: 120_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return tag;
}

export { readdirSync };

/** A tiny image of its own content (so each has its own id), labelled for scoped prunes. */
export function makeLabelledImage(tag: string, label = 'nodewarden-test=prune'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-img-'));
  try {
    execFileSync('sh', ['-c', `echo ${JSON.stringify(tag)} > ${dir}/id.txt`]);
    const tar = execFileSync('tar', ['-C', dir, '-c', '.']);
    return execFileSync(DOCKER, ['import', '--change', `LABEL ${label}`, '-', tag], { input: tar, encoding: 'utf8' }).trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function ctrTry(...args: string[]): { code: number | null; stdout: string } {
  const r = spawnSync('ctr', args, { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout ?? '' };
}

/**
 * The agent's follower of an event stream (followDockerEvents) as a test watches it: every event
 * seen, every set of collectors it triggered, how often it dropped the cached view. Stopped (and the
 * stream with it) when the test ends; start the stream after this.
 */
export function followForTest(t: Pick<Test, 'teardown'>, events: EventEmitter & { stop(): void }, containerStatus: EventSink['containerStatus'], recheckMs?: number): { seen: ContainerEvent[]; triggered: string[][]; invalidated(): number } {
  const seen: ContainerEvent[] = [];
  const triggered: string[][] = [];
  let invalidated = 0;
  events.on('event', (e: ContainerEvent) => seen.push(e));
  const unfollow = followDockerEvents(events, {
    invalidate: () => void invalidated++,
    containerStatus,
    trigger: (names) => triggered.push([...names]),
    log: { debug() {}, warn() {} },
  }, recheckMs);
  t.teardown(() => {
    unfollow();
    events.stop();
  });
  return { seen, triggered, invalidated: () => invalidated };
}

/**
 * Makes a container's process die while its shim never hears of it: the process is seized with
 * ptrace(PTRACE_SEIZE) by a small perl tracer that never waits, then SIGKILLed. A zombie that is traced
 * is visible only to its tracer, so the shim cannot reap it and containerd keeps its task RUNNING with a
 * pid that is a zombie: a real "the shim lost track of it" drift. `release()` ends the tracer (by its
 * pid); the kernel then hands the zombie to the shim, which reaps it.
 */
export async function killBehindShimsBack(pid: number): Promise<{ release(): void }> {
  // SYS_ptrace is 101 on x86_64 and 117 on arm64; PTRACE_SEIZE is 0x4206.
  const nr = process.arch === 'arm64' ? 117 : 101;
  const { spawn } = await import('node:child_process');
  const tracer = spawn('perl', ['-e', `syscall(${nr}, 0x4206, ${pid}, 0, 0) == 0 or die "seize: $!"; $| = 1; print "seized\\n"; <STDIN>;`], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    tracer.stdout.once('data', () => resolve());
    tracer.once('exit', (code) => reject(new Error(`perl tracer exited ${code}`)));
  });
  process.kill(pid, 'SIGKILL');
  return {
    release() {
      tracer.stdin.end();
      if (tracer.pid && tracer.exitCode === null) process.kill(tracer.pid, 'SIGKILL');
    },
  };
}
