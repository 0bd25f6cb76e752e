// The agent protocol: hello (who may speak for which node), then snapshot, delta, refresh and status
// into the fleet, and the answers to commands handed to the command broker. One connection per node:
// a newer agent replaces an older one. In Kubernetes mode a node must exist in the cluster.
import type { Logger } from 'pino';
import type { Finding } from '../protocol/finding.js';
import { CLOSE, decodeAgentMessage, type AggregatorToAgent } from '../protocol/wire.js';
import type { CommandBroker } from './commands.js';
import type { Conn, Connections } from './connections.js';
import type { Fleet } from './fleet.js';
import type { KubeAgentAuth } from './kube-auth.js';
import { NodesPerToken, type AggregatorLimits } from './limits.js';

export interface AgentsOptions {
  fleet: Fleet;
  connections: Connections;
  commands: CommandBroker;
  limits: Pick<AggregatorLimits, 'handshakeTimeoutMs' | 'maxNodesPerToken'>;
  /** `--agent-auth kubernetes`: nodes are checked against the cluster. */
  kubeAuth?: KubeAgentAuth;
  /** The aggregator's version, told in the welcome. */
  version: string;
  /** Forgets a node in the fleet and the journal; false when it was not known. */
  forget: (node: string, why: string) => boolean;
  /** A shared token spoke for a node for the first time (the journal keeps it). */
  onClaim?: (token: string, node: string) => void;
  log: Logger;
}

export class Agents {
  private readonly byNode = new Map<string, Conn>();
  /** Nodes each shared agent token has spoken for. */
  private readonly tokenNodes: NodesPerToken;

  constructor(private readonly opts: AgentsOptions) {
    this.tokenNodes = new NodesPerToken(opts.limits.maxNodesPerToken);
    opts.fleet.on('forget', (node: string) => this.tokenNodes.release(node));
  }

  /** The nodes each shared token has spoken for, for the journal. */
  *claims(): Iterable<{ token: string; node: string }> {
    yield* this.tokenNodes.entries();
  }

  /** A claim read back from the journal at start. */
  restoreClaim(token: string, node: string): void {
    this.tokenNodes.claim(token, node, { force: true });
  }

  /** Nodes with an agent connected. */
  get size(): number {
    return this.byNode.size;
  }

  connected(node: string): boolean {
    return this.byNode.has(node);
  }

  /** Sends to the agent connected for `node`, if there is one and its socket is open. */
  send(node: string, msg: AggregatorToAgent): void {
    const conn = this.byNode.get(node);
    if (conn) this.opts.connections.send(conn.ws, msg);
  }

  /** An agent that has just upgraded: it must say hello within the handshake deadline. */
  add(conn: Conn): void {
    const { connections, fleet, commands, limits, log } = this.opts;
    const helloTimer = setTimeout(() => connections.close(conn, CLOSE.MALFORMED, `expected hello within ${limits.handshakeTimeoutMs} ms`), limits.handshakeTimeoutMs);
    conn.ws.on('message', (raw: Buffer) =>
      connections.guard(conn, 'agent', () => {
        const msg = connections.receive(conn, raw, decodeAgentMessage);
        if (!msg) return;
        if (msg.type === 'hello') {
          clearTimeout(helloTimer);
          return this.hello(conn, msg.node, msg.agentVersion, msg.collectors);
        }
        const node = conn.node;
        if (!node) return connections.close(conn, CLOSE.MALFORMED, `expected hello first, got ${msg.type}`);
        fleet.touch(node);
        switch (msg.type) {
          case 'snapshot':
          case 'delta':
          case 'refresh': {
            const findings = msg.type === 'delta' ? msg.transitions.map((t) => t.finding) : msg.findings;
            const stranger = findings.find((f) => f.node !== node);
            if (stranger) return connections.close(conn, CLOSE.MALFORMED, `finding for node ${stranger.node} on ${node}'s connection`);
            // pod.stuck and pod.crashLoop speak for a pod: only the node the pod is bound to may say so.
            const foreign = (f: Finding) => POD_CHECKS.has(f.check) && f.state === 'firing' && podNodeOf(f) !== node;
            const refusedPods = findings.filter(foreign);
            if (refusedPods.length > 0) {
              for (const f of refusedPods) connections.refuse(`${f.check} from another node`);
              log.warn({ node, code: 'NW_ERR_PROTOCOL', pods: refusedPods.slice(0, 10).map((f) => ({ check: f.check, pod: f.subject, boundTo: podNodeOf(f) ?? null })) }, 'pod finding refused: the pod is not bound to the node that reported it');
            }
            if (msg.type === 'snapshot') fleet.applySnapshot(node, refusedPods.length ? msg.findings.filter((f) => !foreign(f)) : msg.findings);
            else if (msg.type === 'delta') fleet.applyDelta(node, refusedPods.length ? msg.transitions.filter((t) => !foreign(t.finding)) : msg.transitions);
            else {
              const { refused } = fleet.applyRefresh(node, refusedPods.length ? msg.findings.filter((f) => !foreign(f)) : msg.findings);
              if (refused.length > 0) {
                for (let i = 0; i < refused.length; i++) connections.refuse('refresh rewrite');
                log.warn({ node, code: 'NW_ERR_PROTOCOL', refused: refused.slice(0, 10) }, 'refresh refused: it would change more than the numbers of a finding (send a delta)');
              }
            }
            return;
          }
          case 'status':
            fleet.setStatus(node, msg.collectors);
            return;
          case 'progress':
          case 'result':
            commands.answer(node, msg);
            return;
        }
      }),
    );
    conn.ws.on('close', () => {
      clearTimeout(helloTimer);
      if (conn.node && this.byNode.get(conn.node) === conn) {
        this.byNode.delete(conn.node);
        fleet.disconnect(conn.node);
        log.warn({ node: conn.node }, 'agent disconnected');
        commands.agentGone(conn.node);
      }
    });
  }

