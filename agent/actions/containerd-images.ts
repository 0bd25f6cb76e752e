// The node's containerd images with their layers, as du and prune count them (docker's are in
// images.ts): per namespace, each image (its names grouped by target) read from the content store
// (manifest, or the platform's manifest of an index; its config's rootfs.diff_ids -> chain ids), each
// layer's bytes from the snapshotter's Usage (key = chain id), its snapshot dir from the mounts of a
// container made from it (overlay's lowerdirs, top layer first), and its content blobs (config and
// layers, kept after unpacking unless the CRI discards them) as layers of their own. The parsing and the
// assembly are pure, apart from the one function that reads.
import { NodewardenError } from '../../protocol/errors.js';
import type { HostAccess } from '../../collectors/types.js';
import type { ImageLayer, InventoryImage } from '../../collectors/common/fillers.js';
import type { ContainerdContainer, ContainerdImage, ContainerdTask } from '../runtime/containerd.js';
import type { SnapshotDirs } from '../runtime/join.js';
import { snapshotDirsFromMounts } from '../runtime/join.js';
import type { Runtimes } from '../runtime/model.js';
import { chainIds } from './images.js';

/** A descriptor in a manifest: what the content store keeps under its digest. */
export interface Descriptor {
  digest: string;
  size: number;
}

export type ParsedManifest =
  | { kind: 'index'; manifests: (Descriptor & { os?: string; architecture?: string })[] }
  | { kind: 'manifest'; config: Descriptor; layers: Descriptor[] };

const bad = (what: string) => new NodewardenError('NW_ERR_PARSE', what);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const DIGEST = /^sha256:[0-9a-f]{64}$/;

function descriptor(v: unknown, where: string): Descriptor {
  if (!isRecord(v) || typeof v['digest'] !== 'string' || !DIGEST.test(v['digest'])) throw bad(`${where}: no sha256 digest`);
  const size = v['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad(`${where}: no size`);
  return { digest: v['digest'], size };
}

/** An image manifest (docker v2 or OCI) or an index of them (docker manifest list, OCI index). */
export function parseManifest(text: string): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw bad('manifest: not JSON');
  }
  if (!isRecord(doc)) throw bad('manifest: not an object');
  if (Array.isArray(doc['manifests'])) {
    return {
      kind: 'index',
      manifests: doc['manifests'].map((m, i) => {
        const d = descriptor(m, `manifest index entry ${i}`);
        const p = isRecord(m) && isRecord(m['platform']) ? m['platform'] : {};
        return { ...d, ...(typeof p['os'] === 'string' ? { os: p['os'] } : {}), ...(typeof p['architecture'] === 'string' ? { architecture: p['architecture'] } : {}) };
      }),
    };
  }
  if (!Array.isArray(doc['layers'])) throw bad('manifest: neither layers nor manifests');
  return { kind: 'manifest', config: descriptor(doc['config'], 'manifest config'), layers: doc['layers'].map((l, i) => descriptor(l, `manifest layer ${i}`)) };
}

/** Node's process.arch as OCI names it. */
export function ociArch(arch: string = process.arch): string {
  return arch === 'x64' ? 'amd64' : arch === 'ia32' ? '386' : arch;
}

/** The index's manifest for linux on this architecture; its first when none says (as containerd's default matcher falls back). */
export function pickPlatform(index: Extract<ParsedManifest, { kind: 'index' }>, arch: string = ociArch()): Descriptor | undefined {
  return index.manifests.find((m) => m.os === 'linux' && m.architecture === arch) ?? index.manifests[0];
}

/** An image config's rootfs.diff_ids: the uncompressed layers, base first. */
export function parseImageConfig(text: string): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw bad('image config: not JSON');
  }
  const rootfs = isRecord(doc) ? doc['rootfs'] : undefined;
  const ids = isRecord(rootfs) ? rootfs['diff_ids'] : undefined;
  if (!Array.isArray(ids) || !ids.every((d): d is string => typeof d === 'string' && DIGEST.test(d))) throw bad('image config: no rootfs.diff_ids');
  return ids;
}

