// The agent as a running service, wiring only: the runner, the runtime events that trigger it, and
// the exporters its findings go to (the HTTP endpoints, the link to the aggregator with its prune
// command handler, the Kubernetes exporter), fanned out in one loop. Used by `nodewarden agent` and
// `nodewarden up`.
import type http from 'node:http';
import { COLLECTORS } from '../collectors/index.js';
import type { Log } from '../collectors/types.js';
import { parseHostPort } from '../protocol/address.js';
import { VERSION } from '../protocol/version.js';
import type { Finding } from '../protocol/finding.js';
import type { Config } from './config.js';
import { createEnvironment } from './environment.js';
import { createFillersAccess, DU_DEFAULTS, measureNode } from './actions/du.js';
import { KmsgReader } from './host/kmsg.js';
import { createTreeIndexWorker } from './host/tree-index.js';
import { parseMountinfo } from '../collectors/common/mountinfo.js';
import { AgentServer } from './exporters/http.js';
import { EXPORTER_FAILED, type Exporter } from './exporters/exporter.js';
import { createPruneCommandHandler } from './actions/prune-command.js';
import { Runner, type CollectorStatus } from './runner.js';
import type { Transition } from './tracker.js';
import { Runtimes } from './runtime/model.js';
import { DockerEvents, followDockerEvents } from './runtime/events.js';
import { ContainerdEvents, containerdStatus } from './runtime/containerd-events.js';
import { StreamClient } from './exporters/aggregator-link.js';
import { NodeExporter } from './exporters/kubernetes.js';
import { KubeClient } from './kube/client.js';
import { PodWatcher } from './kube/pods.js';
import { NodeView } from './kube/node.js';
import { createPodAccess, diagnoseSettings } from './actions/diagnose.js';
import { errorMessage } from '../protocol/errors.js';


/** The containerd namespace dockerd keeps its containers in. */
const DOCKER_NAMESPACE = 'moby';

export interface AgentDaemon {
  runner: Runner;
  /** Where findings go, in the order each event reaches them. */
  exporters: readonly Exporter[];
  exporter?: NodeExporter;
  stream?: StreamClient;
  /** This node's pods from the API server (with kubernetes.enabled). */
  pods?: PodWatcher;
  /** This node's own Node and its pods' probe failures from the API server (with kubernetes.enabled). */
  node?: NodeView;
  server?: http.Server;
  /** Where /healthz and /metrics answer, once listening. */
  address?: { host: string; port: number };
  stop(): Promise<void>;
}

