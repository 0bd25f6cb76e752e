// The host's facts for the top of `nodewarden check`: what systeminformation is for. OS identity is
// read from the host root (under --host-root, /etc/os-release of the container would be wrong).
import os from 'node:os';
import type { HostAccess } from '../../collectors/types.js';
import { withDeadline } from '../../protocol/deadline.js';

export interface HostFacts {
  hostname: string;
  os: string;
  kernel: string;
  uptimeSeconds: number;
  memTotal: number;
  memAvailable: number;
  load: [number, number, number];
  cpus: number;
}

function parseOsRelease(text: string | undefined): string | undefined {
  const line = text?.split('\n').find((l) => l.startsWith('PRETTY_NAME='));
  return line?.slice('PRETTY_NAME='.length).replace(/^"|"$/g, '');
}

/** Collects facts under a timeout; systeminformation is loaded only here. */
export async function collectHostFacts(host: HostAccess, timeoutMs = 3000): Promise<HostFacts | undefined> {
  const work = (async () => {
    const si = await import('systeminformation');
    const [mem, time, cpu, osRelease, hostname] = await Promise.all([
      si.mem(),
      Promise.resolve(si.time()),
      si.cpu(),
      host.readText(host.hostPath('/etc/os-release')),
      host.readText(host.procPath('sys', 'kernel', 'hostname')),
    ]);
    const load = os.loadavg();
    const facts: HostFacts = {
      hostname: hostname?.trim() || os.hostname(),
      os: parseOsRelease(osRelease) ?? 'unknown OS',
      kernel: (await host.readText(host.procPath('sys', 'kernel', 'osrelease')))?.trim() ?? os.release(),
      uptimeSeconds: Number(time.uptime),
      memTotal: mem.total,
      memAvailable: mem.available,
      load: [load[0] ?? 0, load[1] ?? 0, load[2] ?? 0],
      cpus: cpu.cores,
    };
    return facts;
  })();
  try {
    return await withDeadline(work, timeoutMs, () => undefined);
  } catch {
    return undefined;
  }
}
