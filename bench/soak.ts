// Bench: the agent at its default intervals on a busy node. Containers churn on dockerd and in k8s.io
// the whole time; containerd and dockerd are restarted in the middle; faults are injected at known
// times (an immutable file + failed removal, a persistent drift, a volume held after its container is
// gone, dockerd frozen for 30 s). Reports false transitions and, per fault, injection -> finding.
//
// The agent runs as its own process, as the DaemonSet runs it (`--max-semi-space-size=2`), so its CPU
// and peak RSS are its own and not the harness's: its transitions come from its log (one JSON line each,
// `transition` and `finding`), its collectors' run counts from its /metrics.
import { spawn, spawnSync } from 'node:child_process';
import type { Finding } from '../protocol/finding.js';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ticks } from './churn-cost.js';
import { ROOT } from './util.js';
import { copyToContainerd, DOCKER, docker, dockerTry, makeImmutableContainer, makePersistentDrift, ourDaemonPid, removeContainer, runContainer, startRuntime, TEST_IMAGE } from './runtime-faults.js';
import { heldByContainers, startChurn, type Churn } from './churn.js';

/** One transition as the agent logged it. */
interface Transition {
  type: 'firing' | 'updated' | 'resolved';
  finding: Finding;
}

/** The soak's agent listens here for /metrics (loopback only). */
const SOAK_PORT = 19790;