export async function startAgent(config: Config, opts: { log: Log & { child(b: object): Log }; aggregator?: { url: string; token: string | (() => string) } }): Promise<AgentDaemon> {
  const env = createEnvironment(config);
  // The agent keeps its place in the kernel log across restarts (check reads the last lookback instead).
  const kernelSettings = config.collectors['kernel'];
  const cursorFile = typeof kernelSettings?.['cursorFile'] === 'string' && kernelSettings['cursorFile'] !== '' ? kernelSettings['cursorFile'] : undefined;
  env.kmsg = new KmsgReader({ host: env.host, ...(cursorFile ? { cursorFile } : {}) });
  const k = config.kubernetes;
  const kube = k.enabled ? KubeClient.inCluster({ server: k.server, tokenFile: k.tokenFile, caFile: k.caFile, timeoutMs: k.timeout }) : undefined;
  // The pod watcher feeds the pods collector; without an API server that collector reports no data.
  const podWatcher = kube ? new PodWatcher({ client: kube, node: config.node, log: opts.log.child({ component: 'pods' }) }) : undefined;
  if (podWatcher) env.pods = createPodAccess(() => podWatcher.state(), env, diagnoseSettings(config), { driftChecked: Boolean(config.collectors['drift']?.enabled) });
  // Its own Node's Ready condition (kubelet's PLEG message) and its pods' probe failures, for kubelet and pressure.
  const nodeView = kube
    ? new NodeView({
        client: kube,
        node: config.node,
        log: opts.log.child({ component: 'node' }),
        pollMs: k.nodeInterval,
        podUids: () => {
          const st = podWatcher?.state();
          return st && 'pods' in st ? new Set(st.pods.map((p) => p.uid)) : undefined;
        },
      })
    : undefined;
  if (nodeView) env.kube = nodeView;
  // The du measurement (disk.imageGc, the top consumers and their growth): in the background, paced by
  // the disk collector (collectors.disk.fillersEvery); between walks, an incremental refresh of the largest.
  const diskSettings = config.collectors['disk'] as unknown as { fillersTimeout: number };
  // On a worker thread: its lstat calls are synchronous, and a hung filesystem must not hang the agent.
  const index = createTreeIndexWorker({
    hostRoot: config.hostRoot,
    timeoutMs: diskSettings.fillersTimeout,
    // The agent's own mount table: the paths it stats are in its view (under --host-root).
    mountPoints: async () => new Set(parseMountinfo((await env.host.readBytes(env.host.procPath('self', 'mountinfo'))) ?? Buffer.alloc(0)).map((m) => m.mountPoint)),
  });
  env.fillers = createFillersAccess(() => measureNode(env, config, { timeoutMs: diskSettings.fillersTimeout, maxEntries: DU_DEFAULTS.maxEntries, threads: 4 }), { log: opts.log.child({ component: 'du' }), refresh: (roots) => index.refresh(roots) });
  const log = opts.log;
  const runner = new Runner({ collectors: COLLECTORS, config, env, log });
  const runtimes = env.runtime as Runtimes;

  // Runtime events make the runtime collectors look again at once (a container stuck in removal named
  // in seconds, not at the next interval); polling stays the safety net.
  const dockerEvents = new DockerEvents(env.host.hostPath(config.runtime.dockerSocket), config.runtime.timeout);
  // While docker's events flow, a stopped container's kept inspect is dropped by its own events: a fresh
  // read need not inspect every exited container again (a firing finding keeps every run fresh).
  runtimes.eventsFollowed = () => dockerEvents.connected;
  const unfollow = followDockerEvents(dockerEvents, {
    invalidate: (id, ev) => {
      runtimes.invalidate(id);
      // While docker's stream is up containerd's moby events are not followed (below): docker's destroy
      // is the deletion that takes the container out of the kept containerd list.
      if (id !== undefined && ev?.action === 'destroy') runtimes.forget(id, DOCKER_NAMESPACE);
    },
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
    invalidate: (id, ev) => {
      runtimes.invalidate(id);
      if (id !== undefined && ev?.topic === '/containers/delete') runtimes.forget(id, ev.namespace);
    },
    // docker's own events re-check its containers (moby is docker's namespace): while they flow, the
    // same container is not asked about twice (on a busy node, two gRPC calls per ending container).
    containerStatus: async (id, ev) => (ev.namespace === DOCKER_NAMESPACE && dockerEvents.connected ? undefined : containerdStatus(runtimes.containerd, id, ev)),
    trigger: (names) => runner.trigger(names),
    log: opts.log.child({ component: 'containerd-events' }),
  });

  // Where findings go, in the order each event reaches them.
  const stream = opts.aggregator
    ? new StreamClient({ url: opts.aggregator.url, token: opts.aggregator.token, runner, node: config.node, version: VERSION, log: opts.log.child({ component: 'stream' }), heartbeatMs: config.agent.heartbeat, onCommand: createPruneCommandHandler({ node: config.node, settings: config.prune, host: env.host, runtime: runtimes, log }) })
    : undefined;
  const server = config.agent.listen !== ''
    ? new AgentServer({ runner, node: config.node, kmsg: env.kmsg, restartAfterUnreachableMs: config.agent.restartAfterUnreachable, listen: parseHostPort(config.agent.listen)!, ...(stream ? { stream } : {}) })
    : undefined;
  const nodeExporter = kube
    ? new NodeExporter({ client: kube, node: config.node, runner, log: opts.log.child({ component: 'kubernetes' }), events: k.events, eventNamespace: k.eventNamespace, eventIntervalMs: k.eventInterval, eventsPerMinute: k.eventsPerMinute })
    : undefined;
  const exporters: Exporter[] = [server, nodeExporter, stream].filter((e) => e !== undefined);
  const unwire = fanOut(runner, exporters, log);

  const daemon: AgentDaemon = {
    runner,
    exporters,
    async stop() {
      runner.stop();
      unwire();
      unfollow();
      dockerEvents.stop();
      unfollowContainerd();
      containerdEvents.stop();
      await stopAll(exporters, log);
      await podWatcher?.stop();
      await nodeView?.stop();
      runtimes.close();
      env.kmsg?.stop();
    },
  };
  if (stream) daemon.stream = stream;
  if (nodeExporter) daemon.exporter = nodeExporter;
  if (podWatcher) daemon.pods = podWatcher;
  if (nodeView) daemon.node = nodeView;
  if (server) daemon.server = server.server;

  // In list order: listen first (a taken port stops the agent here); the Kubernetes exporter reconciles
  // before the first findings (conditions left True by an earlier agent go False unless they still
  // hold); then the link connects.
  const started: Exporter[] = [];
  try {
    for (const e of exporters) {
      await e.start?.();
      started.push(e);
    }
  } catch (err) {
    unwire();
    await stopAll(started, log);
    throw err;
  }
  if (server?.address) daemon.address = server.address;
  podWatcher?.start();
  nodeView?.start();
  runner.start();
  // containerd's events in docker's namespace repeat docker's own while docker's stream is up (a third
  // of all events on a busy node): followed only while it is not.
  dockerEvents.on('connected', () => containerdEvents.skip([DOCKER_NAMESPACE]));
  dockerEvents.on('disconnected', () => containerdEvents.skip([]));
  dockerEvents.start();
  containerdEvents.start();
  return daemon;
}