/**
 * Each layer's snapshot dir from the lowerdirs of a snapshot made on top of the image (overlay lists
 * them top layer first): chain id -> snapshots/N. Undefined when the count does not match the chain (a
 * container made from another image of the same name).
 */
export function layerDirsFromLowerDirs(chain: readonly string[], lowerDirs: readonly string[]): Map<string, string> | undefined {
  if (lowerDirs.length !== chain.length || chain.length === 0) return undefined;
  const out = new Map<string, string>();
  lowerDirs.forEach((d, i) => out.set(chain[chain.length - 1 - i]!, d.replace(/\/fs\/?$/, '')));
  return out;
}

/** One image of a namespace as read: its names (one target, several names) and what the content store said. */
export interface ContainerdImageRead {
  /** The target digest (manifest or index). */
  digest: string;
  names: string[];
  labels: Record<string, string>;
  createdMs?: number;
  /** The platform manifest's config and layers (content blobs), when readable. */
  manifest?: { config: Descriptor; layers: Descriptor[] };
  /** Its layers' chain ids, base first, when the config was readable. */
  chain?: string[];
  /** Why the content store could not tell (then the image is one layer of the target's size). */
  error?: string;
  targetSize: number;
}

export interface ContainerdInventoryImage extends InventoryImage {
  namespace: string;
  /** Every name it has in the namespace (tag, repo@digest, sha256:id): prune deletes them all. */
  refs: string[];
  labels: Record<string, string>;
  createdMs?: number;
}

export interface ContainerdLayout {
  namespace: string;
  snapshotter: string;
  /** The snapshotter's dir of snapshot dirs (…/io.containerd.snapshotter.v1.overlayfs/snapshots). */
  snapshotsDir: string;
  /** The content store's blob dir (…/io.containerd.content.v1.content/blobs). */
  blobsDir: string;
}

/** Ids that never meet docker's: a chain id in containerd's snapshotter is other bytes than the same chain id in docker's layer store. */
export const containerdImageId = (ns: string, digest: string) => `containerd/${ns}/${digest}`;
const snapshotLayerId = (l: ContainerdLayout, chainId: string) => `containerd/${l.namespace}/${l.snapshotter}/${chainId}`;
// Blobs are one file per digest for every namespace: the same id everywhere, so a blob another image
// still uses is not freed by removing one (imageFrees).
const blobLayerId = (digest: string) => `containerd/content/${digest}`;

/** The shown name: the first tag that is neither an id nor a digest reference. */
export function shownName(names: readonly string[], digest: string): string {
  return names.find((n) => !n.startsWith('sha256:') && !n.includes('@')) ?? names[0] ?? digest;
}

/**
 * The inventory of one namespace from what was read: containers per image (by the image name they
 * were made from), those whose task runs, each image's layers (content blobs that exist, then its
 * snapshots base first: Usage bytes, the dir where a container's mounts told it, else only the
 * snapshots dir it is somewhere in), and why it is pinned.
 */
