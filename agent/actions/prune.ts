// Image prune on this node, asked for through the aggregator: removes images no container uses
// (running or stopped) that are older than `until`, through the Docker Engine API and through
// containerd's image service. Never the sandbox (pause) image, never an image the CRI pinned.
import type { PruneProgress, PruneResult } from '../../protocol/wire.js';
import { DockerError } from '../runtime/docker.js';
import type { Runtimes } from '../runtime/model.js';

export interface PruneOptions {
  untilMs: number;
  dryRun: boolean;
  /** Image names (without tag) that are sandbox images, never removed. */
  sandboxImages: string[];
  /** containerd namespaces whose images are pruned (the CRI's is k8s.io). */
  containerdNamespaces: string[];
  /** Only images carrying this label (KEY or KEY=VALUE); '' or absent for all. */
  label?: string;
  now?: number;
}

/** Whether labels satisfy a KEY or KEY=VALUE selector. */
export function hasLabel(labels: Record<string, string> | null | undefined, selector: string | undefined): boolean {
  if (!selector) return true;
  const eq = selector.indexOf('=');
  const key = eq < 0 ? selector : selector.slice(0, eq);
  if (!labels || !(key in labels)) return false;
  return eq < 0 || labels[key] === selector.slice(eq + 1);
}

export interface Candidate {
  runtime: 'docker' | 'containerd';
  /** What to show: the first tag, or the id. */
  image: string;
  /** What to delete, in order. */
  refs: string[];
  size: number;
  createdMs: number;
  namespace?: string;
}

export interface Plan {
  candidates: Candidate[];
  kept: { image: string; reason: string }[];
}

/** `registry.k8s.io/pause:3.9` -> `registry.k8s.io/pause`; digests dropped too. */
export function repository(ref: string): string {
  const noDigest = ref.split('@')[0]!;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

export function isSandbox(refs: readonly string[], sandboxImages: readonly string[]): boolean {
  return refs.some((r) => {
    const repo = repository(r);
    return sandboxImages.some((s) => repo === s || repo.endsWith(`/${s}`));
  });
}

export async function planDocker(rt: Runtimes, opts: PruneOptions): Promise<Plan> {
  const now = opts.now ?? Date.now();
  const [images, containers] = await Promise.all([rt.docker.images(), rt.docker.containers()]);
  const used = new Set(containers.map((c) => c.ImageID));
  const plan: Plan = { candidates: [], kept: [] };
  for (const img of images) {
    const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    const name = tags[0] ?? img.Id.slice(0, 19);
    if (!hasLabel(img.Labels, opts.label)) continue;
    if (used.has(img.Id)) plan.kept.push({ image: name, reason: 'used by a container' });
    else if (isSandbox(tags, opts.sandboxImages)) plan.kept.push({ image: name, reason: 'sandbox (pause) image' });
    else if (img.Created * 1000 > now - opts.untilMs) plan.kept.push({ image: name, reason: 'newer than --until' });
    else plan.candidates.push({ runtime: 'docker', image: name, refs: tags.length > 1 ? tags : [img.Id], size: img.Size, createdMs: img.Created * 1000 });
  }
  return plan;
}

/** Sum of the manifest's config and layers, read from the content store; the target's size if that fails. */
async function imageSize(rt: Runtimes, ns: string, target: { mediaType: string; digest: string; size: number }): Promise<number> {
  try {
    let manifest = JSON.parse((await rt.containerd.readBlob(ns, target.digest)).toString('utf8')) as {
      manifests?: { digest: string; platform?: { os?: string; architecture?: string } }[];
      layers?: { size: number }[];
      config?: { size: number };
    };
    if (manifest.manifests) {
      const arch = process.arch === 'x64' ? 'amd64' : process.arch;
      const pick = manifest.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch) ?? manifest.manifests[0];
      if (!pick) return target.size;
      manifest = JSON.parse((await rt.containerd.readBlob(ns, pick.digest)).toString('utf8')) as typeof manifest;
    }
    return (manifest.config?.size ?? 0) + (manifest.layers ?? []).reduce((n, l) => n + l.size, 0);
  } catch {
    return target.size;
  }
}

