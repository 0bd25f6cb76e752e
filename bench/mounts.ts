// Bench: who holds a mount. `nodewarden who-holds` side by side with the runbook's way: grep every
// /proc/*/mountinfo, then ps -f each holder. 500 processes in 5 mount namespaces (plus the host's),
// created here and ended by pid afterwards.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, report, sideBySide } from './util.js';

export async function benchMounts(opts: { namespaces?: number; perNamespace?: number; rounds?: number } = {}): Promise<string> {
  const nsCount = opts.namespaces ?? 5;
  const per = opts.perNamespace ?? 100;
  const rounds = opts.rounds ?? 5;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-bench-ns-'));
  const leaders: ChildProcess[] = [];
  const members: number[] = [];
  try {
    for (let i = 0; i < nsCount; i++) {
      const mnt = path.join(dir, `m${i}`);
      mkdirSync(mnt);
      // Each namespace mounts its own tmpfs (source nwbench-i) and holds `per` processes.
      const script = `mount -t tmpfs nwbench-${i} ${mnt} && for i in $(seq ${per - 1}); do sleep 900 & done; echo ready; exec sleep 900`;
      const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      leaders.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout?.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`namespace ${i} exited with ${code}`)));
      });
      const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
      members.push(...kids.filter(Boolean));
    }
    const needle = 'nwbench-3';
    const loop = `for f in $(grep -l ${needle} /proc/[0-9]*/mountinfo 2>/dev/null); do p=\${f#/proc/}; ps -f \${p%/mountinfo}; done`;
    const contenders = [
      { name: 'nodewarden who-holds', cmd: process.execPath, args: [path.join(ROOT, 'dist', 'cli', 'main.js'), 'who-holds', needle] },
      { name: 'runbook: grep /proc/*/mountinfo + ps -f', cmd: 'bash', args: ['-c', loop] },
    ];
    sideBySide(contenders, 1);
    const results = sideBySide(contenders, rounds);
    const nwHolders = results[0]!.output.split('\n').filter((l) => /^\s*\d+\s+sleep/.test(l)).length;
    const loopHolders = results[1]!.output.split('\n').filter((l) => /sleep 900/.test(l)).length;
    const processes = readFileSync('/proc/loadavg', 'utf8').split(' ')[3]?.split('/')[1];
    return [
      report(`who holds a mount: ${nsCount} namespaces x ${per} processes (${processes} tasks on the host), medians of ${rounds} interleaved runs`, results, results[0]!.name),
      `holders listed: nodewarden ${nwHolders}, runbook loop ${loopHolders}; nodewarden is ${(results[1]!.median / results[0]!.median).toFixed(1)}x faster`,
    ].join('\n');
  } finally {
    for (const pid of members) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const l of leaders) l.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
