// `nodewarden agent`: runs the collectors continuously; with --aggregator, streams findings to it.
import { loadConfig } from '../agent/config.js';
import { startAgent } from '../agent/daemon.js';
import { checkHostRoot } from '../agent/host/access.js';
import { createLogger } from '../agent/log.js';
import { readTokenFile } from '../protocol/tokens.js';
import type { Transition } from '../agent/tracker.js';
import { NodewardenError } from '../protocol/errors.js';
import { escapeForTerminal } from '../protocol/terminal.js';

export interface AgentOptions {
  hostRoot?: string;
  config?: string;
  sets: string[];
  node?: string;
  aggregator?: string;
  tokenFile?: string;
  listen?: string;
}

export async function runAgent(opts: AgentOptions): Promise<void> {
  const hostRoot = opts.hostRoot === undefined ? undefined : checkHostRoot(opts.hostRoot);
  const sets = [...opts.sets];
  if (opts.listen !== undefined) sets.push(`agent.listen=${JSON.stringify(opts.listen)}`);
  const config = loadConfig({ file: opts.config, sets, hostRoot, node: opts.node });
  if (hostRoot === undefined) checkHostRoot(config.hostRoot);
  let aggregator: { url: string; token: () => string } | undefined;
  if (opts.aggregator !== undefined) {
    if (!/^wss?:\/\/[^/]+/.test(opts.aggregator)) throw new NodewardenError('NW_ERR_USAGE', `--aggregator must be a ws:// or wss:// URL, got ${opts.aggregator}`);
    const tokenFile = opts.tokenFile ?? process.env['NODEWARDEN_TOKEN_FILE'];
    if (!tokenFile) throw new NodewardenError('NW_ERR_USAGE', '--aggregator needs --token-file (or NODEWARDEN_TOKEN_FILE) with the agent token');
    readTokenFile(tokenFile); // a missing or empty file is a mistake to report now, not to retry forever
    // Read again before every connect: kubelet rotates projected tokens and Secrets update in place.
    aggregator = { url: opts.aggregator, token: () => readTokenFile(tokenFile) };
  }
  const log = createLogger({ node: config.node, level: config.logLevel });
  const daemon = await startAgent(config, { log, ...(aggregator ? { aggregator } : {}) });
  daemon.runner.on('transition', (t: Transition) => {
    const f = t.finding;
    log.info({ transition: t.type, finding: f }, escapeForTerminal(`${t.type}: ${f.severity} ${f.check} ${f.subject}: ${f.message}`));
  });
  log.info({ collectors: daemon.runner.names(), hostRoot: config.hostRoot, aggregator: aggregator?.url ?? null, listen: daemon.address ?? null }, 'agent started');
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'agent stopping');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await daemon.stop();
  process.exit(0);
}
