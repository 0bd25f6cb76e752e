// Bench: the socket census. `nodewarden check --only sockets` (the whole process) side by side with the
// runbook's shell loop and with a C program doing exactly the floor's syscalls on one thread, on a
// workload of PROCS processes holding SOCKETS sockets each, created here and removed at the end.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT, buildC, report, sideBySide } from './util.js';

export async function benchSockets(opts: { procs?: number; sockets?: number; rounds?: number } = {}): Promise<string> {
  const procs = opts.procs ?? 1000;
  const sockets = opts.sockets ?? 200;
  const rounds = opts.rounds ?? 5;
  const workloadBin = buildC('socket-workload.c');
  const floorBin = buildC('fd-floor.c');

  // The workload ends all its children when its stdin closes, so it cannot outlive this bench.
  const workload = spawn(workloadBin, [String(procs), String(sockets)], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      workload.stdout.once('data', (d: Buffer) => (d.toString().startsWith('ready') ? resolve() : reject(new Error(d.toString()))));
      workload.once('exit', (code) => reject(new Error(`workload exited with ${code}`)));
    });
    const cli = path.join(ROOT, 'dist', 'cli', 'main.js');
    const loop = 'n=0; for i in /proc/[0-9]*; do c=$(ls -l $i/fd 2>/dev/null | grep socket: | wc -l); n=$((n+c)); done; echo $n';
    const contenders = [
      { name: 'C floor (readdir + readlink, 1 thread)', cmd: floorBin, args: [] },
      { name: 'nodewarden check --only sockets --json', cmd: process.execPath, args: [cli, 'check', '--only', 'sockets', '--json', '--set', 'collectors.sockets.timeout=5m', '--set', 'collectors.sockets.interval=5m'] },
      { name: "runbook loop (ls -l /proc/*/fd | grep socket:)", cmd: 'bash', args: ['-c', loop], rounds: Math.min(3, rounds) },
    ];
    // One warm-up each so every contender sees warm dentry caches.
    sideBySide(contenders, 1);
    const results = sideBySide(contenders, rounds);
    const nw = JSON.parse(results[1]!.output) as { data: { sockets: { totalSockets: number } } };
    const counted = [results[0]!.output.trim(), `nodewarden: ${nw.data.sockets.totalSockets} sockets`, `loop: ${results[2]!.output.trim()} sockets`];
    const text = report(`socket census: ${procs} processes x ${sockets} sockets (${procs * sockets} socket fds), medians, interleaved runs`, results, results[0]!.name);
    return `${text}\ncounted: ${counted.join(' | ')}\nnodewarden vs floor: ${(results[1]!.median / results[0]!.median).toFixed(2)}x; vs runbook loop: ${(results[2]!.median / results[1]!.median).toFixed(1)}x faster`;
  } finally {
    workload.stdin.end();
    await new Promise((resolve) => (workload.exitCode !== null ? resolve(undefined) : workload.once('exit', resolve)));
  }
}