export function assembleContainerdInventory(
  layout: ContainerdLayout,
  images: readonly ContainerdImageRead[],
  containers: readonly Pick<ContainerdContainer, 'id' | 'image'>[],
  tasks: readonly Pick<ContainerdTask, 'containerId' | 'status'>[],
  usage: ReadonlyMap<string, number | undefined>,
  dirs: ReadonlyMap<string, string>,
  blobs: ReadonlyMap<string, number | undefined>,
  pinnedReason?: (refs: readonly string[]) => string | undefined,
): ContainerdInventoryImage[] {
  const running = new Set(tasks.filter((t) => t.status === 'RUNNING').map((t) => t.containerId));
  const byName = new Map<string, ContainerdImageRead>();
  for (const img of images) for (const n of img.names) byName.set(n, img);
  const users = new Map<string, string[]>();
  for (const c of containers) {
    const img = byName.get(c.image);
    if (img) users.set(img.digest, [...(users.get(img.digest) ?? []), c.id]);
  }
  return images.map((img) => {
    const id = containerdImageId(layout.namespace, img.digest);
    const layers: ImageLayer[] = [];
    if (img.manifest) {
      for (const d of [img.manifest.config, ...img.manifest.layers]) {
        // On disk: its allocated bytes (du's `used` counts blocks; a 1 KB config blob takes 4 KiB), the
        // descriptor's size when they could not be read.
        if (blobs.has(d.digest)) layers.push({ id: blobLayerId(d.digest), bytes: blobs.get(d.digest) ?? d.size, dir: `${layout.blobsDir}/${d.digest.replace(':', '/')}` });
      }
    }
    for (const chainId of img.chain ?? []) {
      const bytes = usage.get(chainId);
      if (bytes === undefined) continue; // not unpacked for this snapshotter: nothing of it on disk there
      const dir = dirs.get(chainId);
      layers.push({ id: snapshotLayerId(layout, chainId), bytes, ...(dir ? { dir } : { within: layout.snapshotsDir }) });
    }
    if (layers.length === 0 && (img.error || !img.chain)) layers.push({ id: `image:${id}`, bytes: img.targetSize });
    const mine = users.get(img.digest) ?? [];
    const pinned = pinnedReason?.(img.names) ?? (img.labels['io.cri-containerd.pinned'] === 'pinned' ? 'pinned by the CRI' : undefined);
    return {
      id,
      name: shownName(img.names, img.digest),
      layers,
      ...(pinned ? { pinned } : {}),
      containers: mine,
      running: mine.filter((c) => running.has(c)),
      namespace: layout.namespace,
      refs: img.names,
      labels: img.labels,
      ...(img.createdMs !== undefined ? { createdMs: img.createdMs } : {}),
    };
  });
}

/** Groups Images/List by target: one image, several names; its labels merged, its earliest creation. */
export function groupImages(list: readonly ContainerdImage[]): { digest: string; names: string[]; labels: Record<string, string>; createdMs?: number; target: ContainerdImage['target'] }[] {
  const groups = new Map<string, ContainerdImage[]>();
  for (const img of list) groups.set(img.target.digest, [...(groups.get(img.target.digest) ?? []), img]);
  return [...groups].map(([digest, group]) => {
    const created = group.flatMap((g) => (g.createdAt ? [Date.parse(g.createdAt)] : [])).filter((n) => Number.isFinite(n));
    return {
      digest,
      names: group.map((g) => g.name),
      labels: Object.assign({}, ...group.map((g) => g.labels)) as Record<string, string>,
      ...(created.length ? { createdMs: Math.min(...created) } : {}),
      target: group[0]!.target,
    };
  });
}

export interface ContainerdInventoryOptions {
  /** containerd's data root on the host (runtime.containerdRoot). */
  containerdRoot: string;
  /** The namespaces to read (prune.containerdNamespaces). */
  namespaces: readonly string[];
  /** The CRI's snapshotter (overlayfs unless configured otherwise). */
  snapshotter?: string;
  pinnedReason?: (refs: readonly string[]) => string | undefined;
}

/** Reads a manifest (the platform's, through an index) and its config's chain ids. */
async function readImage(rt: Runtimes, ns: string, digest: string): Promise<{ manifest: { config: Descriptor; layers: Descriptor[] }; chain: string[] }> {
  let m = parseManifest((await rt.containerd.readBlob(ns, digest)).toString('utf8'));
  if (m.kind === 'index') {
    const pick = pickPlatform(m);
    if (!pick) throw bad(`index ${digest} lists no manifest`);
    m = parseManifest((await rt.containerd.readBlob(ns, pick.digest)).toString('utf8'));
    if (m.kind === 'index') throw bad(`index ${digest} points at another index`);
  }
  return { manifest: m, chain: chainIds(parseImageConfig((await rt.containerd.readBlob(ns, m.config.digest)).toString('utf8'))) };
}

