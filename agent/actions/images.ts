// The node's docker images with their layers, as du and prune count them: each layer by its chain id
// (what docker's layer store is keyed by, so two images built on one base share its layers' ids), its
// size from docker's layer store (/var/lib/docker/image/DRIVER/layerdb/sha256/CHAIN/size, the bytes of
// the layer's files, read under --host-root) and its directory (cache-id). Where the layer store cannot
// be read, an image is one layer of docker's Size, as before.
import { createHash } from 'node:crypto';
import type { HostAccess } from '../../collectors/types.js';
import type { ImageLayer, InventoryImage } from '../../collectors/common/fillers.js';
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
