// The agent's side of `nodewarden prune`: a prune command from the aggregator is refused when prune is
// disabled on this node or one is already running, else it runs (see prune.ts) with each image's
// progress sent back as it goes and one result at the end. The daemon hands this handler to the link.
import type { HostAccess, Log } from '../../collectors/types.js';
import { errorMessage } from '../../protocol/errors.js';
import type { AgentMessage, AggregatorToAgent, PruneResult } from '../../protocol/wire.js';
import type { Config } from '../config.js';
import type { Runtimes } from '../runtime/model.js';
import { configuredSandboxes, prune } from './prune.js';

export type PruneCommand = Extract<AggregatorToAgent, { type: 'command' }>;

/** Handles one command; sends progress and the result through `reply`. */
export type CommandHandler = (cmd: PruneCommand, reply: (msg: AgentMessage) => void) => void;

export interface PruneCommandOptions {
  node: string;
  settings: Config['prune'];
  /** Where the node's configured sandbox images are read (under --host-root). */
  host: HostAccess;
  runtime: Runtimes;
  log: Log;
  /** The prune itself; tests hand in one they control. */
  prune?: typeof prune;
}

/** One prune at a time on this node; a second one while it runs is refused, as is any when disabled. */
export function createPruneCommandHandler(opts: PruneCommandOptions): CommandHandler {
  const { node, settings, log } = opts;
  const run = opts.prune ?? prune;
  let pruning = false;
  return (cmd, reply) => {
    const refuse = (refused: string) => {
      log.warn({ commandId: cmd.id, requestedBy: cmd.requestedBy, refused }, 'prune refused');
      reply({ v: 1, type: 'result', commandId: cmd.id, result: { ok: false, dryRun: cmd.dryRun, runtime: 'none', removed: 0, bytes: 0, errors: [refused], refused } });
    };
    if (!settings.enabled) return refuse(`prune is disabled on ${node} (set prune.enabled: true in the agent's config)`);
    if (pruning) return refuse(`a prune is already running on ${node}`);
    pruning = true;
    log.info({ commandId: cmd.id, requestedBy: cmd.requestedBy, untilMs: cmd.untilMs, dryRun: cmd.dryRun }, 'prune started');
    void configuredSandboxes(opts.host)
      .then((configured) => {
        log.info({ commandId: cmd.id, configuredSandboxes: configured }, 'sandbox images this node is configured with');
        const pruneOpts = { untilMs: cmd.untilMs, dryRun: cmd.dryRun, sandboxImages: settings.sandboxImages, configuredSandboxes: configured, containerdNamespaces: settings.containerdNamespaces, label: settings.label, host: opts.host };
        return run(opts.runtime, pruneOpts, (progress) => {
          log.info({ commandId: cmd.id, ...progress }, 'prune progress');
          reply({ v: 1, type: 'progress', commandId: cmd.id, progress });
        });
      })
      .catch((err: unknown): PruneResult => ({ ok: false, dryRun: cmd.dryRun, runtime: 'unknown', removed: 0, bytes: 0, errors: [errorMessage(err)] }))
      .then((result) => {
        pruning = false;
        log.info({ commandId: cmd.id, requestedBy: cmd.requestedBy, ...result }, 'prune finished');
        reply({ v: 1, type: 'result', commandId: cmd.id, result });
      });
  };
}
