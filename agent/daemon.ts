// The agent as a running service: the runner, its HTTP endpoints, the stream to the aggregator and
// the prune command handler. Used by `nodewarden agent` and `nodewarden up`.
import type http from 'node:http';
import { COLLECTORS } from '../collectors/index.js';
import type { Log } from '../collectors/types.js';
import { VERSION } from '../protocol/version.js';
import type { AgentMessage, AggregatorToAgent } from '../protocol/wire.js';
import type { Config } from './config.js';
import { createEnvironment } from './environment.js';
import { createAgentServer } from './exporters/http.js';
import { configuredSandboxes, prune } from './actions/prune.js';
import { Runner } from './runner.js';
import { Runtimes } from './runtime/model.js';
import { DockerEvents, followDockerEvents } from './runtime/events.js';
import { ContainerdEvents, containerdStatus } from './runtime/containerd-events.js';
import { StreamClient } from './exporters/aggregator-link.js';
import { NodeExporter } from './exporters/kubernetes.js';
import { KubeClient } from './kube/client.js';
import { PodWatcher } from './kube/pods.js';
import { createPodAccess, diagnoseSettings } from './actions/diagnose.js';
import { errorMessage } from '../protocol/errors.js';


export interface AgentDaemon {
  runner: Runner;
  exporter?: NodeExporter;
  stream?: StreamClient;
  /** This node's pods from the API server (with kubernetes.enabled). */
  pods?: PodWatcher;
  server?: http.Server;
  /** Where /healthz and /metrics answer, once listening. */
  address?: { host: string; port: number };
  stop(): Promise<void>;
}

function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}

export async function startAgent(config: Config, opts: { log: Log & { child(b: object): Log }; aggregator?: { url: string; token: string | (() => string) } }): Promise<AgentDaemon> {
  const env = createEnvironment(config);
  const k = config.kubernetes;
  const kube = k.enabled ? KubeClient.inCluster({ server: k.server, tokenFile: k.tokenFile, caFile: k.caFile, timeoutMs: k.timeout }) : undefined;
  // The pod watcher feeds the pods collector; without an API server that collector reports no data.
  const podWatcher = kube ? new PodWatcher({ client: kube, node: config.node, log: opts.log.child({ component: 'pods' }) }) : undefined;
  if (podWatcher) env.pods = createPodAccess(() => podWatcher.state(), env, diagnoseSettings(config), { driftChecked: Boolean(config.collectors['drift']?.enabled) });
  const runner = new Runner({ collectors: COLLECTORS, config, env, log: opts.log });
  const log = opts.log;
  let pruning = false;

  const onCommand = (cmd: Extract<AggregatorToAgent, { type: 'command' }>, reply: (msg: AgentMessage) => void) => {
    const refuse = (refused: string) => {
      log.warn({ commandId: cmd.id, requestedBy: cmd.requestedBy, refused }, 'prune refused');
      reply({ v: 1, type: 'result', commandId: cmd.id, result: { ok: false, dryRun: cmd.dryRun, runtime: 'none', removed: 0, bytes: 0, errors: [refused], refused } });
    };
    if (!config.prune.enabled) return refuse(`prune is disabled on ${config.node} (set prune.enabled: true in the agent's config)`);
    if (pruning) return refuse(`a prune is already running on ${config.node}`);
    pruning = true;
    log.info({ commandId: cmd.id, requestedBy: cmd.requestedBy, untilMs: cmd.untilMs, dryRun: cmd.dryRun }, 'prune started');
    void configuredSandboxes(env.host)
      .then((configured) => {
        log.info({ commandId: cmd.id, configuredSandboxes: configured }, 'sandbox images this node is configured with');
        const opts = { untilMs: cmd.untilMs, dryRun: cmd.dryRun, sandboxImages: config.prune.sandboxImages, configuredSandboxes: configured, containerdNamespaces: config.prune.containerdNamespaces, label: config.prune.label };
        return prune(env.runtime as Runtimes, opts, (progress) => {
          log.info({ commandId: cmd.id, ...progress }, 'prune progress');
          reply({ v: 1, type: 'progress', commandId: cmd.id, progress });
        });
      })
      .catch((err: unknown) => ({ ok: false, dryRun: cmd.dryRun, runtime: 'unknown', removed: 0, bytes: 0, errors: [errorMessage(err)] }))
      .then((result) => {
        pruning = false;
        log.info({ commandId: cmd.id, requestedBy: cmd.requestedBy, ...result }, 'prune finished');
        reply({ v: 1, type: 'result', commandId: cmd.id, result });
      });
  };

  // Runtime events make the runtime collectors look again at once (a container stuck in removal named
  // in seconds, not at the next interval); polling stays the safety net.
  const runtimes = env.runtime as Runtimes;
  const dockerEvents = new DockerEvents(env.host.hostPath(config.runtime.dockerSocket), config.runtime.timeout);
  const unfollow = followDockerEvents(dockerEvents, {
    invalidate: () => runtimes.invalidate(),
    containerStatus: async (id) => {
      try {
        const ins = await runtimes.docker.inspect(id);
        return { status: ins.State.Status, dead: ins.State.Dead || ins.State.Status === 'dead', removing: ins.State.Status === 'removing' };
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) return undefined;
        throw err;
      }
    },
    trigger: (names) => runner.trigger(names),
    log: opts.log.child({ component: 'runtime-events' }),
  });
  const containerdEvents = new ContainerdEvents(env.host.hostPath(config.runtime.containerdSocket), config.runtime.containerdNamespaces, config.runtime.timeout);
  const unfollowContainerd = followDockerEvents(containerdEvents, {
    invalidate: () => runtimes.invalidate(),
    containerStatus: (id, ev) => containerdStatus(runtimes.containerd, id, ev),
    trigger: (names) => runner.trigger(names),
    log: opts.log.child({ component: 'containerd-events' }),
  });

  const stream = opts.aggregator
    ? new StreamClient({ url: opts.aggregator.url, token: opts.aggregator.token, runner, node: config.node, version: VERSION, log: opts.log.child({ component: 'stream' }), heartbeatMs: config.agent.heartbeat, onCommand })
    : undefined;
  const daemon: AgentDaemon = {
    runner,
    async stop() {
      runner.stop();
      unfollow();
      dockerEvents.stop();
      unfollowContainerd();
      containerdEvents.stop();
      stream?.stop();
      daemon.exporter?.stop();
      await podWatcher?.stop();
      if (daemon.server) await new Promise<void>((resolve) => daemon.server!.close(() => resolve()));
      (env.runtime as Runtimes).close();
    },
  };
  if (stream) daemon.stream = stream;
  if (podWatcher) daemon.pods = podWatcher;
  if (config.agent.listen !== '') {
    const { host, port } = splitHostPort(config.agent.listen);
    const server = createAgentServer({ runner, node: config.node, restartAfterUnreachableMs: config.agent.restartAfterUnreachable, ...(stream ? { stream } : {}) });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    daemon.server = server;
    daemon.address = { host, port: typeof addr === 'object' && addr ? addr.port : port };
  }
  if (kube) {
    podWatcher?.start();
    daemon.exporter = new NodeExporter({ client: kube, node: config.node, runner, log: opts.log.child({ component: 'kubernetes' }), events: k.events, eventNamespace: k.eventNamespace, eventIntervalMs: k.eventInterval, eventsPerMinute: k.eventsPerMinute });
    // Reconcile before the first findings: conditions left True by an earlier agent go False unless they still hold.
    await daemon.exporter.start();
  }
  runner.start();
  dockerEvents.start();
  containerdEvents.start();
  stream?.start();
  return daemon;
}
