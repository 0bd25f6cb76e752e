// Bench: `nodewarden du` (the whole process: config, runtime and image questions, statfs, the walk)
// side by side with `du -sx` of the same directories, and `docker system df -v` where docker runs, on
// 200,000 files in a kubelet stand-in (one emptyDir) on a loop-mounted ext4 the bench makes and removes.
// Cold runs drop the page cache before each contender (sync; echo 3 > /proc/sys/vm/drop_caches), warm
// ones do not; the walk alone in one process (no start-up) is timed too. Then the agent's incremental
// refresh (agent/host/tree-index.ts) of the same emptyDir, on the unchanged tree, side by side with the
// full walk of it, both in this process: the refresh must cost at most a fiftieth of the walk.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, benchLoopFs, buildC, median, report, timeCommand, type Measured } from './util.js';
import { createTreeWalker } from '../agent/host/attrs.js';
import { createTreeIndex } from '../agent/host/tree-index.js';
import { duThreads } from '../agent/actions/du.js';

const dropCaches = () => {
  spawnSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3\n');
};

interface Contender {
  name: string;
  cmd: string;
  args: string[];
  inProcess?: boolean;
}

/** Runs every contender `rounds` times, interleaved; cold ones after dropping the page cache. */
function measure(contenders: Contender[], rounds: number, cold: boolean): Measured[] {
  const runs = contenders.map(() => [] as number[]);
  const outputs = contenders.map(() => '');
  for (let round = 0; round < rounds; round++) {
    contenders.forEach((c, i) => {
      if (cold) dropCaches();
      const r = timeCommand(c.cmd, c.args);
      const inside = c.inProcess ? /elapsed_ms=([\d.]+)/.exec(r.stdout) : null;
      runs[i]!.push(inside ? Number(inside[1]) / 1000 : r.seconds);
      outputs[i] = r.stdout;
    });
  }
  return contenders.map((c, i) => ({ name: c.name, runs: runs[i]!, median: median(runs[i]!), output: outputs[i]! }));
}

export async function benchDu(opts: { files?: number; rounds?: number } = {}): Promise<string> {
  const files = opts.files ?? 200_000;
  const rounds = opts.rounds ?? 3;
  const { mnt, cleanup } = benchLoopFs(files, 'nw-bench-du-');
  try {
    const kubelet = path.join(mnt, 'kubelet');
    const emptyDir = path.join(kubelet, 'pods/3f0c6a52-8d1e-4b7a-9c2f-5e6d7a8b9c01/volumes/kubernetes.io~empty-dir/data');
    mkdirSync(emptyDir, { recursive: true });
    mkdirSync(path.join(mnt, 'docker'));
    execFileSync(buildC('make-tree.c'), [emptyDir, String(Math.ceil(files / 1000)), '1000']);
    const nw = [path.join(ROOT, 'dist', 'cli', 'main.js'), 'du', '--json', '--set', `collectors.disk.eviction.kubeletRootDir=${kubelet}`, '--set', `collectors.disk.eviction.runtimeRootDirs=[${path.join(mnt, 'docker')}]`];
    const contenders: Contender[] = [
      { name: 'du -sx', cmd: 'du', args: ['-sx', mnt] },
      { name: 'nodewarden du', cmd: process.execPath, args: nw },
      { name: 'the du walk in process (no start-up)', cmd: process.execPath, args: [path.join(ROOT, 'dist', 'bench', 'du-in-process.js'), mnt], inProcess: true },
    ];
    const docker = spawnSync('docker', ['version'], { timeout: 10_000 }).status === 0;
    if (docker) contenders.push({ name: 'docker system df -v', cmd: 'docker', args: ['system', 'df', '-v'] });
    measure(contenders, 1, false);
    const cold = measure(contenders, rounds, true);
    const warm = measure(contenders, rounds, false);
    const walked = (JSON.parse(cold[1]!.output) as { entries: number }).entries;
    const refresh = await benchRefresh(emptyDir, rounds);
    const ratio = (rs: Measured[], i: number) => (rs[0]!.median / rs[i]!.median).toFixed(2);
    return [
      report(`du, cold (page cache dropped before each run): ${walked.toLocaleString('en-US')} entries walked, medians of ${rounds} interleaved runs`, cold, 'du -sx'),
      '',
      report(`du, warm: medians of ${rounds} interleaved runs`, warm, 'du -sx'),
      '',
      `vs du -sx: nodewarden du ${ratio(cold, 1)}x as fast cold, ${ratio(warm, 1)}x warm; the walk alone ${ratio(cold, 2)}x cold, ${ratio(warm, 2)}x warm${docker ? ' (docker system df -v measures docker\'s own storage, not these dirs: for scale only)' : ''}`,
      '',
      refresh,
    ].join('\n');
  } finally {
    cleanup();
  }
}

