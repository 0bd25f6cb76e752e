// Pod diagnosis: why is this pod stuck? Walks the causes in the runbooks' order for one pod's containers,
// sandbox and volumes, on demand: finalizers; immutable or append-only files in its writable layers and
// pod dir; its mounts held in other mount namespaces; confirmed drift; the runtime not answering or its
// (or kubelet's) filesystem full or read-only; volumes kubelet has not unmounted. Each step is a pure
// evaluate function over what was read, so the walk is tested over fixtures; diagnosePod does the reads.
import path from 'node:path';
import type { Finding } from '../../protocol/finding.js';
import { attrLetters } from '../../collectors/immutable.js';
import { mountFor, parseMountinfo, type MountInfo } from '../../collectors/common/mountinfo.js';
import { readMountNamespaces, type MountNamespace } from '../../collectors/common/namespaces.js';
import { shellQuote } from '../../collectors/common/text.js';
import {
  ATTR_APPEND,
  ATTR_IMMUTABLE,
  type AttrAccess,
  type DiagnosisStep,
  type HostAccess,
  type PodAccess,
  type PodDiagnosis,
  type PodInfo,
  type PodListState,
  type RuntimeAccess,
  type RuntimeContainer,
  type RuntimeState,
  type StatfsOutcome,
} from '../../collectors/types.js';
import { containerNeedles, holdingNamespaces, type HoldingNamespace } from './who-holds.js';
import { errorMessage } from '../../protocol/errors.js';

export interface DiagnoseSettings {
  kubeletRootDir: string;
  runtimeRootDirs: readonly string[];
  /** How long one statfs may take. */
  statfsTimeoutMs: number;
}

/** The diagnosis settings from the agent's config: the pods collector's dirs, the disk collector's statfs timeout. */
export function diagnoseSettings(config: { collectors: Record<string, Record<string, unknown> | undefined> }): DiagnoseSettings {
  const pods = config.collectors['pods'] ?? {};
  const disk = config.collectors['disk'] ?? {};
  return {
    kubeletRootDir: typeof pods['kubeletRootDir'] === 'string' ? pods['kubeletRootDir'] : '/var/lib/kubelet',
    runtimeRootDirs: Array.isArray(pods['runtimeRootDirs']) ? (pods['runtimeRootDirs'] as string[]) : ['/var/lib/docker', '/var/lib/containerd'],
    statfsTimeoutMs: typeof disk['statfsTimeout'] === 'number' ? disk['statfsTimeout'] : 3000,
  };
}

export interface DiagnoseEnv {
  host: HostAccess;
  runtime: RuntimeAccess;
  attrs: AttrAccess | undefined;
}

const POD_UID = 'io.kubernetes.pod.uid';
const short = (id: string) => id.slice(0, 12);
const under = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

/** Pure: the pod's containers and sandbox in the runtime's model, by the Kubernetes labels (uid first, else namespace and name). */
export function podContainers(pod: PodInfo, containers: readonly RuntimeContainer[]): RuntimeContainer[] {
  return containers.filter((c) =>
    c.labels[POD_UID] !== undefined ? c.labels[POD_UID] === pod.uid : c.workload.pod === pod.name && c.workload.namespace === pod.namespace,
  );
}

const isRunning = (c: RuntimeContainer) => Boolean(c.docker?.running || c.containerd?.task?.status === 'RUNNING');

/** Pure: 1. finalizers still set on a pod being deleted. */
export function evaluateFinalizers(pod: PodInfo): DiagnosisStep {
  const terminating = pod.deletionTimestamp !== undefined;
  if (!terminating || pod.finalizers.length === 0) {
    return { cause: 'finalizers', checked: true, found: false, summary: terminating ? 'no finalizers are set' : 'the pod is not being deleted, so finalizers do not hold it', facts: { finalizers: pod.finalizers } };
  }
  // A finalizer is named after its controller (example.com/cleanup is example.com's); the owner is who made the pod.
  const controllers = [...new Set(pod.finalizers.map((f) => (f.includes('/') ? f.split('/')[0]! : f)))];
  const owner = pod.owners[0];
  const patch = `kubectl -n ${pod.namespace} patch pod ${pod.name} --type=merge -p '{"metadata":{"finalizers":null}}'`;
  return {
    cause: 'finalizers',
    checked: true,
    found: true,
    summary: `finalizer${pod.finalizers.length > 1 ? 's' : ''} ${pod.finalizers.join(', ')} ${pod.finalizers.length > 1 ? 'are' : 'is'} still set, so the API server keeps the pod until ${controllers.join(', ')} remove${controllers.length > 1 ? '' : 's'} ${pod.finalizers.length > 1 ? 'them' : 'it'}${owner ? ` (the pod is owned by ${owner})` : ''}`,
    remedy: `kubectl -n ${pod.namespace} get pod ${pod.name} -o jsonpath='{.metadata.finalizers}'  # check why ${controllers.join(', ')} has not finished; only if it never will: ${patch}`,
    facts: { finalizers: pod.finalizers, controllers, owners: pod.owners },
  };
}

