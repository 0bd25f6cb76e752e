// `nodewarden du`'s measuring, done on request: the config's dirs and thresholds, the native walk and
// docker's and containerd's image inventories handed to measureFillers (collectors/common/fillers.ts), which a collector
// view can call with its own context.
import os from 'node:os';
import { measureFillers, refreshRoots, type Fillers, type ImageInventory, type InventoryImage } from '../../collectors/common/fillers.js';
import type { DiskConfig } from '../../collectors/disk.js';
import type { FillersAccess, Log, MeasuredFillers } from '../../collectors/types.js';
import type { Config } from '../config.js';
import type { Environment } from '../environment.js';
import { createTreeWalker } from '../host/attrs.js';
import { Runtimes } from '../runtime/model.js';
import { errorMessage } from '../../protocol/errors.js';
import { containerdInventory } from './containerd-images.js';
import { dockerInventory } from './images.js';
import { configuredSandboxes, sandboxReason } from './prune.js';

export interface DuOptions {
  /** The walk's deadline (ms): past it, what was measured is reported as partial. */
  timeoutMs: number;
  /** The walk's entry budget: past it, partial. */
  maxEntries: number;
  /** Walking threads; a cold walk waits on the disk, so more than the cores (default: 4 per core, 8 to 16). */
  threads?: number;
}

export const DU_DEFAULTS = { timeoutMs: 120_000, maxEntries: 20_000_000 } as const;

/** The walk's threads: a cold walk waits on the disk, not the CPU, so several per core keep it busy. */
export function duThreads(): number {
  return Math.min(16, Math.max(8, os.availableParallelism() * 4));
}

/**
 * docker's and containerd's images (prune.containerdNamespaces) together: a runtime that does not
 * answer, or fails, leaves the other's images and a note; undefined when neither answers.
 */
export async function nodeInventory(rt: Runtimes, env: Pick<Environment, 'host'>, config: Pick<Config, 'prune' | 'runtime'>): Promise<{ images: InventoryImage[]; notes: string[] } | undefined> {
  const [states, configured] = await Promise.all([rt.ping(), configuredSandboxes(env.host)]);
  const up = (name: string) => states.find((s) => s.name === name)?.status === 'ok';
  const pinnedReason = (refs: readonly string[]) => sandboxReason(refs, config.prune.sandboxImages, configured);
  const notes: string[] = [];
  const failed = (name: string) => (err: unknown) => {
    notes.push(`${name}'s images could not be listed (${errorMessage(err)}): they are counted with the rest`);
    return [] as InventoryImage[];
  };
  const [docker, containerd] = await Promise.all([
    up('docker') ? dockerInventory(rt, env.host, { dockerRoot: config.runtime.dockerRoot, pinnedReason }).then((i) => i.images, failed('docker')) : undefined,
    up('containerd') && config.prune.containerdNamespaces.length > 0
      ? containerdInventory(rt, env.host, { containerdRoot: config.runtime.containerdRoot, namespaces: config.prune.containerdNamespaces, pinnedReason }).then((i) => {
          for (const e of i.errors) notes.push(`${e}: its images are counted with the rest`);
          return i.images;
        }, failed('containerd'))
      : undefined,
  ]);
  if (!docker && !containerd) return undefined;
  return { images: [...(docker ?? []), ...(containerd ?? [])], notes };
}

export async function measureNode(env: Environment, config: Config, opts: DuOptions): Promise<Fillers> {
  const disk = config.collectors['disk'] as unknown as DiskConfig;
  const pods = config.collectors['pods'] as { podLogsDir?: unknown } | undefined;
  const rt = env.runtime instanceof Runtimes ? env.runtime : undefined;
  const images: ImageInventory | undefined = rt ? () => nodeInventory(rt, env, config) : undefined;
  return measureFillers({
    host: env.host,
    runtime: env.runtime,
    walker: createTreeWalker(),
    ...(images ? { images } : {}),
    settings: {
      kubeletRootDir: disk.eviction.kubeletRootDir,
      podLogsDir: typeof pods?.podLogsDir === 'string' ? pods.podLogsDir : '/var/log/pods',
      disk,
      timeoutMs: opts.timeoutMs,
      maxEntries: opts.maxEntries,
      threads: opts.threads ?? duThreads(),
    },
  });
}

