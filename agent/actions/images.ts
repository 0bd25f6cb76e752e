// The node's docker images with their layers, as du and prune count them: each layer by its chain id
// (what docker's layer store is keyed by, so two images built on one base share its layers' ids), its
// size from docker's layer store (/var/lib/docker/image/DRIVER/layerdb/sha256/CHAIN/size, the bytes of
// the layer's files, read under --host-root) and its directory (cache-id). Where the layer store cannot
// be read, an image is one layer of docker's Size, as before.
//
// The layer store's size is apparent bytes (the sum of its files' lengths), while a filesystem's used
// bytes count allocated blocks: a layer of many small files (node_modules) takes several times its
// apparent size, and du's table did not add up on a node holding a few such images. So each layer dir
// is walked once for its allocated bytes (measureLayers) and remembered by layer: an image layer's dir
// never changes while the layer exists.
import { createHash } from 'node:crypto';
import type { HostAccess } from '../../collectors/types.js';
import type { ImageLayer, InventoryImage, TreeWalker } from '../../collectors/common/fillers.js';
import { createTreeWalker } from '../host/attrs.js';
import type { DockerImageSummary } from '../runtime/docker.js';
import type { Runtimes } from '../runtime/model.js';

/** Docker's chain ids of a stack of diff ids: chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " + diff(n)). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

export interface DockerInventory {
  images: (InventoryImage & { summary: DockerImageSummary; refs: string[] })[];
  /** True when every image's layers came from the layer store; false when some are docker's Size. */
  layered: boolean;
}

/** The first tag, or the short id. */
export function imageName(img: Pick<DockerImageSummary, 'Id' | 'RepoTags'>): string {
  return (img.RepoTags ?? []).find((t) => t !== '<none>:<none>') ?? img.Id.replace(/^sha256:/, '').slice(0, 12);
}

export interface InventoryOptions {
  /** dockerd's data root on the host (runtime.dockerRoot). */
  dockerRoot: string;
  /** Why an image with these names is never removed (prune's sandboxReason), or undefined. */
  pinnedReason?: (refs: readonly string[]) => string | undefined;
  /** The walk that measures layer dirs' allocated bytes (default: the native one; undefined keeps the layer store's sizes). */
  walker?: TreeWalker | undefined;
}

/** Allocated bytes of layer dirs already walked, by layer id and dir: a layer's files never change. */
const layerCache = new Map<string, number>();
const LAYER_CACHE_MAX = 50_000;
/** The layer walk's deadline: past it, the layer store's sizes stay. */
export const LAYER_WALK_MS = 60_000;

/**
 * Replaces each layer's bytes with the allocated bytes of its dir (one walk of the dirs not measured
 * before; each dir as its own root), in place. A dir the walk could not measure (missing, on another
 * device, the walk cut short) keeps the size it had. Returns how many layers were walked this time.
 */
export async function measureLayers(layers: ImageLayer[], host: HostAccess, walker: TreeWalker | undefined, cache: Map<string, number> = layerCache): Promise<number> {
  const key = (l: ImageLayer) => `${l.id}\0${l.dir}`;
  const withDir = layers.filter((l) => l.dir);
  const todo = [...new Map(withDir.filter((l) => !cache.has(key(l))).map((l) => [l.dir!, l])).values()];
  if (todo.length > 0 && walker) {
    const walked = await walker.walk(
      todo.map((l) => host.hostPath(l.dir!)),
      { threads: 4, timeoutMs: LAYER_WALK_MS, maxEntries: 20_000_000, excludes: [], devices: todo.map(() => null) },
    );
    if (walked.partial === null) {
      todo.forEach((l, i) => {
        const w = walked.roots[i];
        if (w && (w.kind === 'dir' || w.kind === 'file')) cache.set(key(l), w.bytes);
      });
    }
  }
  for (const l of withDir) {
    const bytes = cache.get(key(l));
    if (bytes !== undefined) l.bytes = bytes;
  }
  // Forget layers gone from the node (the cache is shared by du and prune: only when it grows large).
  if (cache.size > LAYER_CACHE_MAX) {
    const live = new Set(withDir.map(key));
    for (const k of cache.keys()) if (!live.has(k)) cache.delete(k);
  }
  return walker ? todo.length : 0;
}

export async function dockerInventory(rt: Runtimes, host: HostAccess | undefined, opts: InventoryOptions): Promise<DockerInventory> {
  const [summaries, containers] = await Promise.all([rt.docker.images(), rt.docker.containers()]);
  const root = opts.dockerRoot.replace(/\/+$/, '');
  let layered = true;
  const images: DockerInventory['images'] = [];
  // Each image's inspect and layer store reads, all at once (one-shot du waits on them).
  const layersOf = async (summary: DockerImageSummary): Promise<ImageLayer[] | undefined> => {
    if (!host) return undefined;
    try {
      const ins = await rt.docker.inspectImage(summary.Id);
      const driver = ins.GraphDriver.Name;
      const chain = chainIds(ins.RootFS?.Layers ?? []);
      if (chain.length === 0) return undefined;
      return await Promise.all(
        chain.map(async (id) => {
          const base = `${root}/image/${driver}/layerdb/sha256/${id.replace(/^sha256:/, '')}`;
          const [size, cache] = await Promise.all([host.readText(host.hostPath(`${base}/size`)), host.readText(host.hostPath(`${base}/cache-id`))]);
          if (size === undefined || !/^\d+$/.test(size.trim())) throw new Error(`no size for layer ${id}`);
          return { id, bytes: Number(size.trim()), ...(cache?.trim() ? { dir: `${root}/${driver}/${cache.trim()}` } : {}) };
        }),
      );
    } catch {
      return undefined;
    }
  };
  const read = await Promise.all(summaries.map(layersOf));
  if (host) await measureLayers(read.flatMap((ls) => ls ?? []), host, 'walker' in opts ? opts.walker : createTreeWalker());
  summaries.forEach((summary, i) => {
    const refs = [...(summary.RepoTags ?? []), ...(summary.RepoDigests ?? [])].filter((r) => !r.startsWith('<none>'));
    let layers = read[i];
    if (!layers) {
      layered = false;
      layers = [{ id: `image:${summary.Id}`, bytes: summary.Size }];
    }
    const pinned = opts.pinnedReason?.(refs);
    images.push({
      id: summary.Id,
      name: imageName(summary),
      layers,
      ...(pinned ? { pinned } : {}),
      containers: containers.filter((c) => c.ImageID === summary.Id).map((c) => c.Id),
      summary,
      refs,
    });
  });
  return { images, layered };
}
