// `nodewarden agent`: runs the collectors continuously. (Streaming to an aggregator comes with the
// pipeline; until then transitions are logged.)
import { COLLECTORS } from '../collectors/index.js';
import { loadConfig } from '../agent/config.js';
import { createEnvironment } from '../agent/environment.js';
import { checkHostRoot } from '../agent/host.js';
import { createLogger } from '../agent/log.js';
import { Runner } from '../agent/runner.js';
import type { Transition } from '../agent/tracker.js';

export interface AgentOptions {
  hostRoot?: string;
  config?: string;
  sets: string[];
  node?: string;
}

export async function runAgent(opts: AgentOptions): Promise<void> {
  const hostRoot = opts.hostRoot === undefined ? undefined : checkHostRoot(opts.hostRoot);
  const config = loadConfig({ file: opts.config, sets: opts.sets, hostRoot, node: opts.node });
  if (hostRoot === undefined) checkHostRoot(config.hostRoot);
  const log = createLogger({ node: config.node, level: config.logLevel });
  const runner = new Runner({ collectors: COLLECTORS, config, env: createEnvironment(config), log });
  runner.on('transition', (t: Transition) => {
    const f = t.finding;
    log.info({ transition: t.type, finding: f }, `${t.type}: ${f.severity} ${f.check} ${f.subject}: ${f.message}`);
  });
  log.info({ collectors: runner.names(), hostRoot: config.hostRoot }, 'agent started');
  runner.start();
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'agent stopping');
      runner.stop();
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  process.exit(0);
}
