// Every check name nodewarden itself raises: the collectors' (collectors/*.ts `checks`), the agent's
// own (a collector that failed or timed out) and the aggregator's (node.silent). Metrics take their
// label values from this set only, so an agent cannot mint series by inventing check names.
// test/protocol/checks.ts holds it equal to the collectors' registry.
export const KNOWN_CHECKS: ReadonlySet<string> = new Set([
  'disk.usage',
  'disk.inodes',
  'disk.eviction',
  'disk.readonly',
  'disk.unresponsive',
  'sockstat.orphans',
  'sockstat.timewait',
  'sockstat.memory',
  'sockets.process',
  'runtime.unresponsive',
  'runtime.down',
  'runtime.drift',
  'runtime.orphan',
  'immutable.file',
  'mount.holder',
  'pod.stuck',
  'kernel.oom',
  'kernel.systemOom',
  'kernel.hungTask',
  'kernel.lockup',
  'kernel.fsError',
  'kernel.fsReadonly',
  'kernel.ioError',
  'kernel.conntrackFull',
  'kernel.logLoss',
  'collector.failed',
  'collector.timeout',
  'node.silent',
]);
