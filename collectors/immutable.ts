// immutable: files carrying the immutable (i) or append-only (a) attribute in container storage. The
// runbooks' pods stuck Terminating: "failed to remove root filesystem: ... operation not permitted".
// Containers the runtime reports dead or being removed are scanned at once; the rest of the storage is
// swept in the background, one unit (a layer dir, a pod dir) at a time, under a files-per-second budget.
import path from 'node:path';
import type { Observation, Workload } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import os from 'node:os';
import { confirmSuspects, heldFindings, sleep, suspectKey } from './common/confirm.js';
import { shellQuote } from './common/text.js';
import { ATTR_APPEND, ATTR_IMMUTABLE, type Collector, type CollectorContext, type RuntimeContainer, type ScanProgress } from './types.js';

export const immutableConfigSpec = s.object({
  roots: s.list(s.string({ doc: 'directory' }), {
    default: ['/var/lib/docker/overlay2', '/var/lib/docker/containers', '/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots', '/var/lib/kubelet/pods'],
    doc: 'storage swept in the background (host paths); each child directory is one unit of the sweep',
  }),
  filesPerSecond: s.number({ default: 1000, min: 1, doc: 'background sweep budget: files examined per second, on average (1,000 is about 2 millicores)' }),
  sweepSlice: s.duration({ default: '10s', min: 100, doc: 'how long one cycle may spend sweeping before it yields' }),
  maxPerContainer: s.number({ default: 10, min: 1, integer: true, doc: 'findings per container (or unit); the rest are counted in the evidence' }),
  complete: s.boolean({ default: false, doc: 'scan all storage in one pass on every core instead of the paced sweep (what nodewarden check does)' }),
});
export type ImmutableConfig = Infer<typeof immutableConfigSpec>;

export interface Flagged {
  /** Host path of the file. */
  path: string;
  bits: number;
}

export interface ImmutableData {
  /** Units (host paths) still to sweep in this round. */
  pending: string[];
  /** Files found so far (re-verified every cycle). */
  found: Flagged[];
  round: number;
  sweptThisRound: number;
  lastCycle: { urgentScanned: number; swept: number; units: number };
  /**
   * When a unit held more files than one slice's budget (a layer of 40,000 files at 1,000 a second):
   * the pause it still owes, as a time (ctx.now()); scheduled runs sweep nothing until then.
   */
  restUntil?: number;
  /** In complete mode: every unit of storage examined in this run (nothing left pending). */
  complete?: { units: number; entries: number; errors: number };
  /** Set while a runtime cannot be asked: how many flagged files were left unjudged (their owner's state is not known now). */
  notJudged?: string;
}

/** The chattr that clears exactly these bits: -i, -a or -ia (chattr -i alone leaves an append-only file). */
export function chattrCommand(bits: number, path: string): string {
  return `chattr -${bits & ATTR_IMMUTABLE ? 'i' : ''}${bits & ATTR_APPEND ? 'a' : ''} ${shellQuote(path)}`;
}

export function attrLetters(bits: number): string {
  return `${bits & ATTR_IMMUTABLE ? 'i' : '-'}${bits & ATTR_APPEND ? 'a' : '-'}`;
}

/** The container whose storage holds `file`, and how (its writable layer, or an image layer it uses). */
export function ownerOf(file: string, containers: readonly RuntimeContainer[]): { container: RuntimeContainer; where: 'writable' | 'image' | 'container-dir' } | undefined {
  const under = (dir: string | undefined) => dir !== undefined && (file === dir || file.startsWith(`${dir}/`) || file.startsWith(`${path.dirname(dir)}/`));
  for (const c of containers) {
    if (under(c.storage.upperDir) || under(c.storage.mergedDir)) return { container: c, where: 'writable' };
    if (c.storage.containerDir && (file === c.storage.containerDir || file.startsWith(`${c.storage.containerDir}/`))) return { container: c, where: 'container-dir' };
  }
  for (const c of containers) {
    if ((c.storage.lowerDirs ?? []).some((d) => under(d))) return { container: c, where: 'image' };
  }
  return undefined;
}

/** The command that removes a container's image, and fails on an immutable file in one of its layers. */
function rmi(c: RuntimeContainer): string {
  return c.manager === 'docker' ? `docker rmi ${shellQuote(c.image)}` : `crictl rmi ${shellQuote(c.image)}`;
}

const POD_DIR_RE = /\/pods\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\//;

/** A docker overlay2 layer directory holding `file`, if it is in one. */
export function layerDirOf(file: string): string | undefined {
  return /^(.*\/overlay2\/[0-9a-f]{64})(\/|$)/.exec(file)?.[1];
}