/** The directories the immutable step scans for a pod: each container's layer dir and container dir, and kubelet's pod dir. */
export function immutableScanDirs(pod: PodInfo, containers: readonly RuntimeContainer[], kubeletRootDir: string): string[] {
  const dirs: string[] = [];
  for (const c of containers) {
    // The writable layer's parent holds diff/work (docker overlay2) or fs/work (containerd snapshots).
    if (c.storage.upperDir) dirs.push(path.dirname(c.storage.upperDir));
    if (c.storage.containerDir) dirs.push(c.storage.containerDir);
  }
  dirs.push(`${kubeletRootDir.replace(/\/+$/, '')}/pods/${pod.uid}`);
  return [...new Set(dirs)];
}

/** Pure: 2. files with the immutable or append-only attribute in the pod's storage. */
export function evaluateImmutableFiles(flagged: readonly { path: string; bits: number }[], containers: readonly RuntimeContainer[], scan: { dirs: readonly string[]; entries: number } | undefined): DiagnosisStep {
  if (!scan) return { cause: 'immutable', checked: false, found: false, summary: 'file attributes could not be read (the native statx module is not built)', facts: {} };
  if (flagged.length === 0) return { cause: 'immutable', checked: true, found: false, summary: `no immutable or append-only file among ${scan.entries} entries of its writable layers and pod dir`, facts: { scanned: [...scan.dirs], entries: scan.entries } };
  const files = flagged.map((f) => {
    const owner = containers.find((c) => [c.storage.upperDir && path.dirname(c.storage.upperDir), c.storage.containerDir].some((d) => d && under(f.path, d)));
    return { path: f.path, attributes: attrLetters(f.bits), flags: `${f.bits & ATTR_IMMUTABLE ? 'i' : ''}${f.bits & ATTR_APPEND ? 'a' : ''}`, container: owner ? owner.name : null, containerId: owner?.id ?? null };
  });
  const first = files[0]!;
  const where = first.container ? `container ${first.container}'s ${first.path.includes('/containers/') && !first.path.includes('/diff/') ? 'container directory' : 'writable layer'}` : "the pod's kubelet directory";
  const kind = first.flags.includes('i') ? 'immutable' : 'append-only';
  return {
    cause: 'immutable',
    checked: true,
    found: true,
    summary: `${shellQuote(first.path)} in ${where} is ${kind} (${first.attributes})${files.length > 1 ? `, and ${files.length - 1} more file${files.length > 2 ? 's' : ''}` : ''}, so its removal fails with "operation not permitted"`,
    remedy:
      files
        .slice(0, 5)
        .map((f) => `chattr -${f.flags} ${shellQuote(f.path)}`)
        .join('; ') + `  # kubelet retries the removal by itself${first.containerId ? `; without kubelet: docker rm -f ${short(first.containerId)}` : ''}`,
    facts: { files: files.slice(0, 20), total: files.length, scanned: [...scan.dirs], entries: scan.entries },
  };
}

/** What names the pod's storage in mount lines: its containers' ids and layer dirs, and its kubelet pod dir. */
export function podNeedles(pod: PodInfo, containers: readonly RuntimeContainer[], kubeletRootDir: string): string[] {
  return [...new Set([...containers.flatMap(containerNeedles), `${kubeletRootDir.replace(/\/+$/, '')}/pods/${pod.uid}/`])];
}

/**
 * Pure: 3. the pod's mounts alive in another mount namespace. The host's namespace and the pod's own
 * containers' namespaces do not count: a namespace counts when some holder is not one of the pod's.
 */
