// `nodewarden why POD [-n NS]`: why is this pod stuck? From the aggregator (the pod.stuck finding its
// node's agent keeps), or with --local by running the diagnosis on this node now. Exit codes like check:
// 0 not stuck, 2 stuck, 3 unknown.
import { escapeForTerminal as esc, jsonForTerminal } from '../protocol/terminal.js';
import type { Finding, Observation } from '../protocol/finding.js';
import { NodewardenError } from '../protocol/errors.js';
import { HttpRequestError, httpRequest } from '../protocol/http-request.js';

/** The largest answer `why` takes from the aggregator (all pod.stuck findings, or every node's status). */
const MAX_ANSWER = 64 * 1024 * 1024;
import { painter, useColor, type Painter } from './format.js';

export interface WhyOptions {
  pod: string;
  namespace: string;
  local: boolean;
  json: boolean;
  aggregator?: string;
  tokenFile?: string;
  node?: string;
  hostRoot?: string;
  config?: string;
  sets: string[];
}

export const EXIT = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;

type Walk = { cause: string; checked: boolean; found: boolean; summary: string; remedy: string | null }[];

/** Human output: the finding, then the walk, one line per cause. */
export function renderWhy(subject: string, finding: Observation | undefined, notStuck: string | undefined, p: Painter): string {
  // Everything here came from an agent (or a pod's status through it): shown, never obeyed.
  if (!finding) return `${p.bold(esc(subject))}: not stuck. ${esc(notStuck ?? '')}\n`;
  const lines = [`${p.bold(esc(subject))}  ${p.severity(finding.severity, 'STUCK')}${'node' in finding ? `  reported by node ${esc((finding as Finding).node)}` : ''}`, esc(finding.message), p.dim(`next: ${esc(finding.remedy)}`), ''];
  const walk = (finding.evidence['walk'] ?? []) as Walk;
  if (walk.length > 0) {
    lines.push(p.bold('What nodewarden checked, in the runbooks\' order:'));
    walk.forEach((st, i) => {
      const verdict = st.found ? p.severity('critical', 'FOUND     ') : st.checked ? 'ruled out ' : p.dim('not known ');
      lines.push(`  ${i + 1}. ${esc(String(st.cause)).padEnd(11)} ${verdict} ${esc(String(st.summary))}`);
    });
  }
  return `${lines.join('\n')}\n`;
}

/** A connected node's agent as the aggregator lists it (GET /api/nodes): which of them watch pods. */
type NodeRow = { node: string; connected: boolean; collectorStatus?: { name: string; status: string; detail?: string }[] };

/**
 * The nodes asked about (all, or --node) whose agent cannot see pods: disconnected, or its `pods`
 * collector not ok (no API server configured, RBAC refused, the API server unreachable). Their silence
 * is not "not stuck".
 */
export function blindNodes(nodes: NodeRow[], only: string | undefined): { watching: number; blind: string[] } {
  const asked = nodes.filter((n) => !only || n.node === only);
  let watching = 0;
  const blind: string[] = [];
  for (const n of asked) {
    const pods = n.collectorStatus?.find((c) => c.name === 'pods');
    if (n.connected && pods?.status === 'ok') watching++;
    else blind.push(`${n.node} (${!n.connected ? 'not connected' : !pods ? 'no pods collector' : `pods ${pods.status}${pods.detail ? `: ${pods.detail.slice(0, 120)}` : ''}`})`);
  }
  if (only && asked.length === 0) blind.push(`${only} (not known to the aggregator)`);
  return { watching, blind };
}