  /** Kubernetes mode: nodes without an agent that no longer exist in the cluster are forgotten. */
  async sweepDeletedNodes(): Promise<void> {
    const kube = this.opts.kubeAuth;
    if (!kube) return;
    for (const info of this.opts.fleet.nodeInfos()) {
      if (info.connected) continue;
      const exists = await kube.nodeExists(info.node);
      if (exists === false && !this.byNode.has(info.node)) this.opts.forget(info.node, 'deleted from the cluster');
    }
  }

  /**
   * A node-bound credential speaks only for its node; a shared token for at most maxNodesPerToken
   * nodes, and never in place of a node-bound agent that is connected.
   */
  private hello(conn: Conn, node: string, agentVersion: string, collectors: string[]): void {
    const { connections, fleet, log } = this.opts;
    if (conn.node) return connections.close(conn, CLOSE.MALFORMED, 'hello sent twice');
    const bound = conn.who.node;
    if (bound !== undefined && bound !== node) return connections.close(conn, CLOSE.FORBIDDEN, `this credential speaks for node ${bound}, not ${node}`);
    const previous = this.byNode.get(node);
    if (bound === undefined) {
      if (previous?.who.node === node) return connections.close(conn, CLOSE.FORBIDDEN, `node ${node} has a node-bound agent connected; a shared token cannot replace it`);
      const before = this.tokenNodes.has(conn.who.name, node);
      const used = this.tokenNodes.claim(conn.who.name, node);
      if (used !== undefined) return connections.close(conn, CLOSE.FORBIDDEN, `token ${conn.who.name} already speaks for ${used} nodes, its limit`);
      if (!before) this.opts.onClaim?.(conn.who.name, node);
    }
    if (previous && previous !== conn) connections.close(previous, CLOSE.REPLACED, `another agent connected for node ${node}`);
    conn.node = node;
    this.byNode.set(node, conn);
    fleet.connect(node, { agentVersion, collectors });
    connections.send(conn.ws, { v: 1, type: 'welcome', aggregatorVersion: this.opts.version });
    log.info({ node, agentVersion, who: conn.who.name, bound: bound !== undefined }, 'agent connected');
    // In Kubernetes mode a shared token may speak only for nodes that exist: checked after the welcome
    // (the agent's first messages are not held up), and a made-up node is refused and forgotten.
    const kube = this.opts.kubeAuth;
    if (kube && bound === undefined) {
      void kube.nodeExists(node).then((exists) => {
        if (exists !== false || this.byNode.get(node) !== conn) return;
        connections.close(conn, CLOSE.FORBIDDEN, `node ${node} does not exist in the cluster`);
        this.opts.forget(node, `a shared token (${conn.who.name}) said hello for it, but no such node exists`);
      });
    }
  }
}

/** Checks that speak for a pod, accepted only from the node the pod is bound to. */
const POD_CHECKS: ReadonlySet<string> = new Set(['pod.stuck', 'pod.crashLoop']);

/** The node a pod.stuck or pod.crashLoop finding says its pod is bound to (evidence.pod.nodeName, from the pod's spec). */
export function podNodeOf(f: Finding): string | undefined {
  const pod = f.evidence['pod'];
  const name = pod && typeof pod === 'object' && !Array.isArray(pod) ? (pod as Record<string, unknown>)['nodeName'] : undefined;
  return typeof name === 'string' ? name : undefined;
}
