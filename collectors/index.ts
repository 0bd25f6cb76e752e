// Every collector, by name. The agent and `nodewarden check` run what is listed here.
import { disk } from './disk.js';
import { drift } from './drift.js';
import { immutable } from './immutable.js';
import { mounts } from './mounts.js';
import { pods } from './pods.js';
import { runtime } from './runtime.js';
import { sockets } from './sockets.js';
import { sockstat } from './sockstat.js';
import type { AnyCollector } from './types.js';

export const COLLECTORS: readonly AnyCollector[] = [disk, sockstat, sockets, runtime, drift, immutable, mounts, pods];

export function collectorNames(): string[] {
  return COLLECTORS.map((c) => c.name);
}