async function fromAggregator(opts: WhyOptions, subject: string): Promise<{ finding?: Finding; note?: string; unknown?: string; storage?: Finding }> {
  const { aggregatorUrl, token, toHttp } = await import('./remote.js');
  const base = toHttp(aggregatorUrl(opts.aggregator));
  const authorization = `Bearer ${token(opts.tokenFile)}`; // no token is a usage error, not "cannot reach"
  const get = async <T>(path: string): Promise<T> => {
    const url = `${base}${path}`;
    let body: Buffer;
    try {
      // The aggregator's answer is bounded like any peer's: a broken or hostile one cannot fill memory.
      const r = await httpRequest({ what: `GET ${path}`, url, headers: { authorization, accept: 'application/json' }, timeoutMs: 15_000, maxBody: MAX_ANSWER, code: 'NW_ERR_PROTOCOL', statusError: (status, text) => new NodewardenError('NW_ERR_USAGE', `the aggregator answered ${status}: ${text.slice(0, 200)}`) });
      body = r.body;
    } catch (err) {
      if (err instanceof HttpRequestError && (err.failure === 'connect' || err.failure === 'timeout')) throw new NodewardenError('NW_ERR_TIMEOUT', `cannot reach the aggregator at ${url}: ${err.detail}`);
      if (err instanceof HttpRequestError && err.failure !== 'status') throw new NodewardenError('NW_ERR_PROTOCOL', `the aggregator's answer to ${path}: ${err.detail}`);
      throw err;
    }
    try {
      return JSON.parse(body.toString('utf8')) as T;
    } catch {
      throw new NodewardenError('NW_ERR_PROTOCOL', `the aggregator's answer to ${path} is not JSON`);
    }
  };
  const findings = await get<Finding[]>(`/api/findings?check=pod.stuck${opts.node ? `&node=${encodeURIComponent(opts.node)}` : ''}`);
  const finding = Array.isArray(findings) ? findings.find((f) => f?.check === 'pod.stuck' && f.subject === subject && f.state === 'firing') : undefined;
  if (finding) return { finding };
  // Not stuck: close to (or past) the local-storage limits kubelet evicts it at, or was before it went
  // (an evicted pod's last pod.ephemeral names the consumer that grew).
  const onNode = opts.node ? `&node=${encodeURIComponent(opts.node)}` : '';
  const firing = await get<Finding[]>(`/api/findings?check=pod.ephemeral${onNode}`);
  const near = Array.isArray(firing) ? firing.find((f) => f?.check === 'pod.ephemeral' && f.subject === subject && f.state === 'firing') : undefined;
  if (near) return { storage: near, note: `But close to eviction for its local storage (on ${near.node} since ${near.firstSeen}): ${near.message} Next: ${near.remedy}` };
  const resolved = await get<Finding[]>(`/api/findings?check=pod.ephemeral&state=resolved${onNode}`);
  const last = Array.isArray(resolved) ? resolved.filter((f) => f?.check === 'pod.ephemeral' && f.subject === subject).at(-1) : undefined;
  const before = last ? ` Its local storage was last reported near its limits on ${last.node} at ${last.lastSeen}: ${last.message} If kubelet evicted it for ephemeral storage, that is what grew.` : '';
  // No finding means "not stuck" only where an agent watches pods: ask which nodes do.
  const nodes = await get<NodeRow[]>('/api/nodes');
  const { watching, blind } = blindNodes(Array.isArray(nodes) ? nodes : [], opts.node);
  const note = `No agent reports it stuck (no pod.stuck finding at the aggregator).${before}`;
  if (watching === 0 && !last) return { unknown: `No agent ${opts.node ? `on ${opts.node} ` : ''}watches pods, so nothing says whether it is stuck: ${blind.slice(0, 5).join('; ') || 'no node is connected'}${blind.length > 5 ? `; and ${blind.length - 5} more` : ''}. Set kubernetes.enabled on the agents, or run \`nodewarden why --local\` on the pod's node.` };
  if (blind.length === 0 || last) return { note, ...(last ? { storage: last } : {}) };
  return { note: `${note} Not known on ${blind.length} node(s) whose agent does not watch pods: ${blind.slice(0, 5).join('; ')}${blind.length > 5 ? '; ...' : ''}; if the pod runs there, ask with --node or --local there.` };
}