/** One namespace's images, read. Every call has the client's timeout; one that fails leaves that image or layer out, not the namespace. */
export async function readContainerdNamespace(
  rt: Runtimes,
  host: HostAccess | undefined,
  layout: ContainerdLayout,
  pinnedReason?: (refs: readonly string[]) => string | undefined,
): Promise<{ images: ContainerdInventoryImage[]; containers: ContainerdContainer[] }> {
  const [list, containers, tasks] = await Promise.all([rt.containerd.images(layout.namespace), rt.containerd.containers(layout.namespace), rt.containerd.tasks(layout.namespace)]);
  const groups = groupImages(list);
  const reads: ContainerdImageRead[] = await Promise.all(
    groups.map(async (g): Promise<ContainerdImageRead> => {
      const base = { digest: g.digest, names: g.names, labels: g.labels, targetSize: g.target.size, ...(g.createdMs !== undefined ? { createdMs: g.createdMs } : {}) };
      try {
        return { ...base, ...(await readImage(rt, layout.namespace, g.digest)) };
      } catch (err) {
        return { ...base, error: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
  const chains = [...new Set(reads.flatMap((r) => r.chain ?? []))];
  const usage = new Map<string, number | undefined>();
  await Promise.all(
    chains.map(async (c) => {
      const u = await rt.containerd.snapshotUsage(layout.namespace, layout.snapshotter, c).catch(() => undefined);
      usage.set(c, u?.size);
    }),
  );
  // A committed snapshot's dir is not in any reply for it (Mounts refuses committed snapshots, Stat
  // has no id): it is known from the lowerdirs of a container's snapshot on top of it, one container
  // per image. Layers of images no container uses stay dirless, counted by Usage (see fillers.ts).
  const byName = new Map<string, ContainerdImageRead>();
  for (const r of reads) for (const n of r.names) byName.set(n, r);
  const onePer = new Map<string, ContainerdContainer>();
  for (const c of containers) {
    const img = byName.get(c.image);
    if (img?.chain && c.snapshotter === layout.snapshotter && c.snapshotKey && !onePer.has(img.digest)) onePer.set(img.digest, c);
  }
  const dirs = new Map<string, string>();
  await Promise.all(
    [...onePer].map(async ([digest, c]) => {
      let got: SnapshotDirs;
      try {
        got = snapshotDirsFromMounts(await rt.containerd.snapshotMounts(layout.namespace, c.snapshotter, c.snapshotKey));
      } catch {
        return;
      }
      const chain = byName.get(c.image)?.chain ?? reads.find((r) => r.digest === digest)?.chain ?? [];
      for (const [k, v] of layerDirsFromLowerDirs(chain, got.lowerDirs ?? []) ?? []) dirs.set(k, v);
    }),
  );
  const blobs = new Map<string, number | undefined>();
  if (host) {
    const digests = [...new Set(reads.flatMap((r) => (r.manifest ? [r.manifest.config, ...r.manifest.layers].map((d) => d.digest) : [])))];
    await Promise.all(
      digests.map(async (d) => {
        const p = host.hostPath(`${layout.blobsDir}/${d.replace(':', '/')}`);
        const used = await host.allocatedBytes(p);
        if (used !== undefined) blobs.set(d, used);
        else if (await host.exists(p)) blobs.set(d, undefined);
      }),
    );
  }
  return { images: assembleContainerdInventory(layout, reads, containers, tasks, usage, dirs, blobs, pinnedReason), containers };
}

export interface ContainerdInventory {
  images: ContainerdInventoryImage[];
  /** Namespaces that could not be read, with why. */
  errors: string[];
}

/** Where a namespace's snapshots and blobs are under containerd's data root. */
export function containerdLayout(containerdRoot: string, namespace: string, snapshotter = 'overlayfs'): ContainerdLayout {
  const root = containerdRoot.replace(/\/+$/, '');
  return { namespace, snapshotter, snapshotsDir: `${root}/io.containerd.snapshotter.v1.${snapshotter}/snapshots`, blobsDir: `${root}/io.containerd.content.v1.content/blobs` };
}

/** Every configured namespace's images; a namespace that fails is an error beside the others. */
export async function containerdInventory(rt: Runtimes, host: HostAccess | undefined, opts: ContainerdInventoryOptions): Promise<ContainerdInventory> {
  const out: ContainerdInventory = { images: [], errors: [] };
  await Promise.all(
    opts.namespaces.map(async (namespace) => {
      try {
        out.images.push(...(await readContainerdNamespace(rt, host, containerdLayout(opts.containerdRoot, namespace, opts.snapshotter), opts.pinnedReason)).images);
      } catch (err) {
        out.errors.push(`containerd namespace ${namespace}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }),
  );
  return out;
}
