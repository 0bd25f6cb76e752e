// Every collector, by name. The agent and `nodewarden check` run what is listed here.
import { disk } from './disk.js';
import { sockets } from './sockets.js';
import { sockstat } from './sockstat.js';
import type { AnyCollector } from './types.js';

export const COLLECTORS: readonly AnyCollector[] = [disk, sockstat, sockets];

export function collectorNames(): string[] {
  return COLLECTORS.map((c) => c.name);
}
