// Bench: the attribute scan. `nodewarden find-immutable` (the whole process) side by side with
// `lsattr -R` and a C program doing the floor's syscalls on one thread (a walk, one statx per entry),
// over the same tree on a dedicated loop-mounted ext4 that the bench creates and removes.
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { ROOT, benchLoopFs, buildC, report, sideBySide } from './util.js';

export async function benchImmutable(opts: { files?: number; rounds?: number } = {}): Promise<string> {
  const sizes = opts.files ? [opts.files] : [200_000, 1_000_000];
  const rounds = opts.rounds ?? 3;
  const makeTree = buildC('make-tree.c');
  const floor = buildC('statx-floor.c');
  const cli = path.join(ROOT, 'dist', 'cli', 'main.js');
  const out: string[] = [];
  for (const files of sizes) {
    const { mnt, cleanup } = benchLoopFs(files, 'nw-bench-tree-');
    try {
      const dirs = Math.ceil(files / 1000);
      execFileSync(makeTree, [mnt, String(dirs), '1000']);
      const locked = path.join(mnt, 'd00007', 'sub', 'f1');
      execFileSync('chattr', ['+i', locked]);
      const contenders = [
        { name: 'C floor (walk + statx, 1 thread)', cmd: floor, args: [mnt] },
        { name: 'nodewarden find-immutable', cmd: process.execPath, args: [cli, 'find-immutable', mnt] },
        { name: 'agent scan, in process (no start-up)', cmd: process.execPath, args: [path.join(ROOT, 'dist', 'bench', 'scan-in-process.js'), mnt], inProcess: true },
        { name: 'lsattr -R', cmd: 'lsattr', args: ['-R', mnt] },
        // check on a terminal: the same scan in about 32 groups of units, reporting after each.
        { name: 'agent scan with progress (check on a tty)', cmd: process.execPath, args: [path.join(ROOT, 'dist', 'bench', 'scan-in-process.js'), '--progress', mnt], inProcess: true },
      ];
      sideBySide(contenders, 1);
      const results = sideBySide(contenders, rounds);
      const lsattrFound = results[3]!.output.split('\n').filter((l) => /^\S*i\S*\s/.test(l)).length;
      const nwFound = results[1]!.output.split('\n').filter((l) => l.startsWith('i')).length;
      out.push(
        report(`attribute scan: ${(dirs * 1000 + dirs * 2).toLocaleString('en-US')} entries, medians of ${rounds} interleaved runs`, results, results[0]!.name),
        `found: nodewarden ${nwFound}, lsattr ${lsattrFound} (one file made immutable); vs lsattr -R: find-immutable ${(results[3]!.median / results[1]!.median).toFixed(1)}x faster, the agent's in-process scan ${(results[3]!.median / results[2]!.median).toFixed(1)}x faster; with check's progress ${(results[4]!.median / results[2]!.median).toFixed(2)}x the time of the scan without`,
        '',
      );
      spawnSync('chattr', ['-i', locked]);
    } finally {
      cleanup();
    }
  }
  return out.join('\n');
}
