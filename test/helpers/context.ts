// Builds a collector context over a host root (a captured fixture tree or the real /), as the agent does.
import { exec } from '../../agent/exec.js';
import { createHostAccess } from '../../agent/host.js';
import { loadConfig } from '../../agent/config.js';
import type { AnyCollector, CollectorContext, HostAccess, Log } from '../../collectors/types.js';

export const quietLog: Log & { child(): Log } = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return quietLog;
  },
};

/** The collector's settings with defaults, plus --set style overrides. */
export function settingsFor(collector: AnyCollector, sets: string[] = []): Record<string, unknown> & { interval: number; timeout: number } {
  const config = loadConfig({ sets, node: 'test-node' });
  return config.collectors[collector.name] as Record<string, unknown> & { interval: number; timeout: number };
}

export function contextFor<C extends AnyCollector>(collector: C, root: string, opts: { sets?: string[]; previous?: unknown; host?: HostAccess } = {}): CollectorContext<never, never> {
  return {
    node: 'test-node',
    host: opts.host ?? createHostAccess({ root, exec }),
    exec,
    config: settingsFor(collector, opts.sets) as never,
    now: () => Date.parse('2026-11-22T00:00:00Z'),
    log: quietLog,
    signal: new AbortController().signal,
    previous: opts.previous as never,
  };
}