/**
 * Pure: findings for the flagged files, grouped and capped per owner. `images` maps image layer
 * directories to the image using them: a file in a layer that no container and no image uses is in a
 * layer orphaned by a failed image removal (docker untagged the image, then could not delete it).
 */
export function evaluateImmutable(found: readonly Flagged[], containers: readonly RuntimeContainer[], config: ImmutableConfig, images?: ReadonlyMap<string, string>): Observation[] {
  const out: Observation[] = [];
  const perOwner = new Map<string, number>();
  const counts = new Map<string, number>();
  const owners = found.map((f) => {
    const owner = ownerOf(f.path, containers);
    const podUid = POD_DIR_RE.exec(f.path)?.[1];
    const key = owner?.container.id ?? (podUid ? `pod/${podUid}` : path.dirname(f.path));
    counts.set(key, (counts.get(key) ?? 0) + 1);
    return { f, owner, podUid, key };
  });
  for (const { f, owner, podUid, key } of owners) {
    const n = (perOwner.get(key) ?? 0) + 1;
    perOwner.set(key, n);
    if (n > config.maxPerContainer) continue;
    const c = owner?.container;
    const blocking = Boolean(c?.docker && (c.docker.dead || c.docker.removing));
    const attrs = attrLetters(f.bits);
    const kind = f.bits & ATTR_IMMUTABLE ? 'immutable' : 'append-only';
    const q = shellQuote(f.path);
    const layer = c ? undefined : layerDirOf(f.path);
    const image = layer ? images?.get(layer) : undefined;
    const orphan = layer !== undefined && images !== undefined && image === undefined;
    const who = c ? `container ${c.name} (${c.id.slice(0, 12)})${c.workload.pod ? `, pod ${c.workload.namespace ?? ''}/${c.workload.pod}` : ''}` : podUid ? `pod ${podUid}` : 'no known container';
    const message = blocking
      ? `${q} is ${kind} (${attrs}) and blocks the removal of ${who}, which the runtime reports as ${c!.docker!.status}: the pod stays Terminating until the attribute is cleared.`
      : owner?.where === 'image'
        ? `${q} is ${kind} (${attrs}) in a layer of image ${c!.image}, used by ${who}: removing the image (${rmi(c!)}) will fail with "operation not permitted" after untagging it, and leave the layer on disk.`
        : image
          ? `${q} is ${kind} (${attrs}) in a layer of image ${image}, which no container uses: removing the image (docker rmi ${shellQuote(image)}) will fail with "operation not permitted" after untagging it, and leave the layer on disk.`
          : orphan
            ? `${q} is ${kind} (${attrs}) in layer ${layer}, which no image and no container uses: a layer orphaned by a failed image removal (docker untagged the image, then could not delete this layer). Its disk space is not reclaimed until the attribute is cleared and the layer deleted.`
            : `${q} is ${kind} (${attrs}) in the storage of ${who}: when it is deleted, removal will fail with "operation not permitted" and the pod will hang in Terminating.`;
    const evidence: Observation['evidence'] = {
      path: f.path,
      attributes: attrs,
      owner: c ? { container: c.id, name: c.name, state: c.docker?.status ?? c.containerd?.task?.status ?? 'unknown', layer: owner!.where } : null,
      podUid: c?.workload.podUid ?? podUid ?? null,
      ...(image ? { image } : {}),
      ...(orphan ? { orphanedLayer: layer } : {}),
      flaggedInSameOwner: counts.get(key) ?? 1,
    };
    const obs: Observation = {
      check: 'immutable.file',
      severity: blocking ? 'critical' : 'warning',
      subject: f.path,
      message,
      evidence,
      remedy: `${chattrCommand(f.bits, f.path)}${
        c
          ? owner!.where === 'image'
            ? `  # then the image can go: ${rmi(c)}`
            : `  # then retry the removal: ${c.manager === 'docker' ? 'docker rm -f' : 'crictl rm -f'} ${c.id.slice(0, 12)}`
          : image
            ? `  # then the image can go: docker rmi ${shellQuote(image)}`
            : orphan
              ? `; grep -rl ${path.basename(layer!)} /var/lib/docker/image/overlay2/layerdb/ || rm -rf ${shellQuote(layer!)}  # nothing references it`
              : ''
      }`,
    };
    const workload: Workload | undefined = c?.workload ?? (podUid ? { podUid } : undefined);
    if (workload) obs.workload = workload;
    out.push(obs);
  }
  return out;
}

function urgentDirs(containers: readonly RuntimeContainer[]): string[] {
  const dirs: string[] = [];
  for (const c of containers) {
    if (!c.docker || !(c.docker.dead || c.docker.removing)) continue;
    if (c.storage.upperDir) dirs.push(path.dirname(c.storage.upperDir)); // the layer dir: diff, work, merged
    if (c.storage.containerDir) dirs.push(c.storage.containerDir);
  }
  return dirs;
}

async function listUnits(ctx: CollectorContext<ImmutableConfig, ImmutableData>): Promise<string[]> {
  const units: string[] = [];
  for (const root of ctx.config.roots) {
    const names = await ctx.host.list(ctx.host.hostPath(root));
    for (const n of names ?? []) if (n !== 'l') units.push(`${root}/${n}`); // overlay2/l holds only symlinks
  }
  return units;
}

/** The longest pause a sweep may still owe (a unit of 3,600,000 files at 1,000 a second). */
const MAX_REST_MS = 3_600_000;

export const immutable: Collector<ImmutableConfig, ImmutableData> = {
  name: 'immutable',
  description: 'Files with the immutable or append-only attribute in container storage (statx, no file opened)',
  checks: ['immutable.file'],
  conditions: { 'immutable.file': 'NodewardenImmutableFiles' },
  defaultIntervalMs: 60_000,
  defaultTimeoutMs: 45_000,
  waitsFor: ['runtime.timeout', 'sweepSlice'],
  configSpec: immutableConfigSpec,
  async collect(ctx) {
    const attrs = ctx.attrs;
    if (!attrs) return { kind: 'no-data', reason: 'the native attrs module is not built (npm rebuild needs python3, make and a C compiler)' };
    const { host, config, signal } = ctx;
    const prev = ctx.previous;
    // With suspects carried from an earlier run, this run's confirming read must rest on a view taken
    // after the settle wait (see confirmSuspects): the one view taken now serves the urgent scan and that
    // read. Two views per confirming run cost 2-4 s under churn (an inspect waits while docker starts or
    // stops the container), the larger part of the time to name a stuck removal.
    const runStart = ctx.now();
    const confirmingNow = (ctx.confirmations?.size ?? 0) > 0;
    const snap = await ctx.runtime.snapshot(confirmingNow ? { since: runStart } : {});
    const toAgent = (p: string) => host.hostPath(p);
    const fromAgent = (p: string) => (host.root === '/' ? p : `/${path.relative(host.root, p)}`);

    // 1. What we found before: keep what still carries an attribute.
    const found = new Map<string, number>();
    for (const f of prev?.found ?? []) {
      const bits = attrs.attrsOf(toAgent(f.path));
      if (bits) found.set(f.path, bits);
    }

    // 2. Containers being removed, or whose removal failed: now, in full. (Not from a stale view: a
    // runtime that does not answer cannot tell us which containers are dead.)
    const urgent = urgentDirs(snap.containers.filter((c) => !snap.stale?.includes(c.manager)));
    let urgentScanned = 0;
    if (urgent.length > 0) {
      const r = await attrs.scanTree(urgent.map(toAgent), 2);
      urgentScanned = r.entries;
      for (const [p, bits] of r.flagged) found.set(fromAgent(p), bits);
    }

    let pending = prev?.pending ?? [];
    let round = prev?.round ?? 0;
    let sweptThisRound = prev?.sweptThisRound ?? 0;
    let swept = 0;
    let units = 0;
    let complete: ImmutableData['complete'];
    let restUntil: number | undefined;
    if (config.complete) {
      // 3a. One-shot: every unit at once, on every core (as find-immutable does).
      const all = await listUnits(ctx);
      const report = (p: ScanProgress) => ctx.progress?.({ step: 'scanning storage', done: p.units, total: p.total, unit: 'units', entries: p.entries });
      const r = all.length > 0 ? await attrs.scanTree(all.map(toAgent), Math.max(2, os.availableParallelism?.() ?? os.cpus().length), ctx.progress && report) : { entries: 0, errors: 0, flagged: [] };
      for (const [p, bits] of r.flagged) found.set(fromAgent(p), bits);
      swept = r.entries;
      units = all.length;
      pending = [];
      round += 1;
      sweptThisRound = swept;
      complete = { units: all.length, entries: r.entries, errors: r.errors };
    } else if (ctx.triggered) {
      // 3b. A run a runtime event asked for: the urgent scan above is the point; the sweep waits for
      // the schedule, so the stuck removal is named in seconds.
      restUntil = prev?.restUntil;
    } else if (prev?.restUntil !== undefined && ctx.now() < prev.restUntil && prev.restUntil - ctx.now() <= MAX_REST_MS) {
      // 3c'. Still owing the pause of a unit larger than a slice (see below): no sweep this run. (More
      // than an hour ahead is a clock stepped back, not a debt: the sweep goes on.)
      restUntil = prev.restUntil;
    } else {
      // 3c. The background sweep, paced to filesPerSecond, for at most sweepSlice; it yields early when
      // a runtime event asked for an urgent re-run (a container died or its removal failed).
      if (pending.length === 0) {
        pending = await listUnits(ctx);
        round += 1;
        sweptThisRound = 0;
      }
      pending = [...pending];
      const sliceEnd = ctx.now() + config.sweepSlice;
      while (pending.length > 0 && !signal.aborted && ctx.now() < sliceEnd && !ctx.rerunRequested?.()) {
        const unit = pending.shift()!;
        const started = ctx.now();
        const r = await attrs.scanTree([toAgent(unit)], 1);
        swept += r.entries;
        units += 1;
        for (const [p, bits] of r.flagged) found.set(fromAgent(p), bits);
        // Spend at least entries / budget seconds per unit, on average; in short steps, so an urgent
        // re-run (a container stuck in removal) does not wait out the pause after a large layer. The
        // pause ends with the slice: a layer of 50,000 files owes 50 s at 1,000 a second, longer than the
        // run's 45 s timeout (every such run was a false collector.timeout). What is still owed is
        // carried (restUntil): later scheduled runs sweep nothing until it is paid.
        const pauseEnd = started + (r.entries / config.filesPerSecond) * 1000;
        const waitEnd = Math.min(pauseEnd, sliceEnd);
        while (!signal.aborted && !ctx.rerunRequested?.() && ctx.now() < waitEnd) await sleep(Math.min(250, waitEnd - ctx.now()), signal);
        if (pauseEnd > ctx.now()) restUntil = pauseEnd;
      }
      sweptThisRound += swept;
    }

    const flagged = [...found].map(([p, bits]) => ({ path: p, bits })).sort((a, b) => a.path.localeCompare(b.path));
    const data: ImmutableData = { pending, found: flagged, round, sweptThisRound, lastCycle: { urgentScanned, swept, units } };
    if (complete) data.complete = complete;
    if (restUntil !== undefined) data.restUntil = restUntil;

    // 4. Confirmation: the files still flagged and their owners unchanged on a fresh read after the
    // settle window (a container removed normally in between is no longer anybody's blocker).
    let judged: number | undefined;
    /** Flagged files the latest read could not judge (a runtime did not answer): by suspectKey, and their paths. */
    let unjudged = new Set<string>();
    let unjudgedPaths = new Set<string>();
    let notJudged: string | undefined;
    const { observations } = await confirmSuspects(ctx, async (since) => {
      const view = since === undefined || (confirmingNow && snap.takenAt >= runStart) ? snap : await ctx.runtime.snapshot({ since });
      judged = view.takenAt;
      const read = since === undefined ? flagged : flagged.flatMap((f) => {
        const bits = attrs.attrsOf(toAgent(f.path));
        return bits ? [{ path: f.path, bits }] : [];
      });
      // While a runtime cannot be asked, its containers are its last known ones (stale): whether such a
      // container is dead or gone, and so a finding's severity and owner, is not known now. A file that
      // such a container owns, or that no container owns (its owner may be one the runtime made since),
      // is not judged: its suspect is carried as it is, what was firing keeps firing. Pod dirs are kubelet's.
      const blind = view.runtimes.filter((r) => r.status !== 'ok' && r.status !== 'absent');
      const unknowable = (p: string) => {
        if (blind.length === 0) return false;
        const owner = ownerOf(p, view.containers);
        return owner ? blind.some((r) => r.name === owner.container.manager) : !POD_DIR_RE.test(p);
      };
      const held = read.filter((f) => unknowable(f.path));
      const now = read.filter((f) => !held.includes(f));
      unjudgedPaths = new Set(held.map((f) => f.path));
      unjudged = new Set(held.map((f) => suspectKey('immutable.file', f.path)));
      notJudged = held.length > 0 ? `${held.length} flagged file${held.length === 1 ? '' : 's'} not judged while ${blind.map((r) => `${r.name} is ${r.status}`).join(' and ')}` : undefined;
      const unowned = now.some((f) => layerDirOf(f.path) !== undefined && !ownerOf(f.path, view.containers));
      const images = unowned && ctx.runtime.imageLayers && !view.stale?.includes('docker') ? await ctx.runtime.imageLayers() : undefined;
      const obs = evaluateImmutable(now, view.containers, config, images);
      // The attribute is a durable fact; what must hold still is the owner (removing -> dead is the
      // same blocked removal, a container that went away is not).
      return obs.map((observation) => ({ observation, facts: `${observation.severity}|${ownerOf(observation.subject, view.containers)?.container.id ?? '-'}` }));
      // Its view may be the one taken at the run's start: a read spaced from the last counts from there.
    }, { viewStart: () => judged, unjudged: () => unjudged });
    if (notJudged) data.notJudged = notJudged;
    return { kind: 'ok', observations: [...observations, ...heldFindings(ctx.active?.() ?? [], 'immutable.file', unjudgedPaths, observations)], data };
  },
};
