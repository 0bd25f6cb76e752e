// Prune brokering: an admin's POST /api/nodes/NODE/prune becomes a command with an id sent to that
// node's agent; the agent's progress lines and its result are relayed to the requester as NDJSON.
// One command per node at a time. The requester hears exactly one last line: the result, or an error
// when the command times out, the agent disconnects or the aggregator stops. Answers that come later,
// or from another node, are dropped.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentMessage, AggregatorToAgent } from '../protocol/wire.js';
import { encodePruneLine, type PruneLine } from '../protocol/prune-stream.js';

/** The request body: {"untilMs": N, "dryRun": bool}, both optional. */
export interface PruneArgs {
  untilMs: number;
  dryRun: boolean;
}

export const DEFAULT_PRUNE_UNTIL_MS = 72 * 3_600_000;

/** Validates a prune request body; a refusal is a 400 with its reason. */
export function parsePruneRequest(body: string): PruneArgs | { error: string } {
  let args: { untilMs?: unknown; dryRun?: unknown };
  try {
    const parsed: unknown = body ? JSON.parse(body) : {};
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    args = parsed as typeof args;
  } catch {
    return { error: 'body must be JSON: {"untilMs": N, "dryRun": bool}' };
  }
  const untilMs = args.untilMs ?? DEFAULT_PRUNE_UNTIL_MS;
  if (typeof untilMs !== 'number' || !Number.isFinite(untilMs) || untilMs < 0) return { error: 'untilMs must be a number of milliseconds >= 0' };
  if (args.dryRun !== undefined && typeof args.dryRun !== 'boolean') return { error: 'dryRun must be true or false' };
  return { untilMs, dryRun: args.dryRun === true };
}

/** Where the requester's NDJSON lines go (an http.ServerResponse). */
export interface CommandReply {
  writeHead(status: number, headers: Record<string, string>): unknown;
  write(text: string): unknown;
  end(text: string): unknown;
  on(event: 'close', listener: () => void): unknown;
}

/** The agent's answers to a command. */
export type CommandAnswer = Extract<AgentMessage, { type: 'progress' | 'result' }>;

interface PendingCommand {
  node: string;
  reply: CommandReply;
  timer: NodeJS.Timeout;
}

export interface CommandBrokerOptions {
  /** Longest a prune may take before the requester is told it timed out. */
  timeoutMs: number;
  log: Logger;
}

export class CommandBroker {
  private readonly pending = new Map<string, PendingCommand>();

  constructor(private readonly opts: CommandBrokerOptions) {}

  /** A prune is already running on this node (the caller answers 409). */
  busy(node: string): boolean {
    return [...this.pending.values()].some((c) => c.node === node);
  }

  /** Accepts the command (the first NDJSON line names its id) and sends it to the node's agent. */
  start(node: string, args: PruneArgs, who: string, reply: CommandReply, send: (msg: AggregatorToAgent) => void): string {
    const id = randomUUID();
    const { untilMs, dryRun } = args;
    this.opts.log.info({ node, commandId: id, requestedBy: who, untilMs, dryRun }, 'prune requested');
    reply.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    reply.write(encodePruneLine({ type: 'accepted', commandId: id, node, untilMs, dryRun }));
    const timer = setTimeout(() => this.finish(id, { type: 'error', message: `no result from ${node} within ${this.opts.timeoutMs} ms` }), this.opts.timeoutMs);
    this.pending.set(id, { node, reply, timer });
    reply.on('close', () => {
      if (this.pending.has(id)) this.opts.log.warn({ node, commandId: id }, 'prune requester went away; the agent carries on');
    });
    send({ v: 1, type: 'command', id, command: 'prune', untilMs, dryRun, requestedBy: who });
    return id;
  }

  /** Progress or the result from the agent on `node`. */
  answer(node: string, msg: CommandAnswer): void {
    const cmd = this.pending.get(msg.commandId);
    if (!cmd || cmd.node !== node) return; // a late answer to a command we gave up on
    if (msg.type === 'progress') cmd.reply.write(encodePruneLine({ type: 'progress', ...msg.progress }));
    else this.finish(msg.commandId, { type: 'result', ...msg.result });
  }

  /** The agent on `node` went away: its commands end with an error. */
  agentGone(node: string): void {
    for (const [id, cmd] of this.pending) if (cmd.node === node) this.finish(id, { type: 'error', message: `the agent on ${node} disconnected during the command` });
  }

  /** Every command still running ends with an error. */
  stop(): void {
    for (const id of [...this.pending.keys()]) this.finish(id, { type: 'error', message: 'aggregator shutting down' });
  }

  private finish(id: string, last: Extract<PruneLine, { type: 'result' | 'error' }>): void {
    const cmd = this.pending.get(id);
    if (!cmd) return;
    this.pending.delete(id);
    clearTimeout(cmd.timer);
    this.opts.log.info({ node: cmd.node, commandId: id, outcome: last }, 'prune finished');
    cmd.reply.end(encodePruneLine(last));
  }
}