/**
 * The agent's refresh between full walks, on the unchanged tree, against the full walk of the same root,
 * in this process: cold (page cache dropped before each) and warm, medians of `rounds` interleaved runs.
 * The index is built once first (what the first refresh after a full measurement costs).
 */
async function benchRefresh(root: string, rounds: number): Promise<string> {
  const walker = createTreeWalker();
  if (!walker) return 'refresh: the native module is not built';
  const index = createTreeIndex();
  // Wall time, and the CPU the process spent (user + system, every thread: the walk's native threads
  // and libuv's included): a cold run's wall time is mostly waiting on the device, its CPU is the cost.
  const cpu = { walkCold: [] as number[], refreshCold: [] as number[], walkWarm: [] as number[], refreshWarm: [] as number[] };
  let lastCpu = 0;
  const time = async (f: () => Promise<unknown>) => {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await f();
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    lastCpu = (c.user + c.system) / 1e6;
    return wall;
  };
  const walk = () => walker.walk([root], { threads: duThreads(), timeoutMs: 600_000, maxEntries: 1e9, excludes: [], devices: [null] });
  let calls = 0;
  let indexed = 0;
  const build = await time(async () => (indexed = (await index.refresh([root])).indexed));
  const runs = { walkCold: [] as number[], refreshCold: [] as number[], walkWarm: [] as number[], refreshWarm: [] as number[] };
  let entries = 0;
  for (const cold of [true, false]) {
    for (let i = 0; i < rounds; i++) {
      if (cold) dropCaches();
      (cold ? runs.walkCold : runs.walkWarm).push(await time(async () => (entries = (await walk()).entries)));
      (cold ? cpu.walkCold : cpu.walkWarm).push(lastCpu);
      if (cold) dropCaches();
      (cold ? runs.refreshCold : runs.refreshWarm).push(await time(async () => (calls = (await index.refresh([root])).calls)));
      (cold ? cpu.refreshCold : cpu.refreshWarm).push(lastCpu);
    }
  }
  const m = (xs: number[]) => median(xs);
  const row = (name: string, c: number[], w: number[], cc: number[], cw: number[]) => `${name.padEnd(44)} ${m(c).toFixed(4).padStart(9)} ${m(w).toFixed(4).padStart(9)} ${m(cc).toFixed(4).padStart(11)} ${m(cw).toFixed(4).padStart(11)}`;
  const x = (a: number[], b: number[]) => (m(a) / Math.max(m(b), 1e-6)).toFixed(0);
  return [
    `refresh of the unchanged emptyDir vs its full walk, in process: medians of ${rounds} interleaved runs (index built once first: ${build.toFixed(3)} s, ${indexed.toLocaleString('en-US')} entries)`,
    `${'contender'.padEnd(44)} ${'cold s'.padStart(9)} ${'warm s'.padStart(9)} ${'cold CPU s'.padStart(11)} ${'warm CPU s'.padStart(11)}`,
    row(`full walk (${entries.toLocaleString('en-US')} entries)`, runs.walkCold, runs.walkWarm, cpu.walkCold, cpu.walkWarm),
    row(`refresh (${calls.toLocaleString('en-US')} stat calls)`, runs.refreshCold, runs.refreshWarm, cpu.refreshCold, cpu.refreshWarm),
    `the refresh is ${x(runs.walkCold, runs.refreshCold)}x cheaper in wall time cold, ${x(runs.walkWarm, runs.refreshWarm)}x warm; in CPU ${x(cpu.walkCold, cpu.refreshCold)}x cold, ${x(cpu.walkWarm, cpu.refreshWarm)}x warm (target: 50x)`,
  ].join('\n');
}
