// Every collector, by name. The agent and `nodewarden check` run what is listed here.
import { conntrack } from './conntrack.js';
import { disk } from './disk.js';
import { drift } from './drift.js';
import { immutable } from './immutable.js';
import { kernel } from './kernel.js';
import { kubelet } from './kubelet.js';
import { mounts } from './mounts.js';
import { pids } from './pids.js';
import { pods } from './pods.js';
import { pressure } from './pressure.js';
import { runtime } from './runtime.js';
import { sockets } from './sockets.js';
import { sockstat } from './sockstat.js';
import type { AnyCollector } from './types.js';

export const COLLECTORS: readonly AnyCollector[] = [disk, sockstat, conntrack, sockets, pids, runtime, drift, immutable, mounts, pods, kernel, pressure, kubelet];

export function collectorNames(): string[] {
  return COLLECTORS.map((c) => c.name);
}

/**
 * NodeCondition type -> the checks that set it, in the order collectors and their checks are listed,
 * derived from each collector's `conditions`. Checks declared with no condition are left out.
 */
export function nodeConditions(collectors: readonly AnyCollector[] = COLLECTORS): { type: string; checks: string[] }[] {
  const byType = new Map<string, string[]>();
  for (const c of collectors) {
    for (const check of c.checks) {
      const type = c.conditions[check];
      if (!type) continue;
      const checks = byType.get(type) ?? [];
      checks.push(check);
      byType.set(type, checks);
    }
  }
  return [...byType].map(([type, checks]) => ({ type, checks }));
}