export function evaluateHeldMounts(holding: readonly HoldingNamespace[], namespaces: readonly MountNamespace[], needles: readonly string[], pod: PodInfo, ownIds: ReadonlySet<string>): DiagnosisStep {
  const own = (h: HoldingNamespace['holders'][number]) => (h.containerId !== undefined && ownIds.has(h.containerId)) || h.workload?.podUid === pod.uid;
  const foreign = holding.filter((ns) => !ns.host && ns.holders.some((h) => !own(h)));
  if (foreign.length === 0) {
    return { cause: 'mount-held', checked: true, found: false, summary: `no other mount namespace holds its mounts (${namespaces.length} namespaces read)`, facts: { namespaces: namespaces.length } };
  }
  const ns = foreign[0]!;
  const holders = ns.holders.filter((h) => !own(h));
  const first = holders[0]!;
  const mounts = (namespaces.find((n) => n.id === ns.namespace)?.mounts ?? []).filter((m) => needles.some((n) => `${m.mountPoint} ${m.root} ${m.source} ${m.superOptions.join(',')}`.includes(n)));
  const point = mounts[0]?.mountPoint ?? '';
  const who = (h: typeof first) => `${h.pid} (${h.comm}${h.workload?.pod ? `, pod ${h.workload.namespace}/${h.workload.pod}` : h.containerId ? `, container ${short(h.containerId)}` : ''})`;
  return {
    cause: 'mount-held',
    checked: true,
    found: true,
    summary: `its mount ${shellQuote(point)} is still held in mount namespace ${ns.namespace} by process${holders.length > 1 ? 'es' : ''} ${holders.slice(0, 3).map(who).join(', ')}${holders.length > 3 ? ', ...' : ''}, so removing it fails with "device or resource busy"`,
    remedy: `ps -f ${first.pid}; nsenter -t ${first.pid} -m umount ${shellQuote(point)}  # or restart that process; kubelet then retries by itself`,
    facts: {
      namespaces: foreign.map((f) => ({
        namespace: f.namespace,
        processes: f.processes,
        holders: f.holders.filter((h) => !own(h)).slice(0, 20).map((h) => ({ pid: h.pid, comm: h.comm, cmdline: h.cmdline, containerId: h.containerId ?? null, pod: h.workload?.pod ? `${h.workload.namespace}/${h.workload.pod}` : null })),
        mounts: f.mounts.slice(0, 10),
      })),
    },
  };
}

/** Pure: 4. the runner's confirmed runtime.drift findings about the pod's containers. */
export function evaluatePodDrift(active: readonly Finding[], pod: PodInfo, ownIds: ReadonlySet<string>, driftChecked: boolean): DiagnosisStep {
  const drift = active.filter((f) => f.check === 'runtime.drift' && (ownIds.has(f.subject) || f.workload?.podUid === pod.uid));
  const first = drift[0];
  if (!first) {
    return { cause: 'drift', checked: driftChecked, found: false, summary: driftChecked ? 'docker, containerd and the kernel agree on its containers' : 'the drift check is not running on this agent', facts: {} };
  }
  return {
    cause: 'drift',
    checked: true,
    found: true,
    summary: first.message.replace(/\.$/, ''),
    remedy: first.remedy,
    facts: { findings: drift.map((f) => ({ id: f.id, subject: f.subject, severity: f.severity, evidence: f.evidence })) },
  };
}

export interface FsState {
  path: string;
  statfs: StatfsOutcome | undefined;
  /** The host mount holding it is read-only. */
  readonly: boolean;
  mountPoint?: string;
}

