// The wire protocol between agents, the aggregator and tailers: versioned JSON messages, every field
// validated on receipt, with a size limit. An invalid message gets a close code and a reason.
import { NodewardenError } from './errors.js';
import { FINDING_STATES, SEVERITIES, severityRank, type Finding } from './finding.js';
import { s, summarizeProblems, type Infer, type Problem, type Spec } from './schema.js';
import { TRANSITION_TYPES } from './transition.js';

export const PROTOCOL_VERSION = 1;
/** The largest message accepted, in bytes (a snapshot of a few thousand findings). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** The largest message a tailer accepts (cli/tail.ts); the aggregator chunks history and active sets far below it. */
export const MAX_TAILER_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * Per-field bounds on a finding, enforced on receipt: what collectors write is far below them, and
 * with them one finding is at most about 24 KiB, so no peer can make history or the journal hold
 * megabytes per transition. docs/reference.md, "Limits".
 */
export const FINDING_LIMITS = {
  idChars: 128,
  checkChars: 128,
  subjectChars: 1024,
  messageChars: 4096,
  remedyChars: 2048,
  workloadChars: 256,
  evidenceDepth: 8,
  evidenceBytes: 16 * 1024,
} as const;

/** A Kubernetes node name (a DNS subdomain): what a hello's node and a finding's node must look like. */
export const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

/** WebSocket close codes: 1008 and 1009 are the standard ones; 4xxx are ours. */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008, // flooding
  TOO_BIG: 1009,
  MALFORMED: 4000, // not JSON, unknown type, invalid fields
  UNAUTHORIZED: 4001,
  VERSION: 4002, // unsupported protocol version
  REPLACED: 4003, // another agent connected for the same node
  SILENT: 4004, // heartbeat missed
  FORBIDDEN: 4005, // the credential may not speak for this node, or its node quota is used up
  LIMIT: 4006, // a server-side bound: findings per node, one subscription per connection
  INTERNAL: 1011, // the aggregator failed handling this message (logged with a code; it serves on)
} as const;

/**
 * The upgrade response header by which an aggregator says which optional agent messages it takes.
 * Old peers ignore an unknown header, where an unknown message type or field closes the link (4000),
 * so an agent sends an optional message only to an aggregator that named it here.
 */
export const FEATURES_HEADER = 'x-nodewarden-features';
/** `refresh`: findings whose numbers changed but whose meaning did not (protocol/transition.ts). */
export const AGGREGATOR_FEATURES = ['refresh'] as const;

const str = (doc: string, maxLength?: number) => s.required(s.string({ doc, ...(maxLength ? { maxLength } : {}) }));
const nonEmpty = (doc: string, maxLength?: number) => s.required(s.string({ doc, nonEmpty: true, ...(maxLength ? { maxLength } : {}) }));
/** An object that must be there and not null (the schema's config objects take null as empty). */
function present<T>(spec: Spec<T>): Spec<Exclude<T, undefined>> {
  return { ...spec, check: (input, path, problems) => (input === null || input === undefined ? (problems.push({ path, message: `is required and must be an object, got ${String(input)}` }), undefined) : (spec.check(input, path, problems) as Exclude<T, undefined> | undefined)) } as Spec<Exclude<T, undefined>>;
}
const iso = (doc: string) => s.required(s.string({ doc, pattern: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/ }));

const L = FINDING_LIMITS;
const workloadField = () => s.string({ doc: '', maxLength: L.workloadChars });
const workloadSpec = s.object({
  containerId: workloadField(),
  containerName: workloadField(),
  pod: workloadField(),
  namespace: workloadField(),
  podUid: workloadField(),
});

/** A finding as it crosses the wire; its type is protocol/finding.ts's `Finding` (test/protocol/types.ts holds them equal). */
export const findingSpec = present(s.object({
  id: nonEmpty('stable id', L.idChars),
  node: s.required(s.string({ doc: 'node', nonEmpty: true, pattern: NODE_NAME })),
  check: s.required(s.string({ doc: 'check', maxLength: L.checkChars, pattern: /^[a-z][a-zA-Z0-9_-]*(\.[a-zA-Z0-9_-]+)+$/ })),
  severity: s.required(s.oneOf(SEVERITIES, { doc: 'severity' })),
  subject: str('subject', L.subjectChars),
  message: nonEmpty('message', L.messageChars),
  evidence: s.jsonObject({ doc: 'evidence', maxDepth: L.evidenceDepth, maxBytes: L.evidenceBytes }),
  remedy: str('remedy', L.remedyChars),
  workload: s.optional(workloadSpec),
  state: s.required(s.oneOf(FINDING_STATES, { doc: 'state' })),
  firstSeen: iso('first seen'),
  lastSeen: iso('last seen'),
}));

