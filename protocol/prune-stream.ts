// The prune stream: the aggregator's answer to `POST /api/nodes/NODE/prune`, which `nodewarden prune`
// reads as the agent works. Newline-delimited JSON over the HTTP response (application/x-ndjson), one
// object per line: `accepted`, then a `progress` per image (as the agent sent it), then one `result`
// (as the agent sent it) or one `error` (the aggregator gave up). Both sides are typed from these specs,
// and the CLI validates every line on receipt like the WebSocket messages: a line that is not one of
// these, or whose fields are wrong, is refused with NW_ERR_PROTOCOL instead of being printed or obeyed.
import { NodewardenError } from './errors.js';
import { s, summarizeProblems, type Problem, type Spec } from './schema.js';
import { FINDING_LIMITS, MAX_MESSAGE_BYTES, NODE_NAME, pruneProgressSpec, pruneResultSpec, shown, type MessageOf } from './wire.js';

/** The longest line read: a `result` relays one agent message, which was at most MAX_MESSAGE_BYTES. */
export const MAX_PRUNE_LINE_BYTES = MAX_MESSAGE_BYTES;

const pruneLineSpecs = {
  accepted: s.object({
    type: s.literal('accepted'),
    commandId: s.required(s.string({ doc: '', nonEmpty: true, maxLength: 64 })),
    node: s.required(s.string({ doc: '', nonEmpty: true, pattern: NODE_NAME })),
    untilMs: s.required(s.number({ doc: '', min: 0 })),
    dryRun: s.required(s.boolean({ doc: '' })),
  }),
  progress: s.object({ type: s.literal('progress'), ...pruneProgressSpec.fields }),
  result: s.object({ type: s.literal('result'), ...pruneResultSpec.fields }),
  error: s.object({ type: s.literal('error'), message: s.required(s.string({ doc: '', maxLength: FINDING_LIMITS.messageChars })) }),
};

/** One line of the prune stream. */
export type PruneLine = MessageOf<typeof pruneLineSpecs>;

/** The specs by line type, for the type-level test (test/protocol/types.ts). */
export type PruneLineSpecs = typeof pruneLineSpecs;

/** One line as the aggregator writes it, newline included. */
export function encodePruneLine(line: PruneLine): string {
  return `${JSON.stringify(line)}\n`;
}

const refuse = (message: string) => new NodewardenError('NW_ERR_PROTOCOL', message);

/**
 * Parses and validates one line (without its newline); throws NodewardenError NW_ERR_PROTOCOL. The
 * message may quote the peer's text: escape it before it reaches a terminal.
 */
export function decodePruneLine(raw: string): PruneLine {
  const size = Buffer.byteLength(raw);
  if (size > MAX_PRUNE_LINE_BYTES) throw refuse(`a line of ${size} bytes from the aggregator is over the ${MAX_PRUNE_LINE_BYTES}-byte limit`);
  let line: unknown;
  try {
    line = JSON.parse(raw);
  } catch {
    throw refuse(`unreadable line from the aggregator: ${raw.length > 200 ? `${raw.slice(0, 199)}…` : raw}`);
  }
  if (typeof line !== 'object' || line === null || Array.isArray(line)) throw refuse(`a line from the aggregator must be a JSON object, got ${shown(line)}`);
  const type = (line as { type?: unknown }).type;
  // Own keys only: "__proto__" or "constructor" is an unknown type, not Object.prototype's.
  if (typeof type !== 'string' || !Object.hasOwn(pruneLineSpecs, type)) throw refuse(`unknown line type ${shown(type)} from the aggregator`);
  const spec: Spec<unknown> = pruneLineSpecs[type as keyof typeof pruneLineSpecs];
  const problems: Problem[] = [];
  try {
    spec.check(line, '', problems);
  } catch {
    throw refuse(`invalid ${type} line from the aggregator`);
  }
  if (problems.length > 0) {
    throw refuse(`invalid ${type} line from the aggregator: ${summarizeProblems(problems, '(line)')}`.slice(0, 300));
  }
  return line as PruneLine;
}
