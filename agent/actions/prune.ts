// Image prune on this node, asked for through the aggregator: removes images that no container or pod
// sandbox references (in any state) and that are older than `until`, through the Docker Engine API and
// through containerd's image service. Never a sandbox (pause) image under any registry or naming, never
// the sandbox image containerd or kubelet is configured with, never an image the CRI pinned. What was
// kept is reported with the reason, as progress entries of state `kept` (already in the wire protocol).
import type { HostAccess } from '../../collectors/types.js';
import type { PruneProgress, PruneResult } from '../../protocol/wire.js';
import { DockerError } from '../runtime/docker.js';
import type { Runtimes } from '../runtime/model.js';
import { errorMessage } from '../../protocol/errors.js';
import { imageFrees, imageSize as layeredSize } from '../../collectors/common/fillers.js';
import { containerdLayout, readContainerdNamespace } from './containerd-images.js';
import { dockerInventory } from './images.js';

export interface PruneOptions {
  untilMs: number;
  dryRun: boolean;
  /** Image names (without tag) that are sandbox images, never removed. */
  sandboxImages: string[];
  /** Sandbox images the node is configured with (containerd's sandbox_image, kubelet's flag), with where it says so. */
  configuredSandboxes?: ConfiguredSandbox[];
  /** containerd namespaces whose images are pruned (the CRI's is k8s.io). */
  containerdNamespaces: string[];
  /** Only images carrying this label (KEY or KEY=VALUE); '' or absent for all. */
  label?: string;
  now?: number;
  /**
   * Where docker's layer store is read (under --host-root), so that each image's size is what removing
   * it frees, a layer shared with an image that stays counted nowhere (docker's own Size counts it in
   * every image built on it). Without it, docker's Size.
   */
  host?: HostAccess;
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
  /** The image's id as its inventory has it (docker's sha256:..., containerd/NAMESPACE/TARGET). */
  id?: string;
  /** What to show: the first tag, or the id. */
  image: string;
  /** What to delete, in order. */
  refs: string[];
  size: number;
  createdMs: number;
  namespace?: string;
}

/** Kept images listed one by one in the progress stream; the aggregator's flood limit allows bursts of 2,000. */
export const KEPT_LISTED = 200;

export interface Plan {
  /** `docker` or `containerd/NAMESPACE`. */
  runtime: string;
  candidates: Candidate[];
  kept: { image: string; reason: string; size: number }[];
}

/** A reference as a container names its image: repository and tag (or digest), however written. */
function canonicalRef(ref: string): string {
  const r = ref.trim().toLowerCase();
  const tail = r.slice(repository(r).length);
  return `${canonicalRepository(r)}${tail === '' && !r.startsWith('sha256:') ? ':latest' : tail}`;
}