const transitionSpec = s.object({
  type: s.required(s.oneOf(TRANSITION_TYPES, { doc: '' })),
  finding: findingSpec,
});
/** A transition as the aggregator keeps and sends it; its type is protocol/transition.ts's `TimedTransition`. */
const timedTransitionSpec = s.object({ ...transitionSpec.fields, at: iso('') });

const MAX_ITEMS = 20_000;

/** Every message starts with these two: the version and its own type, as literal types. */
const head = <const T extends string>(type: T) => ({ v: s.literal(PROTOCOL_VERSION), type: s.literal(type) });

export const collectorStatusSpec = s.object({ name: str('', 128), status: str('', 64), durationMs: s.required(s.number({ doc: '', min: 0 })), detail: s.string({ doc: '', maxLength: L.messageChars }), finishedAt: s.string({ doc: '', maxLength: 64 }) });
export type CollectorStatusWire = Infer<typeof collectorStatusSpec>;

/** One image an agent's prune handled: `kept` ones say why in `reason` (docs/design.md). */
export const pruneProgressSpec = s.object({ image: str('', 1024), size: s.required(s.number({ doc: '', min: 0 })), state: s.required(s.oneOf(['removed', 'failed', 'would-remove', 'kept'] as const, { doc: '' })), reason: s.string({ doc: '', maxLength: L.messageChars }), index: s.required(s.number({ doc: '', min: 0, integer: true })), total: s.required(s.number({ doc: '', min: 0, integer: true })) });
export type PruneProgress = Infer<typeof pruneProgressSpec>;

export const pruneResultSpec = s.object({ ok: s.required(s.boolean({ doc: '' })), dryRun: s.required(s.boolean({ doc: '' })), runtime: str('', 64), removed: s.required(s.number({ doc: '', min: 0 })), bytes: s.required(s.number({ doc: '', min: 0 })), errors: s.required(s.list(s.string({ doc: '', maxLength: L.messageChars }), { doc: '', maxItems: 1000 })), kept: s.number({ doc: '' }), refused: s.string({ doc: '', maxLength: L.messageChars }) });
export type PruneResult = Infer<typeof pruneResultSpec>;

const agentSpecs = {
  hello: s.object({ ...head('hello'), protocol: s.required(s.number({ doc: '', integer: true })), node: s.required(s.string({ doc: '', nonEmpty: true, pattern: NODE_NAME })), agentVersion: str('', 128), collectors: s.required(s.list(s.string({ doc: '', maxLength: 128 }), { doc: '', maxItems: 200 })) }),
  snapshot: s.object({ ...head('snapshot'), findings: s.required(s.list(findingSpec, { doc: '', maxItems: MAX_ITEMS })) }),
  delta: s.object({ ...head('delta'), transitions: s.required(s.list(transitionSpec, { doc: '', maxItems: MAX_ITEMS })) }),
  /** Active findings with fresh numbers, same meaning: the aggregator's view changes, no transition. */
  refresh: s.object({ ...head('refresh'), findings: s.required(s.list(findingSpec, { doc: '', maxItems: MAX_ITEMS })) }),
  status: s.object({ ...head('status'), collectors: s.required(s.list(present(collectorStatusSpec), { doc: '', maxItems: 200 })) }),
  progress: s.object({ ...head('progress'), commandId: nonEmpty('', 64), progress: present(pruneProgressSpec) }),
  result: s.object({ ...head('result'), commandId: nonEmpty('', 64), result: present(pruneResultSpec) }),
};

/** The union of the types of a table of message specs. */
export type MessageOf<T> = { [K in keyof T]: Infer<T[K]> }[keyof T];

export type AgentMessage = MessageOf<typeof agentSpecs>;

/** What a tailer may ask for; every key is optional (absent: any). */
export const tailFilterSpec = s.object({ node: s.string({ doc: '', maxLength: 253 }), check: s.string({ doc: '', maxLength: L.checkChars }), severity: s.oneOf(SEVERITIES, { doc: '' }), state: s.oneOf(FINDING_STATES, { doc: '' }) });
export type TailFilter = Infer<typeof tailFilterSpec>;

const tailerSpecs = {
  subscribe: s.object({
    ...head('subscribe'),
    // Optional (absent: every finding), but null is refused rather than taken for "no filter".
    filter: s.optional(present(tailFilterSpec)),
    sinceMs: s.number({ doc: '', min: 0 }),
  }),
};

/** A missing filter means every finding. */
export type TailerMessage = MessageOf<typeof tailerSpecs>;

