// Bench: the agent's own cost on a busy node, as its own process (as the DaemonSet runs it, with
// NODE_OPTIONS=--max-semi-space-size=2) under the soak's churn (4 docker loops of `run --rm`, 2 CRI-labelled
// `ctr -n k8s.io run --rm` loops, a crash-looper). CPU of every thread of the process (and its children)
// from /proc over the window, after 15 s of warm-up, and peak RSS (VmHWM). With `--base DIR` (a checkout
// of another revision, built), that build runs side by side under the same churn in the same window:
// on a shared machine only such side-by-side figures compare. `--set K=V` configures this build only, so
// `--base .` compares a setting with the defaults (the fillers view forced on, for one); `--base-set K=V`
// configures the base (the same setting on both, to compare two builds with it). Beside them, in the
// same window, the floor: `docker events` and `ctr events` following the same events as the agent.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { CONTAINERD_TOPICS } from '../agent/runtime/containerd-events.js';
import { DOCKER_EVENTS_FOLLOWED } from '../agent/runtime/events.js';
import { startChurn } from './churn.js';
import { copyToContainerd, DOCKER, TEST_IMAGE, dockerTry } from './runtime-faults.js';
import { ROOT } from './util.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What the runtimes hold before the churn starts: every snapshot lists containerd's containers (each with
 * its OCI spec), so leftovers change the agent's cost. 73 containers leaked into `moby` by earlier test
 * runs (no task, unknown to docker) cost this agent 5 millicores and 10 MiB more under the same churn.
 */
function runtimePopulation(): string {
  const lines = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 }).stdout?.split('\n').filter(Boolean).length ?? 0;
  const ns = ['moby', 'k8s.io'].map((n) => `${lines('ctr', ['-n', n, 'containers', 'ls', '-q'])} in ${n}`).join(', ');
  return `the node before the churn: ${lines(DOCKER, ['ps', '-aq'])} docker containers; containerd containers: ${ns}`;
}

/** Clock ticks of the process: its threads (utime + stime) and its reaped children. */
export function ticks(pid: number): number {
  let threads = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      threads += Number(f[11]) + Number(f[12]);
    } catch {
      // the thread ended
    }
  }
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return Math.max(threads, Number(f[11]) + Number(f[12])) + Number(f[13]) + Number(f[14]);
}

export async function benchChurnCost(opts: { seconds?: number; base?: string; sets?: readonly string[]; baseSets?: readonly string[]; nodeFlags?: readonly string[] } = {}): Promise<string> {
  const seconds = opts.seconds ?? 120;
  if (dockerTry('image', 'inspect', TEST_IMAGE).code !== 0) throw new Error(`churn-cost needs the test image ${TEST_IMAGE}: run npm test once (it builds it offline)`);
  const sets = opts.sets ?? [];
  const flags = opts.nodeFlags ?? [];
  const changed = [...sets, ...flags];
  const builds = [
    { name: changed.length ? `this build, ${changed.join(' ')}` : 'this build', root: ROOT, sets, flags },
    ...(opts.base ? [{ name: `base ${opts.base}${opts.baseSets?.length ? `, ${opts.baseSets.join(' ')}` : changed.length ? ', defaults' : ''}`, root: path.resolve(opts.base), sets: opts.baseSets ?? [], flags: [] as readonly string[] }] : []),
  ];
  const population = runtimePopulation();
  const criImage = copyToContainerd(TEST_IMAGE, 'k8s.io', ['nodewarden-test=churn']);
  const churn = startChurn({ docker: DOCKER, image: TEST_IMAGE, criImage, dockerLoops: 4, criLoops: 2, prefix: 'nw-cost' });
  const agents: ChildProcess[] = [];
  try {
    builds.forEach((b, i) => {
      const cursor = `/tmp/nw-churn-cost-cursor-${process.pid}-${i}.json`;
      agents.push(spawn(process.execPath, ['--max-semi-space-size=2', ...b.flags, path.join(b.root, 'dist', 'cli', 'main.js'), 'agent', '--listen', `127.0.0.1:${19770 + i}`, '--set', 'logLevel=warn', '--set', `collectors.kernel.cursorFile=${cursor}`, ...b.sets.flatMap((x) => ['--set', x])], { stdio: ['ignore', 'ignore', 'inherit'] }));
    });
    // The floor: the runtimes' own CLIs (Go) following exactly the events the agent follows, in the same
    // window. What the agent pays beyond them is its own doing; what they pay is the cost of listening on
    // this machine (each event a wake-up, a read and a parse).
    const floor = [
      { name: '`docker events` (the docker CLI, the same filter)', p: spawn(DOCKER, ['events', '--filter', 'type=container', ...DOCKER_EVENTS_FOLLOWED.flatMap((e) => ['--filter', `event=${e}`])], { stdio: 'ignore' }) },
      { name: '`ctr events` (the same topics, in k8s.io)', p: spawn('ctr', ['events', ...Object.keys(CONTAINERD_TOPICS).map((t) => `topic=="${t}",namespace=="k8s.io"`)], { stdio: 'ignore' }) },
    ];
    agents.push(...floor.map((f) => f.p));
    await sleep(15_000);
    const before = agents.map((a) => ticks(a.pid!));
    const t0 = Date.now();
    await sleep(seconds * 1000);
    const after = agents.map((a) => ticks(a.pid!));
    const elapsed = (Date.now() - t0) / 1000;
    const lines = [`the agent under churn, ${Math.round(elapsed)} s after 15 s of warm-up${builds.length > 1 ? ', both builds side by side' : ''} (targets: 15 millicores, 80 MiB)`, `  ${population}`];
    builds.forEach((b, i) => {
      const mc = ((after[i]! - before[i]!) / 100 / elapsed) * 1000;
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${agents[i]!.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
      lines.push(`  ${b.name.padEnd(60)} ${mc.toFixed(1).padStart(6)} millicores  peak RSS ${hwm.toFixed(0).padStart(4)} MiB`);
    });
    let floorMc = 0;
    floor.forEach((f, j) => {
      const i = builds.length + j;
      const mc = ((after[i]! - before[i]!) / 100 / elapsed) * 1000;
      floorMc += mc;
      lines.push(`  ${f.name.padEnd(60)} ${mc.toFixed(1).padStart(6)} millicores`);
    });
    lines.push(`  ${'the floor: both CLIs listening, nothing else'.padEnd(60)} ${floorMc.toFixed(1).padStart(6)} millicores`);
    return lines.join('\n');
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    await churn.stop();
    for (let i = 0; i < builds.length; i++) rmSync(`/tmp/nw-churn-cost-cursor-${process.pid}-${i}.json`, { force: true });
  }
}