/** `registry.k8s.io/pause:3.9` -> `registry.k8s.io/pause`; digests dropped too. */
export function repository(ref: string): string {
  const noDigest = ref.split('@')[0]!;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

/** The same repository however it is written: `docker.io/library/pause`, `library/pause` and `pause` are one. */
export function canonicalRepository(ref: string): string {
  return repository(ref.trim().toLowerCase()).replace(/^(docker\.io|index\.docker\.io|registry-1\.docker\.io)\//, '').replace(/^library\//, '');
}

// The pause image's last path component under every naming seen in the wild: pause, pause-amd64,
// mirrored-pause (rancher), google_containers/pause-arm64, eks/pause-windows. Keeping an image by mistake
// costs some disk; removing a sandbox image breaks every new pod on an offline node.
const PAUSE_NAME = /^(?:[a-z0-9_.]+-)?pause(?:-[a-z0-9]+)?$/;

export interface ConfiguredSandbox {
  ref: string;
  /** Where the node says so: `sandbox_image in /etc/containerd/config.toml`. */
  source: string;
}

/** Why an image with these names is a sandbox image, or undefined when it is not one. */
export function sandboxReason(refs: readonly string[], sandboxImages: readonly string[], configured: readonly ConfiguredSandbox[] = []): string | undefined {
  for (const r of refs) {
    const repo = canonicalRepository(r);
    const hit = configured.find((c) => canonicalRepository(c.ref) === repo);
    if (hit) return `the node's sandbox image (${hit.source})`;
  }
  for (const r of refs) {
    const repo = canonicalRepository(r);
    const last = repo.slice(repo.lastIndexOf('/') + 1);
    if (PAUSE_NAME.test(last) || sandboxImages.some((s) => repo === canonicalRepository(s) || repo.endsWith(`/${canonicalRepository(s)}`))) return 'sandbox (pause) image';
  }
  return undefined;
}

export function isSandbox(refs: readonly string[], sandboxImages: readonly string[], configured: readonly ConfiguredSandbox[] = []): boolean {
  return sandboxReason(refs, sandboxImages, configured) !== undefined;
}

/** `sandbox_image = "..."` (containerd 1.x) and `sandbox = '...'` under pinned_images (containerd 2.x). */
export function parseContainerdSandbox(toml: string): string[] {
  const out: string[] = [];
  for (const m of toml.matchAll(/^[ \t]*(sandbox_image|sandbox)[ \t]*=[ \t]*["']([^"'\n]+)["']/gm)) out.push(m[2]!);
  return out;
}

/** `--pod-infra-container-image=X` or `--pod-infra-container-image X`, in a command line or a flags file. */
export function parseKubeletSandbox(text: string): string[] {
  return [...text.matchAll(/--pod-infra-container-image(?:=|[ \t\0]+)["']?([^\s"'\0]+)/g)].map((m) => m[1]!);
}

/**
 * The sandbox images this node is configured with, read under --host-root where readable: containerd's
 * config.toml (the default path and any --config on containerd's command line) and kubelet's
 * --pod-infra-container-image (its command line and the usual flags files). Unreadable sources are skipped.
 */
export async function configuredSandboxes(host: HostAccess): Promise<ConfiguredSandbox[]> {
  const out: ConfiguredSandbox[] = [];
  const read = async (p: string) => {
    try {
      return await host.readText(p);
    } catch {
      return undefined;
    }
  };
  const containerdConfigs = new Set(['/etc/containerd/config.toml']);
  const kubeletSources: { text: string; source: string }[] = [];
  for (const pid of await host.pids().catch(() => [] as number[])) {
    const comm = (await read(host.procPath(pid, 'comm')))?.trim();
    if (comm !== 'containerd' && comm !== 'kubelet') continue;
    const cmdline = (await read(host.procPath(pid, 'cmdline'))) ?? '';
    const args = cmdline.split('\0');
    if (comm === 'containerd') {
      const i = args.findIndex((a) => a === '--config' || a === '-c');
      const eq = args.find((a) => a.startsWith('--config='));
      const file = i >= 0 ? args[i + 1] : eq?.slice('--config='.length);
      if (file) containerdConfigs.add(file);
    } else kubeletSources.push({ text: cmdline, source: `kubelet's --pod-infra-container-image (pid ${pid})` });
  }
  for (const file of containerdConfigs) {
    const text = await read(host.hostPath(file));
    for (const ref of text ? parseContainerdSandbox(text) : []) out.push({ ref, source: `sandbox image in ${file}` });
  }
  for (const file of ['/var/lib/kubelet/kubeadm-flags.env', '/etc/default/kubelet', '/etc/sysconfig/kubelet']) {
    const text = await read(host.hostPath(file));
    if (text) kubeletSources.push({ text, source: `kubelet's --pod-infra-container-image in ${file}` });
  }
  for (const { text, source } of kubeletSources) for (const ref of parseKubeletSandbox(text)) out.push({ ref, source });
  return out;
}

export async function planDocker(rt: Runtimes, opts: PruneOptions): Promise<Plan> {
  const now = opts.now ?? Date.now();
  const [inventory, containers] = await Promise.all([dockerInventory(rt, opts.host, { dockerRoot: rt.settings.dockerRoot ?? '/var/lib/docker' }), rt.docker.containers()]);
  // Every container in any state (the list is all=1), pod sandboxes included, by image id and by name.
  const usedIds = new Set(containers.map((c) => c.ImageID));
  const usedNames = new Set(containers.map((c) => canonicalRef(c.Image)));
  const plan: Plan = { runtime: 'docker', candidates: [], kept: [] };
  for (const inv of inventory.images) {
    const img = inv.summary;
    const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    const digests = (img.RepoDigests ?? []).filter((d) => !d.startsWith('<none>'));
    const name = tags[0] ?? img.Id.slice(0, 19);
    if (!hasLabel(img.Labels, opts.label)) continue;
    const sandbox = sandboxReason([...tags, ...digests], opts.sandboxImages, opts.configuredSandboxes);
    const kept = (reason: string) => plan.kept.push({ image: name, reason, size: layeredSize(inv) });
    if (sandbox) kept(sandbox);
    else if (usedIds.has(img.Id) || [...tags, ...digests, img.Id].some((r) => usedNames.has(canonicalRef(r)))) kept('used by a container');
    else if (img.Created * 1000 > now - opts.untilMs) kept('newer than --until');
    else plan.candidates.push({ runtime: 'docker', id: img.Id, image: name, refs: tags.length > 1 ? tags : [img.Id], size: layeredSize(inv), createdMs: img.Created * 1000 });
  }
  // What each removal frees: its layers that no image staying uses, each once (du's reclaimable figure
  // is the same function over the same layers).
  const frees = imageFrees(inventory.images, plan.candidates.map((c) => c.id!));
  for (const c of plan.candidates) c.size = frees.perImage.get(c.id!) ?? c.size;
  return plan;
}

export async function planContainerd(rt: Runtimes, ns: string, opts: PruneOptions): Promise<Plan> {
  const now = opts.now ?? Date.now();
  // One image has several names in containerd (tag, repo@digest, sha256:id): the inventory groups them
  // by target, with its layers (snapshots and blobs) as du counts them.
  const { images, containers } = await readContainerdNamespace(rt, opts.host, containerdLayout(rt.settings.containerdRoot ?? '/var/lib/containerd', ns));
  // Containers in any state, pod sandboxes included (the CRI keeps them as containers too).
  const usedNames = new Set(containers.map((c) => canonicalRef(c.image)));
  const plan: Plan = { runtime: `containerd/${ns}`, candidates: [], kept: [] };
  for (const img of images) {
    const names = img.refs;
    const created = img.createdMs ?? now;
    if (!hasLabel(img.labels, opts.label)) continue;
    const sandbox = sandboxReason(names, opts.sandboxImages, opts.configuredSandboxes);
    // One size for every image, kept or removed: its layers, each once (the target's own size is the
    // manifest's, a few hundred bytes: a dry run showed 422B for a 1.9M image).
    const size = layeredSize(img);
    const kept = (reason: string) => plan.kept.push({ image: img.name, reason, size });
    if (sandbox) kept(sandbox);
    else if (img.containers.length > 0 || names.some((n) => usedNames.has(canonicalRef(n)))) kept('used by a container');
    else if (img.labels['io.cri-containerd.pinned'] === 'pinned') kept('pinned by the CRI');
    else if (created > now - opts.untilMs) kept('newer than --until');
    else plan.candidates.push({ runtime: 'containerd', id: img.id, image: img.name, refs: names, size, createdMs: created, namespace: ns });
  }
  // What each removal frees (du's reclaimable figure is the same function over the same layers).
  const frees = imageFrees(images, plan.candidates.map((c) => c.id!));
  for (const c of plan.candidates) c.size = frees.perImage.get(c.id!) ?? c.size;
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
        errors.push(`containerd namespace ${ns}: ${errorMessage(err)}`);
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
  // What stays, and why, first: one entry each up to KEPT_LISTED, then one line for the rest.
  const kept = plans.flatMap((p) => p.kept.map((k) => ({ ...k, runtime: p.runtime })));
  for (const k of kept.slice(0, KEPT_LISTED)) onProgress({ image: k.runtime === 'docker' ? k.image : `${k.image} (${k.runtime})`, size: k.size, state: 'kept', reason: k.reason, index: 0, total });
  if (kept.length > KEPT_LISTED) onProgress({ image: `${kept.length - KEPT_LISTED} more images`, size: kept.slice(KEPT_LISTED).reduce((n, k) => n + k.size, 0), state: 'kept', reason: 'not listed one by one', index: 0, total });
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
      const reason = err instanceof DockerError && err.statusCode === 409 ? `in use: ${err.message}` : errorMessage(err);
      errors.push(`${c.image}: ${reason}`);
      onProgress({ image: c.image, size: c.size, state: 'failed', reason, index, total });
    }
  }
  return { ok: errors.length === 0, dryRun: opts.dryRun, runtime: runtimes.join(','), removed, bytes, errors, kept: kept.length };
}