export async function planContainerd(rt: Runtimes, ns: string, opts: PruneOptions): Promise<Plan> {
  const now = opts.now ?? Date.now();
  const [images, containers] = await Promise.all([rt.containerd.images(ns), rt.containerd.containers(ns)]);
  // One image has several names in containerd (tag, repo@digest, sha256:id): group them by target.
  const groups = new Map<string, typeof images>();
  for (const img of images) groups.set(img.target.digest, [...(groups.get(img.target.digest) ?? []), img]);
  const usedNames = new Set(containers.map((c) => c.image));
  const plan: Plan = { candidates: [], kept: [] };
  for (const [digest, group] of groups) {
    const names = group.map((g) => g.name);
    const shown = names.find((n) => !n.startsWith('sha256:') && !n.includes('@')) ?? names[0] ?? digest;
    const created = Math.min(...group.map((g) => (g.createdAt ? Date.parse(g.createdAt) : now)));
    if (!group.some((g) => hasLabel(g.labels, opts.label))) continue;
    if (names.some((n) => usedNames.has(n))) plan.kept.push({ image: shown, reason: 'used by a container' });
    else if (group.some((g) => g.labels['io.cri-containerd.pinned'] === 'pinned')) plan.kept.push({ image: shown, reason: 'pinned by the CRI' });
    else if (isSandbox(names, opts.sandboxImages)) plan.kept.push({ image: shown, reason: 'sandbox (pause) image' });
    else if (created > now - opts.untilMs) plan.kept.push({ image: shown, reason: 'newer than --until' });
    else plan.candidates.push({ runtime: 'containerd', image: shown, refs: names, size: await imageSize(rt, ns, group[0]!.target), createdMs: created, namespace: ns });
  }
  return plan;
}

/** Plans and (unless dry run) removes, reporting each image as it goes. */
export async function prune(rt: Runtimes, opts: PruneOptions, onProgress: (p: PruneProgress) => void): Promise<PruneResult> {
  const states = await rt.ping();
  const runtimes: string[] = [];
  const plans: Plan[] = [];
  const errors: string[] = [];
  if (states.find((s) => s.name === 'docker')?.status === 'ok') {
    runtimes.push('docker');
    plans.push(await planDocker(rt, opts));
  }
  if (states.find((s) => s.name === 'containerd')?.status === 'ok') {
    for (const ns of opts.containerdNamespaces) {
      try {
        plans.push(await planContainerd(rt, ns, opts));
        runtimes.push(`containerd/${ns}`);
      } catch (err) {
        errors.push(`containerd namespace ${ns}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }
  if (runtimes.length === 0) {
    return { ok: false, dryRun: opts.dryRun, runtime: 'none', removed: 0, bytes: 0, errors: ['no container runtime answers on this node'] };
  }
  let removed = 0;
  let bytes = 0;
  const all = plans.flatMap((p) => p.candidates);
  const total = all.length;
  for (const [i, c] of all.entries()) {
    const index = i + 1;
    if (opts.dryRun) {
      onProgress({ image: c.image, size: c.size, state: 'would-remove', index, total });
      continue;
    }
    try {
      for (const ref of c.refs) {
        if (c.runtime === 'docker') await rt.docker.removeImage(ref);
        else await rt.containerd.deleteImage(c.namespace!, ref);
      }
      removed++;
      bytes += c.size;
      onProgress({ image: c.image, size: c.size, state: 'removed', index, total });
    } catch (err) {
      const reason = err instanceof DockerError && err.statusCode === 409 ? `in use: ${err.message}` : err instanceof Error ? err.message : String(err);
      errors.push(`${c.image}: ${reason}`);
      onProgress({ image: c.image, size: c.size, state: 'failed', reason, index, total });
    }
  }
  const kept = plans.reduce((n, p) => n + p.kept.length, 0);
  return { ok: errors.length === 0, dryRun: opts.dryRun, runtime: runtimes.join(','), removed, bytes, errors, kept };
}