/** Pure: 5. the runtime not answering, or the runtime's or kubelet's filesystem full or read-only. */
export function evaluateRuntimeHealth(runtimes: readonly RuntimeState[], filesystems: readonly FsState[]): DiagnosisStep {
  const problems: string[] = [];
  let remedy: string | undefined;
  for (const r of runtimes) {
    if (r.status === 'unresponsive' || r.status === 'error') {
      problems.push(`${r.name} ${r.status === 'unresponsive' ? `does not answer on ${r.socket}` : `answers with errors (${r.error ?? 'unknown'})`}, so kubelet cannot stop or remove the pod's containers`);
      remedy ??= r.name === 'docker' ? 'timeout 10 docker ps >/dev/null || echo hung; journalctl -u docker --since -15min | tail -50  # then drain the node and systemctl restart docker' : 'timeout 10 ctr version || echo hung; journalctl -u containerd --since -15min | tail -50  # then drain the node and systemctl restart containerd';
    }
  }
  for (const fs of filesystems) {
    if (fs.readonly) {
      problems.push(`the filesystem at ${fs.mountPoint ?? fs.path} holding ${fs.path} is read-only`);
      remedy ??= `dmesg | grep -iE 'ext4|xfs|I/O error' | tail  # then drain the node, fix the filesystem and remount ${fs.mountPoint ?? fs.path} rw`;
      continue;
    }
    const st = fs.statfs;
    if (st?.ok) {
      const availPct = st.stats.blocks > 0 ? (st.stats.blocksAvailable / st.stats.blocks) * 100 : 100;
      const inodesPct = st.stats.inodes > 0 ? (st.stats.inodesFree / st.stats.inodes) * 100 : 100;
      if (availPct < 1 || inodesPct < 1) {
        problems.push(`the filesystem holding ${fs.path} is full (${availPct.toFixed(1)}% space, ${inodesPct.toFixed(1)}% inodes available)`);
        remedy ??= `df -h ${fs.path}; df -i ${fs.path}; docker image prune -a --filter until=72h  # or nodewarden prune`;
      }
    } else if (st && st.reason === 'timeout') {
      problems.push(`statfs of ${fs.path} does not answer`);
      remedy ??= `ps -eo pid,stat,wchan:32,cmd | awk '$2 ~ /D/'`;
    }
  }
  const facts = {
    runtimes: runtimes.map((r) => ({ name: r.name, status: r.status, error: r.error ?? null })),
    filesystems: filesystems.map((f) => ({ path: f.path, readonly: f.readonly, availablePercent: f.statfs?.ok && f.statfs.stats.blocks > 0 ? Math.round((f.statfs.stats.blocksAvailable / f.statfs.stats.blocks) * 1000) / 10 : null })),
  };
  if (problems.length === 0) {
    const names = runtimes.filter((r) => r.status === 'ok').map((r) => r.name);
    return { cause: 'runtime', checked: true, found: false, summary: `${names.join(' and ') || 'no runtime'} answer${names.length === 1 ? 's' : ''}; ${filesystems.map((f) => f.path).join(', ') || 'no runtime or kubelet dir'} ${filesystems.length === 1 ? 'is' : 'are'} neither full nor read-only`, facts };
  }
  return { cause: 'runtime', checked: true, found: true, summary: problems.join('; '), ...(remedy ? { remedy } : {}), facts };
}

/** Pure: 6. the pod's volumes still mounted on the host though none of its containers runs (kubelet has not unmounted them). */
export function evaluateVolumes(hostMounts: readonly MountInfo[], pod: PodInfo, kubeletRootDir: string, anyRunning: boolean): DiagnosisStep {
  const dir = `${kubeletRootDir.replace(/\/+$/, '')}/pods/${pod.uid}`;
  const mounted = hostMounts.filter((m) => under(m.mountPoint, `${dir}/volumes`) || under(m.mountPoint, `${dir}/volume-subpaths`));
  const facts = { podDir: dir, mounted: mounted.slice(0, 20).map((m) => `${m.mountPoint} (${m.fsType} ${m.source})`) };
  if (mounted.length === 0) return { cause: 'volumes', checked: true, found: false, summary: `no volume of the pod is mounted under ${dir}`, facts };
  if (pod.deletionTimestamp === undefined || anyRunning) {
    return { cause: 'volumes', checked: true, found: false, summary: `${mounted.length} volume mount${mounted.length > 1 ? 's' : ''} under ${dir}, as expected while ${anyRunning ? 'its containers run' : 'the pod is not being deleted'}`, facts };
  }
  return {
    cause: 'volumes',
    checked: true,
    found: true,
    summary: `${mounted.length} volume${mounted.length > 1 ? 's are' : ' is'} still mounted under ${dir}/volumes though none of its containers runs: kubelet has not unmounted ${mounted.length > 1 ? 'them' : 'it'}`,
    remedy: `${mounted
      .slice(0, 3)
      .map((m) => `umount ${shellQuote(m.mountPoint)}`)
      .join('; ')}  # if it says busy: nodewarden who-holds ${shellQuote(mounted[0]!.mountPoint)}; kubelet then removes ${dir} by itself`,
    facts,
  };
}

/** What every pod's walk reads the same way: read once per cycle and shared (see createPodAccess). */
export interface SharedReads {
  namespaces(): Promise<MountNamespace[]>;
  hostMounts(): Promise<MountInfo[]>;
  filesystems(): Promise<FsState[]>;
}

/** Reads straight through, no sharing (one pod, as `why --local` diagnoses it). */
export function directReads(host: HostAccess, settings: DiagnoseSettings): SharedReads {
  const hostMounts = async () => {
    const raw = await host.readBytes(host.procPath(1, 'mountinfo'));
    return raw ? parseMountinfo(raw) : [];
  };
  return {
    namespaces: () => readMountNamespaces(host),
    hostMounts,
    async filesystems() {
      const existing: string[] = [];
      for (const p of [settings.kubeletRootDir, ...settings.runtimeRootDirs]) if (await host.exists(host.hostPath(p))) existing.push(p);
      const [statfs, mounts] = await Promise.all([host.statfs(existing, settings.statfsTimeoutMs), hostMounts()]);
      return existing.map((p, i) => {
        const m = mountFor(mounts, p);
        return { path: p, statfs: statfs[i], readonly: Boolean(m && (m.mountOptions.includes('ro') || m.superOptions.includes('ro'))), ...(m ? { mountPoint: m.mountPoint } : {}) };
      });
    },
  };
}

