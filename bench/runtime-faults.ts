// The real dockerd and containerd as benches and tests drive them: containers with --network none
// from the offline test image, the daemons scripts/start-test-runtime.sh started (the only ones we
// signal), and the faults the runtime collectors must see (a drift that stays, a removal an immutable
// file blocks). Lives under bench/ because the soak bench uses it and bench/ must build without test/;
// test/helpers/runtime.ts re-exports it.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

export const TEST_IMAGE = 'nodewarden-test/busybox:1';

export function docker(...args: string[]): string {
  return execFileSync(DOCKER, args, { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export function dockerTry(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(DOCKER, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: (r.stdout ?? '').trim(), stderr: (r.stderr ?? '').trim() };
}

/** Runs a container detached with no network; returns its id. */
export function runContainer(name: string, cmd: string[], extra: string[] = []): string {
  dockerTry('rm', '-f', name);
  return docker('run', '-d', '--network', 'none', '--name', name, ...extra, TEST_IMAGE, ...cmd);
}

/** Removes a container by name, whatever state it is in. */
export function removeContainer(name: string): void {
  dockerTry('rm', '-f', name);
}

/**
 * Removes containers with `docker rm -f`, all at once and without blocking the caller: the removal of a
 * drifted container (docker says running, containerd's task is gone) waits 10 s for an exit event that
 * never comes, so three in a row cost a test 30 s. Resolves once every removal ended, whatever its result.
 */
export function removeContainersAsync(names: string[]): Promise<void> {
  return Promise.all(names.map((n) => new Promise<void>((resolve) => execFile(DOCKER, ['rm', '-f', n], { timeout: 60_000 }, () => resolve())))).then(() => undefined);
}

export function inspectField(name: string, template: string): string {
  return docker('inspect', '-f', template, name);
}

const RUNTIME_DIR = process.env['NW_RUNTIME_DIR'] ?? '/var/run/nodewarden-test';

/** The pid of a daemon scripts/start-test-runtime.sh started (we only ever signal those). */
export function ourDaemonPid(name: 'containerd' | 'dockerd'): number | undefined {
  try {
    const pid = Number(execFileSync('cat', [path.join(RUNTIME_DIR, `${name}.pid`)], { encoding: 'utf8' }).trim());
    const comm = execFileSync('cat', [`/proc/${pid}/comm`], { encoding: 'utf8' }).trim();
    return comm === name ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts whatever of containerd and dockerd is not answering (as CI does), waits for both, and ends the
 * shims the faults before left behind (reapLeakedShims).
 */
export function startRuntime(): void {
  execFileSync('bash', [path.resolve('scripts/start-test-runtime.sh')], { stdio: 'ignore', timeout: 120_000 });
  // Containers first: deleting a leaked record can leave its shim knowing no container, which the shim
  // pass then ends.
  reapLeakedContainers();
  reapLeakedShims();
}

/**
 * Deletes the container records these tests' faults leaked into containerd's `moby` namespace: docker
 * owns that namespace, and a container there that docker does not list, with no task or a STOPPED one
 * (deleted first), at least `minAgeSeconds` old, is one whose creation or removal a daemon kill cut short
 * (the soak's dockerd restart and freeze leave one or two each run). A machine that ran the
 * suite for a day held 73; every whole `Containers/List` carried their specs, which made the agent under
 * churn cost 5 millicores and 10 MiB more and the benches measure a node no one runs. Only with our
 * containerd running and docker answering its list. Returns the ids deleted.
 */
export function reapLeakedContainers(minAgeSeconds = 60): string[] {
  if (ourDaemonPid('containerd') === undefined || ourDaemonPid('dockerd') === undefined) return [];
  const lines = (cmd: string, args: string[]): Set<string> | undefined => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
    return r.status === 0 ? new Set(r.stdout.split('\n').filter(Boolean)) : undefined;
  };
  const dockers = lines(DOCKER, ['ps', '-aq', '--no-trunc']);
  const containers = lines('ctr', ['-n', 'moby', 'containers', 'ls', '-q']);
  const taskLines = lines('ctr', ['-n', 'moby', 'tasks', 'ls']);
  if (!dockers || !containers || !taskLines) return [];
  // `TASK PID STATUS` after a header line.
  const tasks = new Map([...taskLines].slice(1).map((l) => l.trim().split(/\s+/)).map((f) => [f[0]!, f[2] ?? ''] as const));
  const deleted: string[] = [];
  for (const id of containers) {
    const task = tasks.get(id);
    if (dockers.has(id) || (task !== undefined && task !== 'STOPPED')) continue;
    const info = spawnSync('ctr', ['-n', 'moby', 'containers', 'info', id], { encoding: 'utf8', timeout: 10_000 });
    const created = Date.parse(/"CreatedAt":\s*"([^"]+)"/.exec(info.stdout ?? '')?.[1] ?? '');
    if (!Number.isFinite(created) || Date.now() - created < minAgeSeconds * 1000) continue;
    if (task !== undefined && spawnSync('ctr', ['-n', 'moby', 'tasks', 'rm', id], { stdio: 'ignore', timeout: 10_000 }).status !== 0) continue;
    if (spawnSync('ctr', ['-n', 'moby', 'containers', 'rm', id], { stdio: 'ignore', timeout: 10_000 }).status === 0) deleted.push(id);
  }
  return deleted;
}

/**
 * Ends, by pid, the containerd shims these tests' own faults leaked: containerd killed while containers
 * start and stop (churn, a drift made on purpose) leaves shims of containers it no longer knows, running
 * nothing. They are real leaks and drift rightly names them (runtime.orphan), but every later look then
 * has suspects and waits out its confirmation (8 s): in a full test run the files after the faulting ones
 * took twice as long. Only shims of the containerd scripts/start-test-runtime.sh started (our socket, our
 * daemon running) whose container is in no list of its namespace, at least `minAgeSeconds` old (a shim
 * being started has a container already), running nothing or only a `runc init` left waiting for a start
 * that never came (ended first, as runtime.orphan's remedy does). Returns the pids ended.
 */
export function reapLeakedShims(minAgeSeconds = 10): number[] {
  if (ourDaemonPid('containerd') === undefined) return [];
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  const hz = 100; // USER_HZ: /proc/PID/stat counts start times in it on every Linux ABI
  const children = new Map<number, { pid: number; runcInit: boolean }[]>();
  const shims: { pid: number; ns: string; id: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(fields[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), { pid: Number(name), runcInit: stat.includes('(runc:[') }]);
      if (!stat.includes('(containerd-shim')) continue;
      if (uptime - Number(fields[19]) / hz < minAgeSeconds) continue;
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const arg = (flag: string) => args[args.indexOf(flag) + 1];
      if (args.indexOf('-id') < 0 || arg('-address') !== '/run/containerd/containerd.sock' || args.includes('start')) continue;
      shims.push({ pid: Number(name), ns: arg('-namespace') ?? '', id: arg('-id') ?? '' });
    } catch {
      // gone meanwhile
    }
  }
  const known = new Map<string, Set<string> | undefined>();
  const ended: number[] = [];
  for (const s of shims) {
    const kids = children.get(s.pid) ?? [];
    if (kids.some((k) => !k.runcInit)) continue;
    if (!known.has(s.ns)) {
      const r = spawnSync('ctr', ['-n', s.ns, 'containers', 'ls', '-q'], { encoding: 'utf8', timeout: 10_000 });
      known.set(s.ns, r.status === 0 ? new Set(r.stdout.split('\n').filter(Boolean)) : undefined);
    }
    const ids = known.get(s.ns);
    if (!ids || ids.has(s.id)) continue;
    for (const pid of [...kids.map((k) => k.pid), s.pid]) {
      try {
        process.kill(pid, 'SIGKILL');
        ended.push(pid);
      } catch {
        // gone meanwhile
      }
    }
  }
  return ended;
}

/** Starts containerd only (dockerd may be frozen meanwhile), and waits until it answers. */
export function startContainerd(): void {
  execFileSync('bash', [path.resolve('scripts/start-test-runtime.sh'), 'containerd'], { stdio: 'ignore', timeout: 60_000 });
}

/**
 * Makes the drift that stays: dockerd frozen while containerd is killed and started again and the
 * container's process dies, then dockerd resumed. dockerd never hears the exit: docker says running
 * for good while containerd's task is STOPPED. Returns the container's id and its dead pid.
 */
export async function makePersistentDrift(name: string): Promise<{ id: string; pid: number }> {
  const dockerd = ourDaemonPid('dockerd');
  const ctd = ourDaemonPid('containerd');
  if (dockerd === undefined || ctd === undefined) throw new Error('dockerd and containerd must be the ones scripts/start-test-runtime.sh started');
  const id = runContainer(name, ['sleep', '600']);
  const pid = Number(inspectField(name, '{{.State.Pid}}'));
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  process.kill(dockerd, 'SIGSTOP');
  try {
    process.kill(ctd, 'SIGKILL');
    await pause(500);
    startContainerd();
    process.kill(pid, 'SIGKILL');
    await pause(1000);
  } finally {
    process.kill(dockerd, 'SIGCONT');
  }
  return { id, pid };
}

/**
 * A container whose writable layer holds a file made immutable: `remove()` (docker rm -f) then fails
 * with "operation not permitted", as the runbooks' stuck pods do. `cleanup()` clears the attribute and
 * removes the container. `extra`: more `docker run` arguments (labels).
 */
export async function makeImmutableContainer(name: string, extra: string[] = []): Promise<{ id: string; locked: string; remove(): { code: number | null; stderr: string }; cleanup(): void }> {
  const id = runContainer(name, ['sh', '-c', 'echo x > /data/locked; sleep 600'], extra);
  const locked = path.join(inspectField(name, '{{.GraphDriver.Data.UpperDir}}'), 'data', 'locked');
  // docker run -d returns once the process started, not once it wrote the file: wait for the file
  // itself (a fixed 500 ms lost this race on a loaded machine), up to 30 s.
  const written = () => {
    try {
      return readFileSync(locked, 'utf8') === 'x\n';
    } catch {
      return false;
    }
  };
  for (const end = Date.now() + 30_000; !written(); ) {
    if (Date.now() > end) throw new Error(`container ${name} did not write /data/locked within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  execFileSync('chattr', ['+i', locked]);
  return {
    id,
    locked,
    remove: () => dockerTry('rm', '-f', name),
    cleanup() {
      spawnSync('chattr', ['-i', locked]);
      removeContainer(name);
    },
  };
}

/** Copies a docker image into containerd's namespace (docker save | ctr import) and labels its name. */
export function copyToContainerd(tag: string, namespace = 'k8s.io', labels: string[] = ['nodewarden-test=prune']): string {
  const tar = execFileSync(DOCKER, ['save', tag], { maxBuffer: 256 * 1024 * 1024 });
  execFileSync('ctr', ['-n', namespace, 'images', 'import', '-'], { input: tar, stdio: ['pipe', 'ignore', 'pipe'] });
  const ref = tag.includes('/') && !tag.split('/')[0]!.includes('.') ? `docker.io/${tag}` : tag;
  execFileSync('ctr', ['-n', namespace, 'images', 'label', ref, ...labels], { stdio: 'ignore' });
  return ref;
}
