// `nodewarden up` (what `npm start` runs): an aggregator on 127.0.0.1, an agent for this machine and a
// tail in this terminal, in one process. Tokens are made up on the spot and never leave it.
import { loadConfig } from '../agent/config.js';
import { startAgent } from '../agent/daemon.js';
import { checkHostRoot } from '../agent/host/access.js';
import { createLogger } from '../agent/log.js';
import { Aggregator } from '../aggregator/server.js';
import { randomToken } from './aggregator.js';
import { useColor } from './format.js';
import { Tail } from './tail.js';

export interface UpOptions {
  hostRoot?: string;
  config?: string;
  sets: string[];
  json: boolean;
}

export async function runUp(opts: UpOptions): Promise<void> {
  const hostRoot = opts.hostRoot === undefined ? undefined : checkHostRoot(opts.hostRoot);
  const config = loadConfig({ file: opts.config, sets: ['agent.listen="127.0.0.1:0"', ...opts.sets], hostRoot });
  if (hostRoot === undefined) checkHostRoot(config.hostRoot);
  const tokens = { agent: randomToken(), tail: randomToken() };
  // Logs go to stderr at warn: the terminal belongs to the tail.
  const log = createLogger({ node: config.node, level: config.logLevel === 'info' ? 'warn' : config.logLevel });
  const agg = new Aggregator({
    host: '127.0.0.1',
    port: 0,
    tokens: [
      { role: 'agent', name: 'local-agent', secret: tokens.agent },
      { role: 'tail', name: 'local-tail', secret: tokens.tail },
    ],
    version: '0.1.0',
    log,
  });
  const { url } = await agg.start();
  const agent = await startAgent(config, { log, aggregator: { url, token: tokens.agent } });
  process.stderr.write(`nodewarden up: aggregator ${url}, agent for ${config.node} (${agent.runner.names().join(', ')}); Ctrl-C to stop\n`);
  const tail = new Tail({
    url,
    token: tokens.tail,
    filter: {},
    follow: true,
    json: opts.json,
    color: useColor(process.stdout),
    columns: process.stdout.columns,
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
  });
  tail.start();
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  tail.stop();
  await agent.stop();
  await agg.stop();
  process.exit(0);
}