/** Reads and evaluates the whole walk for one pod. Never throws: a step that fails says so and the walk goes on. */
export async function diagnosePod(pod: PodInfo, active: readonly Finding[], env: DiagnoseEnv, settings: DiagnoseSettings, opts: { signal?: AbortSignal; reads?: SharedReads; driftChecked?: boolean } = {}): Promise<PodDiagnosis> {
  const { host } = env;
  const reads = opts.reads ?? directReads(host, settings);
  const snap = await env.runtime.snapshot();
  const containers = podContainers(pod, snap.containers);
  const ownIds = new Set(containers.map((c) => c.id));
  const fromAgent = (p: string) => (host.root === '/' ? p : `/${path.relative(host.root, p)}`);
  const steps: DiagnosisStep[] = [evaluateFinalizers(pod)];
  const guard = async (cause: DiagnosisStep['cause'], run: () => Promise<DiagnosisStep>): Promise<DiagnosisStep> => {
    if (opts.signal?.aborted) return { cause, checked: false, found: false, summary: 'not checked: the diagnosis ran out of time', facts: {} };
    try {
      return await run();
    } catch (err) {
      return { cause, checked: false, found: false, summary: `could not be checked: ${errorMessage(err)}`, facts: {} };
    }
  };

  steps.push(
    await guard('immutable', async () => {
      if (!env.attrs) return evaluateImmutableFiles([], containers, undefined);
      const dirs = immutableScanDirs(pod, containers, settings.kubeletRootDir);
      const present: string[] = [];
      for (const d of dirs) if (await host.exists(host.hostPath(d))) present.push(d);
      const r = present.length > 0 ? await env.attrs.scanTree(present.map((d) => host.hostPath(d)), 2) : { entries: 0, flagged: [] as [string, number][], errors: 0 };
      const flagged = r.flagged.map(([p, bits]) => ({ path: fromAgent(p), bits })).sort((a, b) => a.path.localeCompare(b.path));
      return evaluateImmutableFiles(flagged, containers, { dirs: present, entries: r.entries });
    }),
  );

  steps.push(
    await guard('mount-held', async () => {
      const namespaces = await reads.namespaces();
      const needles = podNeedles(pod, containers, settings.kubeletRootDir);
      const match = (m: MountInfo) => needles.some((n) => `${m.mountPoint} ${m.root} ${m.source} ${m.superOptions.join(',')}`.includes(n));
      const holding = await holdingNamespaces(namespaces, match, host, async () => snap, { hostProcesses: 0, maxHolders: 20 });
      return evaluateHeldMounts(holding, namespaces, needles, pod, ownIds);
    }),
  );

  steps.push(evaluatePodDrift(active, pod, ownIds, opts.driftChecked ?? true));

  steps.push(await guard('runtime', async () => evaluateRuntimeHealth(snap.runtimes, await reads.filesystems())));
  steps.push(await guard('volumes', async () => evaluateVolumes(await reads.hostMounts(), pod, settings.kubeletRootDir, containers.some(isRunning))));

  return { steps, containers: containers.map((c) => ({ id: c.id, name: c.name, state: c.docker?.status ?? c.containerd?.task?.status ?? (c.containerd?.known ? 'created' : 'unknown') })) };
}

/** A read shared by the calls within `ms` of each other (one collector cycle). */
function sharedFor<T>(read: () => Promise<T>, ms = 2000): () => Promise<T> {
  let cached: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (!cached || now - cached.at > ms) cached = { at: now, value: read() };
    return cached.value;
  };
}

/**
 * The PodAccess a collector receives: the pods from `source` (the watcher), and the walk. Mount
 * namespaces, the host's mount table and the filesystems' state are read once for all the pods
 * diagnosed in a cycle.
 */
export function createPodAccess(source: () => PodListState, env: DiagnoseEnv, settings: DiagnoseSettings, opts: { driftChecked?: boolean } = {}): PodAccess {
  const direct = directReads(env.host, settings);
  const reads: SharedReads = { namespaces: sharedFor(direct.namespaces), hostMounts: sharedFor(direct.hostMounts), filesystems: sharedFor(direct.filesystems) };
  return {
    list: source,
    diagnose: (pod, active, signal) => diagnosePod(pod, active, env, settings, { signal, reads, ...(opts.driftChecked !== undefined ? { driftChecked: opts.driftChecked } : {}) }),
  };
}