const toAgentSpecs = {
  welcome: s.object({ ...head('welcome'), aggregatorVersion: str('') }),
  command: s.object({ ...head('command'), id: nonEmpty(''), command: s.required(s.oneOf(['prune'] as const, { doc: '' })), untilMs: s.required(s.number({ doc: '', min: 0 })), dryRun: s.required(s.boolean({ doc: '' })), requestedBy: str('') }),
};

const toTailerSpecs = {
  /** The active set, possibly in several chunks: all but the last say more: true. */
  active: s.object({ ...head('active'), findings: s.required(s.list(findingSpec, { doc: '' })), more: s.boolean({ doc: '' }) }),
  /** History, oldest first, possibly in several chunks: all but the last say more: true. */
  history: s.object({ ...head('history'), transitions: s.required(s.list(timedTransitionSpec, { doc: '' })), more: s.boolean({ doc: '' }) }),
  transition: s.object({ ...head('transition'), transition: timedTransitionSpec }),
};

export type AggregatorToAgent = MessageOf<typeof toAgentSpecs>;
export type AggregatorToTailer = MessageOf<typeof toTailerSpecs>;

const aggregatorSpecs = { ...toAgentSpecs, ...toTailerSpecs };

/** The message specs by direction, for the type-level test (test/protocol/types.ts). */
export type MessageSpecs = { agent: typeof agentSpecs; tailer: typeof tailerSpecs; toAgent: typeof toAgentSpecs; toTailer: typeof toTailerSpecs };

/** An invalid message: NW_ERR_PROTOCOL, with the WebSocket close code the receiver answers with. */
export class WireError extends NodewardenError {
  constructor(
    readonly closeCode: number,
    readonly reason: string,
  ) {
    super('NW_ERR_PROTOCOL', reason);
    this.name = 'WireError';
  }
}

/** A peer's value for a close reason: short, and never serialized whole (it may nest 5,000 deep). */
export function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.slice(0, 40));
  if (typeof v === 'object' && v !== null) return Array.isArray(v) ? 'a list' : 'an object';
  return String(v);
}

/** Parses and validates one message against the specs of its direction; throws WireError. */
function decode<T>(raw: string | Buffer, specs: Readonly<Record<string, Spec<unknown>>>): T {
  const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (size > MAX_MESSAGE_BYTES) throw new WireError(CLOSE.TOO_BIG, `message of ${size} bytes is over the ${MAX_MESSAGE_BYTES}-byte limit`);
  let msg: unknown;
  try {
    msg = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
  } catch {
    throw new WireError(CLOSE.MALFORMED, 'malformed JSON');
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new WireError(CLOSE.MALFORMED, 'a message must be a JSON object');
  const { v, type } = msg as { v?: unknown; type?: unknown };
  if (v !== PROTOCOL_VERSION) throw new WireError(CLOSE.VERSION, `unsupported protocol version ${shown(v)} (this side speaks ${PROTOCOL_VERSION})`);
  // Own keys only: "__proto__" or "constructor" must be an unknown type, not Object.prototype's.
  if (typeof type !== 'string' || !Object.hasOwn(specs, type)) throw new WireError(CLOSE.MALFORMED, `unknown message type ${shown(type)}`);
  const problems: Problem[] = [];
  try {
    specs[type]!.check(msg, '', problems);
  } catch {
    throw new WireError(CLOSE.MALFORMED, `invalid ${type}: not a valid message`);
  }
  if (problems.length > 0) {
    throw new WireError(CLOSE.MALFORMED, `invalid ${type}: ${summarizeProblems(problems)}`.slice(0, 120));
  }
  if (type === 'hello' && (msg as { protocol: number }).protocol !== PROTOCOL_VERSION) {
    throw new WireError(CLOSE.VERSION, `unsupported protocol version ${(msg as { protocol: number }).protocol}`);
  }
  return msg as T;
}

export const decodeAgentMessage = (raw: string | Buffer) => decode<AgentMessage>(raw, agentSpecs);
export const decodeTailerMessage = (raw: string | Buffer) => decode<TailerMessage>(raw, tailerSpecs);
export const decodeAggregatorMessage = <T = AggregatorToAgent | AggregatorToTailer>(raw: string | Buffer) => decode<T>(raw, aggregatorSpecs);

export function encode(msg: AgentMessage | AggregatorToAgent | AggregatorToTailer | TailerMessage): string {
  return JSON.stringify(msg);
}

/** Whether a finding passes a tail filter. */
export function matchesFilter(f: Finding, filter: TailFilter): boolean {
  if (filter.node && f.node !== filter.node) return false;
  if (filter.check && f.check !== filter.check && !f.check.startsWith(`${filter.check}.`)) return false;
  if (filter.severity) {
    if (severityRank(f.severity) < severityRank(filter.severity)) return false;
  }
  if (filter.state && f.state !== filter.state) return false;
  return true;
}