interface Fault {
  name: string;
  goal: string;
  at?: number;
  firedAt?: number;
  matches(f: Finding): boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The collectors `--interval` shortens: those that judge runtime state. */
const SHORTENED = ['runtime', 'drift', 'mounts'];

export async function benchSoak(opts: { seconds?: number; interval?: string } = {}): Promise<string> {
  const seconds = opts.seconds ?? 600;
  const intervals = opts.interval ? SHORTENED.map((c) => `collectors.${c}.interval=${opts.interval}`) : [];
  if (dockerTry('image', 'inspect', TEST_IMAGE).code !== 0) throw new Error(`soak needs the test image ${TEST_IMAGE}: run npm test once (it builds it offline)`);
  const criImage = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=churn']);
  const cursor = `/tmp/nw-soak-cursor-${process.pid}.json`;
  const agent = spawn(
    process.execPath,
    ['--max-semi-space-size=2', path.join(ROOT, 'dist', 'cli', 'main.js'), 'agent', '--node', 'soak', '--listen', `127.0.0.1:${SOAK_PORT}`, '--set', 'logLevel=info', '--set', `collectors.kernel.cursorFile=${cursor}`, ...intervals.flatMap((x) => ['--set', x])],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => agent.once('exit', () => resolve()));
  const transitions: { at: number; t: Transition }[] = [];
  for (const stream of [agent.stdout, agent.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      if (!line.includes('"transition"')) return;
      try {
        // Stamped with the line's own time (the agent's clock when it logged it), not when it was read.
        const o = JSON.parse(line) as { time?: number; transition?: Transition['type']; finding?: Finding };
        if (o.transition && o.finding) transitions.push({ at: typeof o.time === 'number' ? o.time : Date.now(), t: { type: o.transition, finding: o.finding } });
      } catch {
        // not one of its JSON lines
      }
    });
  }
  const t0 = Date.now();
  let cpuFrom = 0;
  let cpuFromAt = Date.now();
  const cleanups: (() => void)[] = [];
  const windows: { from: number; to: number; what: string }[] = [];
  let churn: Churn | undefined;
  const newChurn = () => startChurn({ docker: DOCKER, image: TEST_IMAGE, criImage, dockerLoops: 4, criLoops: 2, prefix: 'nw-soak' });
  const state: { driftId?: string; locked?: string; volume?: string } = {};
  const faults: Fault[] = [
    { name: 'immutable file + failed docker rm -f', goal: '<= 5 s', matches: (f) => f.check === 'immutable.file' && f.subject === state.locked && f.severity === 'critical' },
    { name: 'persistent drift', goal: '<= 30 s interval + 2 s settle', matches: (f) => f.check === 'runtime.drift' && f.subject === state.driftId },
    { name: 'volume held after its container is gone', goal: '<= 60 s interval + 2 s settle', matches: (f) => f.check === 'mount.holder' && state.volume !== undefined && f.subject.endsWith(` ${state.volume}`) },
    { name: 'dockerd frozen (SIGSTOP 30 s)', goal: '<= runtime.timeout + 1 s after the next probe', matches: (f) => f.check === 'runtime.unresponsive' && f.subject === 'docker' },
  ];
  const fault = (name: string) => faults.find((f) => f.name.startsWith(name))!;
  try {
    await sleep(5000); // every collector's first run, before the churn: what is there already is not ours
    if (agent.exitCode !== null || agent.signalCode !== null) throw new Error(`the soak's agent ended at start (${agent.exitCode ?? agent.signalCode})`);
    const baseline = new Set(transitions.filter((x) => x.t.type !== 'resolved').map((x) => x.t.finding.id));
    churn = newChurn();
    cpuFrom = ticks(agent.pid!);
    cpuFromAt = Date.now();
    const at = (fraction: number) => t0 + fraction * seconds * 1000;
    const until = async (when: number) => {
      while (Date.now() < when) await sleep(Math.min(1000, when - Date.now()));
    };
    const dockerd = ourDaemonPid('dockerd');
    const containerd = ourDaemonPid('containerd');
    if (dockerd === undefined || containerd === undefined) throw new Error('soak needs the daemons scripts/start-test-runtime.sh started');

    await until(at(0.15));
    let from = Date.now();
    process.kill(containerd, 'SIGTERM');
    await sleep(1000);
    startRuntime();
    windows.push({ from, to: Date.now() + 30_000, what: 'containerd restart' });

    await until(at(0.3));
    from = Date.now();
    process.kill(ourDaemonPid('dockerd') ?? dockerd, 'SIGTERM');
    for (let i = 0; i < 100 && ourDaemonPid('dockerd') !== undefined; i++) await sleep(200);
    startRuntime();
    windows.push({ from, to: Date.now() + 30_000, what: 'dockerd restart' });

    await until(at(0.45));
    const stuck = await makeImmutableContainer('nw-soak-immutable');
    state.locked = stuck.locked;
    cleanups.push(() => stuck.cleanup());
    fault('immutable').at = Date.now();
    stuck.remove();

    await until(at(0.55));
    // The churn pauses while the drift is made: containers that die while dockerd is frozen drift for
    // real, and would be true findings this bench cannot tell from false ones.
    await churn.stop();
    await sleep(2000);
    windows.push({ from: Date.now(), to: Date.now() + 30_000, what: 'drift recipe (containerd restart, dockerd frozen briefly)' });
    const d = await makePersistentDrift('nw-soak-drift');
    state.driftId = d.id;
    fault('persistent').at = Date.now();
    cleanups.push(() => removeContainer('nw-soak-drift'));
    churn = newChurn();

    await until(at(0.65));
    // A pod volume (a tmpfs under kubelet's pods dir) a container used, copied into another process's
    // namespace; the container goes and the volume is unmounted on the host, as kubelet does.
    const podDir = `/var/lib/kubelet/pods/${randomUUID()}`;
    state.volume = `${podDir}/volumes/kubernetes.io~empty-dir/nw-soak`;
    mkdirSync(state.volume, { recursive: true });
    spawnSync('mount', ['-t', 'tmpfs', 'nw-soak-volume', state.volume]);
    cleanups.push(() => {
      spawnSync('umount', ['-l', state.volume!]);
      rmSync(podDir, { recursive: true, force: true });
    });
    runContainer('nw-soak-held', ['sleep', '600'], ['-v', `${state.volume}:/data`]);
    const keepOnly = `awk '{print $5}' /proc/self/mountinfo | grep -E '^(/var/lib/docker/|/run/containerd/|/run/docker/)' | sort -r | while read m; do umount -l "$m" 2>/dev/null; done; exec sleep 900`;
    const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', keepOnly], { stdio: 'ignore' });
    cleanups.push(() => holder.kill('SIGKILL'));
    await sleep(500);
    docker('rm', '-f', 'nw-soak-held');
    spawnSync('umount', [state.volume]);
    fault('volume').at = Date.now();

    await until(at(0.8));
    const frozenPid = ourDaemonPid('dockerd')!;
    from = Date.now();
    process.kill(frozenPid, 'SIGSTOP');
    fault('dockerd frozen').at = from;
    await sleep(30_000);
    process.kill(frozenPid, 'SIGCONT');
    windows.push({ from, to: Date.now() + 30_000, what: 'dockerd frozen' });

    await until(at(1));
    for (const f of faults) f.firedAt = transitions.find((x) => x.t.type === 'firing' && f.at !== undefined && x.at >= f.at && f.matches(x.t.finding))?.at;

    const expected = (x: { at: number; t: Transition }) =>
      baseline.has(x.t.finding.id) ||
      faults.some((f) => f.matches(x.t.finding)) ||
      (x.t.finding.check.startsWith('runtime.') && x.t.finding.check !== 'runtime.drift' && windows.some((w) => x.at >= w.from && x.at <= w.to)) ||
      (x.t.finding.check.startsWith('collector.') && windows.some((w) => x.at >= w.from && x.at <= w.to)) ||
      (x.t.finding.check === 'mount.holder' && !heldByContainers(x.t.finding.evidence));
    // runtime.orphan: shims and runc init that no runtime knows. Those older than the soak were leaked
    // before it (by earlier tests' daemon kills on this shared machine); those born in a restart window
    // were leaked by that restart: true findings, listed, not false.
    const bornAt = (x: { at: number; t: Transition }) => {
      const ages = ((x.t.finding.evidence['processes'] as { ageSeconds?: number }[] | undefined) ?? []).map((p) => Number(p.ageSeconds ?? 0));
      return ages.length > 0 ? x.at - Math.max(...ages) * 1000 : x.at;
    };
    const orphanBefore = (x: { at: number; t: Transition }) => x.t.finding.check === 'runtime.orphan' && bornAt(x) < t0;
    const orphanOfRestart = (x: { at: number; t: Transition }) => x.t.finding.check === 'runtime.orphan' && windows.some((w) => bornAt(x) >= w.from - 5000 && bornAt(x) <= w.to);
    const leakedByRestarts = transitions.filter((x) => x.t.type === 'firing' && orphanOfRestart(x));
    const falses = transitions.filter((x) => x.t.type !== 'resolved' && !expected(x) && !orphanBefore(x) && !orphanOfRestart(x));
    if (agent.exitCode !== null || agent.signalCode !== null) throw new Error(`the soak's agent ended during the run (${agent.exitCode ?? agent.signalCode})`);
    const millicores = ((ticks(agent.pid!) - cpuFrom) / 100 / ((Date.now() - cpuFromAt) / 1000)) * 1000;
    const peakRss = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    const metrics = await fetch(`http://127.0.0.1:${SOAK_PORT}/metrics`).then((r) => r.text(), () => '');
    const driftRuns: Record<string, number> = {};
    for (const m of metrics.matchAll(/^nodewarden_collector_runs_total\{[^}]*collector="drift",status="([a-z-]+)"\} (\d+)$/gm)) driftRuns[m[1]!] = Number(m[2]);
    const lines = [
      `ran ${Math.round((Date.now() - t0) / 1000)} s at ${opts.interval ? `${SHORTENED.join(', ')} every ${opts.interval}, the rest at` : ''} default intervals; churn: 4 docker loops + 2 k8s.io loops + a crash-looping container; containerd restarted at ${Math.round(0.15 * seconds)} s, dockerd at ${Math.round(0.3 * seconds)} s`,
      `transitions: ${transitions.length}; false (firing or updated, not explained by a fault or a runtime restart window): ${falses.length}`,
      `agent cost (its own process, as the DaemonSet runs it): ${millicores.toFixed(1)} millicores average under churn, peak RSS ${(peakRss / 1048576).toFixed(0)} MiB (targets: 15 millicores, 80 MiB)`,
      `runtime.orphan leaked by the injected restarts (true findings): ${leakedByRestarts.length}${leakedByRestarts.length ? ` (${leakedByRestarts.map((x) => x.t.finding.subject.slice(0, 16)).join(', ')})` : ''}; already there before the soak: ${transitions.filter((x) => x.t.type === 'firing' && orphanBefore(x)).length}`,
      `drift runs: ${Object.entries(driftRuns).map(([k, n]) => `${n} ${k}`).join(', ')}`,
      `collector.timeout transitions: ${transitions.filter((x) => x.t.type !== 'resolved' && x.t.finding.check === 'collector.timeout').map((x) => `+${Math.round((x.at - t0) / 1000)}s ${x.t.finding.subject}`).join(', ') || 0}`,
      ...falses.slice(0, 20).map((x) => `  FALSE +${Math.round((x.at - t0) / 1000)}s ${x.t.type} ${x.t.finding.check} ${x.t.finding.message.slice(0, 140)}`),
      '',
      '| fault | injected at | time to finding | goal |',
      '| --- | --- | --- | --- |',
      ...faults.map((f) => `| ${f.name} | ${f.at ? `${Math.round((f.at - t0) / 1000)} s` : 'not injected'} | ${f.at && f.firedAt ? `${((f.firedAt - f.at) / 1000).toFixed(1)} s` : 'NOT FOUND'} | ${f.goal} |`),
    ];
    return lines.join('\n');
  } finally {
    // Each step on its own: one that throws must not leave the agent (holding SOAK_PORT) or a mount behind.
    try {
      try {
        await churn?.stop();
      } finally {
        for (const c of cleanups.reverse()) {
          try {
            c();
          } catch (err) {
            process.stderr.write(`soak: a cleanup failed: ${String(err)}\n`);
          }
        }
      }
    } finally {
      agent.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
      rmSync(cursor, { force: true });
      startRuntime();
    }
  }
}
