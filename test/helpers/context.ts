// Builds a collector context over a host root (a captured fixture tree or the real /), as the agent does.
import { loadConfig } from '../../agent/config.js';
import { createEnvironment, type Environment } from '../../agent/environment.js';
import type { AnyCollector, CollectorContext, Log } from '../../collectors/types.js';

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

/** The environment the agent would build for this host root (runtime sockets read under it). */
export function envFor(root: string, sets: string[] = []): Environment {
  return createEnvironment(loadConfig({ sets, hostRoot: root, node: 'test-node' }));
}

export function contextFor<C extends AnyCollector>(collector: C, root: string, opts: { sets?: string[]; previous?: unknown; env?: Environment } = {}): CollectorContext<never, never> {
  const env = opts.env ?? envFor(root, opts.sets);
  return {
    node: 'test-node',
    host: env.host,
    exec: env.exec,
    runtime: env.runtime,
    attrs: env.attrs,
    config: settingsFor(collector, opts.sets) as never,
    now: Date.now,
    log: quietLog,
    signal: new AbortController().signal,
    previous: opts.previous as never,
    ...(env.walker ? { walker: env.walker } : {}),
  };
}