/**
 * The fan-out of findings, in one loop: each event the runner emits goes to every exporter, in list
 * order. A hook that throws (or rejects) is logged with NW_ERR_EXPORTER and the others still get the
 * event. Returns what undoes the wiring.
 */
export function fanOut(runner: Runner, exporters: readonly Exporter[], log: Log): () => void {
  const each = (hook: string, call: (e: Exporter) => void | Promise<void>) => {
    for (const e of exporters) {
      try {
        const done = call(e);
        if (done instanceof Promise) done.catch((err: unknown) => exporterFailed(log, e, hook, err));
      } catch (err) {
        exporterFailed(log, e, hook, err);
      }
    }
  };
  const handlers = {
    transition: (t: Transition) => each('onTransition', (e) => e.onTransition?.(t)),
    refresh: (f: Finding) => each('onRefresh', (e) => e.onRefresh?.(f)),
    status: (st: CollectorStatus) => each('onStatus', (e) => e.onStatus?.(st)),
  };
  for (const [event, handler] of Object.entries(handlers)) runner.on(event, handler);
  return () => {
    for (const [event, handler] of Object.entries(handlers)) runner.off(event, handler);
  };
}

/** Stops each exporter in turn; one that fails to stop does not keep the others running. */
async function stopAll(exporters: readonly Exporter[], log: Log): Promise<void> {
  for (const e of exporters) {
    try {
      await e.stop();
    } catch (err) {
      exporterFailed(log, e, 'stop', err);
    }
  }
}

function exporterFailed(log: Log, e: Exporter, hook: string, err: unknown): void {
  log.error({ code: EXPORTER_FAILED, exporter: e.name, hook, err: errorMessage(err) }, `the ${e.name} exporter failed in ${hook}; the other exporters still get every finding`);
}