async function locally(opts: WhyOptions, subject: string): Promise<{ finding?: Observation; note?: string }> {
  const { loadConfig } = await import('../agent/config.js');
  const { checkHostRoot } = await import('../agent/host/access.js');
  const { createEnvironment } = await import('../agent/environment.js');
  const { KubeClient, KubeError } = await import('../agent/kube/client.js');
  const { toPodInfo } = await import('../agent/kube/pods.js');
  const { diagnosePod, diagnoseSettings } = await import('../agent/actions/diagnose.js');
  const { describeEviction, podStuckObservation, stuckState } = await import('../collectors/pods.js');
  const hostRoot = opts.hostRoot === undefined ? undefined : checkHostRoot(opts.hostRoot);
  const config = loadConfig({ file: opts.config, sets: opts.sets, hostRoot, node: opts.node });
  const k = config.kubernetes;
  const client = KubeClient.inCluster({ server: k.server, tokenFile: k.tokenFile, caFile: k.caFile, timeoutMs: k.timeout });
  let raw: Record<string, unknown>;
  try {
    raw = await client.request('GET', `/api/v1/namespaces/${encodeURIComponent(opts.namespace)}/pods/${encodeURIComponent(opts.pod)}`);
  } catch (err) {
    if (err instanceof KubeError && err.status === 404) throw new NodewardenError('NW_ERR_USAGE', `pod ${subject} not found`);
    throw err;
  }
  const nodeName = (raw['spec'] as { nodeName?: string } | undefined)?.nodeName;
  if (nodeName && nodeName !== config.node) throw new NodewardenError('NW_ERR_USAGE', `pod ${subject} is on node ${nodeName}, not ${config.node}: run this on ${nodeName}, or without --local`);
  const pod = toPodInfo(raw);
  if (!pod) throw new NodewardenError('NW_ERR_PARSE', `the API server's answer for pod ${subject} is not a pod`);
  const settings = config.collectors['pods'] as unknown as Parameters<typeof stuckState>[2];
  const stuck = stuckState(pod, Date.now(), settings);
  if (!stuck) {
    const note = pod.deletionTimestamp
      ? `It is being deleted and is within its grace period and margin (due at ${pod.deletionTimestamp}, margin ${Math.round((settings.terminatingMargin as number) / 1000)}s).`
      : `Phase ${pod.phase ?? 'unknown'}; no container has waited longer than ${Math.round((settings.waitingFor as number) / 1000)}s to be created or started.`;
    // Not stuck, but gone for its local storage: kubelet's message says which bound, so which consumer grew.
    const evicted = describeEviction(pod, config.collectors['pods'] as unknown as Parameters<typeof describeEviction>[1]);
    return { note: evicted ? `${evicted} ${note}` : note };
  }
  const env = createEnvironment(config);
  try {
    // Drift: one run of the drift collector here (the agent uses its confirmed findings).
    let active: Finding[] = [];
    const driftOn = Boolean(config.collectors['drift']?.enabled);
    if (driftOn) {
      const { Runner } = await import('../agent/runner.js');
      const { COLLECTORS } = await import('../collectors/index.js');
      const { createLogger } = await import('../agent/log.js');
      const runner = new Runner({ collectors: COLLECTORS, config, env, log: createLogger({ node: config.node, level: 'silent' }) });
      await runner.runOnce(['drift']);
      active = runner.active();
    }
    const diagnosis = await diagnosePod(pod, active, env, diagnoseSettings(config), { driftChecked: driftOn });
    return { finding: podStuckObservation(pod, stuck, diagnosis) };
  } finally {
    (env.runtime as { close?(): void }).close?.();
  }
}

export async function runWhy(opts: WhyOptions, out: NodeJS.WriteStream): Promise<{ code: number; text: string }> {
  const subject = `${opts.namespace}/${opts.pod}`;
  const r: { finding?: Observation; note?: string; unknown?: string; storage?: Finding } = opts.local ? await locally(opts, subject) : await fromAggregator(opts, subject);
  const code = r.finding ? EXIT.CRITICAL : r.unknown ? EXIT.UNKNOWN : r.storage?.state === 'firing' ? EXIT.WARNING : EXIT.OK;
  const p = painter(!opts.json && useColor(out));
  const source = opts.local ? 'local' : 'aggregator';
  if (r.unknown) {
    const text = opts.json ? `${jsonForTerminal({ pod: subject, stuck: null, source, note: r.unknown }, 2)}\n` : `${p.bold(esc(subject))}: unknown. ${esc(r.unknown)}\n`;
    return { code, text };
  }
  const text = opts.json
    ? `${jsonForTerminal({ pod: subject, stuck: Boolean(r.finding), source, ...(r.finding ? { finding: r.finding } : { note: r.note ?? null }), ...(r.storage ? { storage: r.storage } : {}) }, 2)}\n`
    : renderWhy(subject, r.finding, r.note, p);
  return { code, text };
}
