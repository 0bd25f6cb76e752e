// Container churn for the soak bench and the busy-node test: loops of short-lived containers on dockerd
// (--network none) and in containerd's k8s.io namespace with the CRI's labels, plus one crash-looping
// container in restart back-off. Each loop is a process group ended by its pid.
//
// Stopping asks each loop to end after the container it is running (a stop file), and kills only a loop
// still going 20 s later: a `ctr run --rm` or `docker run --rm` killed half-way leaks what it was making
// (a shim no runtime knows, a container record in containerd's moby namespace), and the next test or
// bench on this machine then measures, or reports, that leak.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Churn {
  loops: ChildProcess[];
  /** Ends the loops (each after its current container) and removes what they left; resolves when done. Idempotent. */
  stop(): Promise<void>;
}

const run = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });

/** Starts the churn: `dockerLoops` docker loops, `criLoops` ctr loops in k8s.io, one crash loop. */
export function startChurn(opts: { docker: string; image: string; criImage: string; dockerLoops?: number; criLoops?: number; prefix?: string }): Churn {
  const prefix = opts.prefix ?? 'nw-churn';
  const loops: ChildProcess[] = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-churn-'));
  const stopFile = path.join(dir, 'stop');
  const going = `[ ! -e '${stopFile}' ]`;
  const sleeps = [1, 3, 5, 7, 9, 2];
  for (let i = 0; i < (opts.dockerLoops ?? 4); i++) {
    loops.push(spawn('sh', ['-c', `while ${going}; do ${opts.docker} run --rm --network none ${opts.image} sh -c 'sleep 0.${sleeps[i % sleeps.length]}' >/dev/null 2>&1; done`], { stdio: 'ignore', detached: true }));
  }
  // A crash-looping container in restart back-off: docker shows it running with pid 0 between attempts.
  run(opts.docker, 'rm', '-f', `${prefix}-crashloop`);
  run(opts.docker, 'run', '-d', '--network', 'none', '--name', `${prefix}-crashloop`, '--restart', 'always', opts.image, 'sh', '-c', 'sleep 0.2; exit 1');
  for (let n = 1; n <= (opts.criLoops ?? 2); n++) {
    const labels = [`io.kubernetes.pod.name=churn-${n}`, 'io.kubernetes.pod.namespace=default', 'io.kubernetes.container.name=work', `io.kubernetes.pod.uid=00000000-0000-4000-8000-00000000000${n}`, 'io.cri-containerd.kind=container'];
    const script = `i=0; while ${going}; do i=$((i+1)); ctr -n k8s.io run --rm ${labels.map((l) => `--label ${l}`).join(' ')} ${opts.criImage} ${prefix}-${n}-$i sh -c 'sleep 0.${2 * n}' >/dev/null 2>&1; done`;
    loops.push(spawn('sh', ['-c', script], { stdio: 'ignore', detached: true }));
  }
  // Whether a loop is still going: its ChildProcess has not exited (never its pid in /proc, which another
  // process may have taken once Node reaped ours).
  const going_ = (l: ChildProcess) => l.exitCode === null && l.signalCode === null;
  const stopNow = async () => {
    try {
      writeFileSync(stopFile, '');
    } catch {
      // its directory is gone: the loops are killed below all the same
    }
    // Waits without blocking: an agent in this process keeps running meanwhile.
    for (const end = Date.now() + 20_000; Date.now() < end && loops.some(going_); ) await new Promise((r) => setTimeout(r, 100));
    for (const l of loops) {
      try {
        if (l.pid && going_(l)) process.kill(-l.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
    run(opts.docker, 'rm', '-f', `${prefix}-crashloop`);
    // What a killed loop left behind: our own containers only, by their name prefix.
    for (const line of (run('ctr', '-n', 'k8s.io', 'containers', 'ls', '-q').stdout ?? '').split('\n')) {
      if (!line.startsWith(`${prefix}-`)) continue;
      run('ctr', '-n', 'k8s.io', 'tasks', 'kill', '-s', 'SIGKILL', line);
      run('ctr', '-n', 'k8s.io', 'tasks', 'delete', line);
      run('ctr', '-n', 'k8s.io', 'containers', 'delete', line);
    }
  };
  let stopping: Promise<void> | undefined;
  return {
    loops,
    // Once: a second call (a caller's finally after its own stop) waits on the first.
    stop: () => (stopping ??= stopNow()),
  };
}

/**
 * Whether any holder of a leaked mount descends from a container runtime (runc, a shim, a daemon): on
 * a shared machine, a mount held by someone's own `unshare -m` is their leak, not churn's doing.
 */
export function heldByContainers(evidence: Record<string, unknown>): boolean {
  const holders = (evidence['holders'] as { pid: number }[] | undefined) ?? [];
  return holders.some((h) => {
    for (let pid = h.pid, hops = 0; pid > 1 && hops < 20; hops++) {
      let stat: string;
      try {
        stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        return false;
      }
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (/^(runc|containerd|dockerd|containerd-shim)/.test(comm)) return true;
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!Number.isFinite(pid)) break;
    }
    return false;
  });
}

/**
 * Whether a runtime.orphan finding, seen at `seenAt`, is about processes that all started before `since`
 * (with a second of slack): a shim leaked by someone before (a test that killed its churn mid-`ctr run`),
 * too young then to be reported and come of age during a later test: not that test's doing.
 */
export function orphanedBefore(finding: { check: string; evidence: Record<string, unknown> }, seenAt: number, since: number): boolean {
  if (finding.check !== 'runtime.orphan') return false;
  const procs = (finding.evidence['processes'] as { ageSeconds?: unknown }[] | undefined) ?? [];
  return procs.length > 0 && procs.every((p) => typeof p.ageSeconds === 'number' && seenAt - p.ageSeconds * 1000 < since - 1000);
}