/** The incremental refresh of a few roots (agent/host/tree-index.ts): bytes per root. */
export type RefreshRoots = (roots: readonly string[]) => Promise<{ bytes: Record<string, number> }>;

/**
 * The share of one core the full du walks may use on average: a walk that cost C seconds of CPU is
 * followed by the next no sooner than C / WALK_CPU_SHARE later (and no sooner than `everyMs`). The root
 * filesystem of a node with a few images holds about 556,000 entries, a walk of 3.7 s of CPU: every
 * 31 minutes instead of every 5 (12 millicores on average); a kubelet dir of 10,000 entries stays at
 * `everyMs`. Between walks the largest consumers are refreshed incrementally, which is what their rates
 * and the time-to-threshold estimate read.
 */
export const WALK_CPU_SHARE = 0.002;

/** This process's CPU time so far, in ms (all its threads: the walk runs on native threads). */
const processCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * The agent's du measurement for the disk collector: made in the background, one at a time, at most
 * once per `everyMs` a caller asks with and paced to WALK_CPU_SHARE of a core; the caller gets the last
 * finished one at once (never waits on the walk, which has its own deadline), for three such gaps. A
 * failed measurement is logged and leaves the last one. With `refresh`, a caller that asks for it also
 * starts a refresh of the last measurement's largest consumers (one at a time; the next call returns
 * it), much cheaper than the walk, for their growth rates.
 */
export function createFillersAccess(measure: () => Promise<Fillers>, opts: { now?: () => number; cpuMs?: () => number; log?: Log; refresh?: RefreshRoots } = {}): FillersAccess & { idle(): Promise<void> } {
  const now = opts.now ?? Date.now;
  const cpuMs = opts.cpuMs ?? processCpuMs;
  let last: MeasuredFillers | undefined;
  let startedAt: number | undefined;
  /** How long the last walk's CPU asks the next one to wait, from the end of the last. */
  let cpuGapMs = 0;
  let endedAt = 0;
  let running: Promise<void> | undefined;
  let refreshing: Promise<void> | undefined;
  const startRefresh = (measured: MeasuredFillers) => {
    const refresh = opts.refresh;
    if (!refresh || refreshing) return;
    refreshing = refresh(refreshRoots(measured.fillers)).then(
      (r) => {
        // A full measurement that finished meanwhile keeps it: its consumers are the same paths.
        if (last) last = { ...last, refreshed: { takenAt: now(), bytes: r.bytes } };
      },
      (err: unknown) => opts.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'du refresh failed'),
    ).finally(() => {
      refreshing = undefined;
    });
  };
  return {
    async get(everyMs, getOpts) {
      const t = now();
      if (!running && (startedAt === undefined || (t - startedAt >= everyMs && t - endedAt >= cpuGapMs))) {
        startedAt = t;
        const cpuBefore = cpuMs();
        running = measure().then(
          (fillers) => {
            last = { fillers, takenAt: now(), ...(last?.refreshed ? { refreshed: last.refreshed } : {}) };
            if (fillers.partial) opts.log?.warn({ partial: fillers.partial }, 'du measurement partial');
          },
          (err: unknown) => opts.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'du measurement failed'),
        ).finally(() => {
          // The whole process's CPU meanwhile: the walk's threads and whatever else ran (an overestimate).
          cpuGapMs = Math.max(0, cpuMs() - cpuBefore) / WALK_CPU_SHARE;
          endedAt = now();
          running = undefined;
        });
      }
      const fresh = last && now() - last.takenAt <= 3 * Math.max(everyMs, cpuGapMs) ? last : undefined;
      if (fresh && getOpts?.refresh) startRefresh(fresh);
      return fresh;
    },
    /** For tests: resolves when no measurement and no refresh runs. */
    async idle() {
      await running;
      await refreshing;
    },
  };
}
