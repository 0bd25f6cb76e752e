// Bench: `nodewarden du` (the whole process: config, runtime and image questions, statfs, the walk)
// side by side with `du -sx` of the same directories, and `docker system df -v` where docker runs, on
// 200,000 files in a kubelet stand-in (one emptyDir) on a loop-mounted ext4 the bench makes and removes.
// Cold runs drop the page cache before each contender (sync; echo 3 > /proc/sys/vm/drop_caches), warm
// ones do not; the walk alone in one process (no start-up) is timed too.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, benchLoopFs, buildC, median, report, timeCommand, type Measured } from './util.js';

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
    const ratio = (rs: Measured[], i: number) => (rs[0]!.median / rs[i]!.median).toFixed(2);
    return [
      report(`du, cold (page cache dropped before each run): ${walked.toLocaleString('en-US')} entries walked, medians of ${rounds} interleaved runs`, cold, 'du -sx'),
      '',
      report(`du, warm: medians of ${rounds} interleaved runs`, warm, 'du -sx'),
      '',
      `vs du -sx: nodewarden du ${ratio(cold, 1)}x as fast cold, ${ratio(warm, 1)}x warm; the walk alone ${ratio(cold, 2)}x cold, ${ratio(warm, 2)}x warm${docker ? ' (docker system df -v measures docker\'s own storage, not these dirs: for scale only)' : ''}`,
    ].join('\n');
  } finally {
    cleanup();
  }
}
