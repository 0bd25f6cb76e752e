// What fills a node's filesystems: writable layers, container logs, emptyDir volumes, images (in use,
// held by stopped containers, pinned, reclaimable) and the rest, per filesystem that matters (nodefs,
// imagefs, any other over its warning), adding up to what statfs says is used. `nodewarden du` prints it;
// the pure parts (which roots to walk, how images share layers, how the table adds up) are apart from
// the one function that reads, so a collector view can reuse both.
import { buildRows, selectFilesystems, type DiskConfig, type DiskRow } from '../disk.js';
import { mountFor, parseMountinfo } from './mountinfo.js';
import type { HostAccess, RuntimeAccess, RuntimeContainer } from '../types.js';

export const CONSUMER_KINDS = ['writable-layer', 'logs', 'emptydir', 'image-in-use', 'image-held', 'image-pinned', 'image-reclaimable', 'other'] as const;
export type ConsumerKind = (typeof CONSUMER_KINDS)[number];

export interface Consumer {
  kind: ConsumerKind;
  /** Allocated bytes (st_blocks * 512, as du counts), hard links once; for images, the bytes of their layers. */
  bytes: number;
  /** Host path (not under --host-root). */
  path: string;
  /** The mount point of the filesystem it is on. */
  filesystem: string;
  /** namespace/name */
  pod?: string;
  container?: string;
  image?: string;
  /** An emptyDir's volume name. */
  volume?: string;
  /** For `other`: how many smaller paths this row sums (the rest of the filesystem). */
  rest?: number;
  /**
   * For `other`: bytes taken off what the walk found, image layers under it counted by their images (a
   * snapshots dir whose layers' own dirs are not known). Such a row is not refreshed incrementally: a
   * refresh would count them again.
   */
  less?: number;
  /** Files and directories the walk counted under it (walked rows; a summed row, all of its paths'). */
  entries?: number;
}

export type FilesystemRole = 'nodefs' | 'imagefs' | 'over-warning';

export interface FilesystemFill {
  mountPoint: string;
  device: string;
  fsType: string;
  source: string;
  roles: FilesystemRole[];
  size: number;
  used: number;
  avail: number;
  usePercent: number;
  /** Sum of the consumers on it. */
  attributed: number;
  /** used - attributed: filesystem metadata, files deleted but still open, what changed during the walk. */
  unattributed: number;
  /** The table adds up to `used` within this many bytes (see FILL_MARGIN). */
  margin: number;
}

export interface Fillers {
  filesystems: FilesystemFill[];
  consumers: Consumer[];
  /** Set when the walk stopped early (deadline or entry budget) or could not run: the numbers are low. */
  partial?: { reason: 'deadline' | 'budget' | 'stuck' | 'no-walker'; detail: string };
  entries: number;
  errors: number;
  /** Things the reader should know (a memory-backed emptyDir skipped, a runtime that did not answer). */
  notes: string[];
}

/** One layer of an image: its id (docker's chain id) and the bytes its files hold. */
export interface ImageLayer {
  id: string;
  bytes: number;
  /** Host directory (or file) of the layer, when known (excluded from the walk: the layer is counted by its image). */
  dir?: string;
  /**
   * When its own dir is not known: the directory it is somewhere under (containerd's snapshots dir, for
   * a layer no container sits on). That directory's other rows are then one row less these bytes.
   */
  within?: string;
}

export interface LayeredImage {
  id: string;
  /** Its first tag, or its short id. */
  name: string;
  layers: ImageLayer[];
}

/** An image as du classifies it: why it stays or could go. */
export interface InventoryImage extends LayeredImage {
  /** Why it is never removable (a sandbox image, pinned by the CRI), or undefined. */
  pinned?: string;
  /** Ids of the containers (any state, pod sandboxes too) made from it. */
  containers: string[];
  /** Those of them whose task runs, as the runtime that listed them said: for containers the snapshot does not know. */
  running?: string[];
}

/** The images of the node's runtimes, with their layers and notes (a runtime that could not tell); undefined when none can. */
export type ImageInventory = () => Promise<{ images: InventoryImage[]; notes: string[] } | undefined>;

/**
 * What removing the images `removing` (in that order) frees: each layer no other image uses, counted
 * once, to the first of them that has it. `prune --dry-run` and `du`'s reclaimable figure both come from
 * here, so they agree: docker's own image Size counts a shared base layer in every image built on it.
 */
export function imageFrees(images: readonly LayeredImage[], removing: readonly string[]): { perImage: Map<string, number>; total: number } {
  const going = new Set(removing);
  const kept = new Set<string>();
  for (const img of images) if (!going.has(img.id)) for (const l of img.layers) kept.add(l.id);
  const byId = new Map(images.map((i) => [i.id, i]));
  const counted = new Set<string>();
  const perImage = new Map<string, number>();
  let total = 0;
  for (const id of removing) {
    let bytes = 0;
    for (const l of byId.get(id)?.layers ?? []) {
      if (kept.has(l.id) || counted.has(l.id)) continue;
      counted.add(l.id);
      bytes += l.bytes;
    }
    perImage.set(id, bytes);
    total += bytes;
  }
  return { perImage, total };
}

/** An image's size with every layer once (a layer listed twice in one image is one layer on disk). */
export function imageSize(img: LayeredImage): number {
  const seen = new Set<string>();
  let n = 0;
  for (const l of img.layers) if (!seen.has(l.id)) (seen.add(l.id), (n += l.bytes));
  return n;
}

export type ImageClass = 'in-use' | 'held' | 'pinned' | 'reclaimable';
const CLASS_ORDER: readonly ImageClass[] = ['in-use', 'held', 'pinned', 'reclaimable'];

/**
 * Each image's class (used by a running container, held by a stopped one, pinned, or reclaimable) and
 * the bytes it is charged: a layer shared by images of several classes goes to the strongest (in use
 * before held before pinned before reclaimable), once, to the first image of that class that has it.
 * The reclaimable images' bytes are imageFrees of all of them: what a prune of them would free.
 */
export function classifyImages(images: readonly InventoryImage[], running: ReadonlySet<string>, stopped: ReadonlySet<string>): { image: InventoryImage; class: ImageClass; bytes: number }[] {
  const classOf = (img: InventoryImage): ImageClass => (running.has(img.id) ? 'in-use' : stopped.has(img.id) ? 'held' : img.pinned ? 'pinned' : 'reclaimable');
  const rows = images.map((image) => ({ image, class: classOf(image), bytes: 0 }));
  const owner = new Map<string, ImageClass>();
  for (const cls of CLASS_ORDER) for (const r of rows) if (r.class === cls) for (const l of r.image.layers) if (!owner.has(l.id)) owner.set(l.id, cls);
  const counted = new Set<string>();
  for (const cls of CLASS_ORDER) {
    const members = rows.filter((r) => r.class === cls);
    if (cls === 'reclaimable') {
      const frees = imageFrees(images, members.map((r) => r.image.id));
      for (const r of members) r.bytes = frees.perImage.get(r.image.id) ?? 0;
      continue;
    }
    for (const r of members) {
      for (const l of r.image.layers) {
        if (owner.get(l.id) !== cls || counted.has(l.id)) continue;
        counted.add(l.id);
        r.bytes += l.bytes;
      }
    }
  }
  return rows;
}

/** `/var/log/pods/NAMESPACE_NAME_UID`: the pod a log dir is for. */
export function parsePodLogDir(name: string): { namespace: string; pod: string; uid: string } | undefined {
  const m = /^([^_]+)_(.+)_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i.exec(name);
  return m ? { namespace: m[1]!, pod: m[2]!, uid: m[3]! } : undefined;
}

/** The layer directory of a writable layer: docker's overlay2/ID for overlay2/ID/diff, containerd's snapshots/N for snapshots/N/fs. */
export function layerDirOf(upperDir: string): string {
  return upperDir.replace(/\/(diff|fs)\/?$/, '');
}

/** One directory the walk measures, and what it is. */
export interface Root {
  path: string;
  kind: ConsumerKind;
  pod?: string;
  container?: string;
  image?: string;
  volume?: string;
}

/**
 * The rest of a filesystem as roots to measure: the entries of its mount point, except that a directory
 * holding something attributed (or excluded) is opened and its entries taken instead, down to the
 * largest subtrees that hold none of it (/var/log/journal beside /var/log/pods). `list` gives a
 * directory's names, or undefined when it is not one.
 */
export async function otherRoots(mountPoint: string, taken: readonly string[], list: (dir: string) => Promise<string[] | undefined>): Promise<string[]> {
  const norm = (p: string) => (p.length > 1 ? p.replace(/\/+$/, '') : p);
  const takenSet = new Set(taken.map(norm));
  const holds = (dir: string) => {
    const prefix = dir === '/' ? '/' : `${dir}/`;
    for (const t of takenSet) if (t.startsWith(prefix)) return true;
    return false;
  };
  const out: string[] = [];
  const open = async (dir: string): Promise<void> => {
    for (const name of (await list(dir)) ?? []) {
      const child = dir === '/' ? `/${name}` : `${dir}/${name}`;
      if (takenSet.has(child)) continue;
      if (holds(child)) await open(child);
      else out.push(child);
    }
  };
  await open(norm(mountPoint));
  return out;
}

/** The table adds up to the filesystem's used bytes within 2 % of them plus 64 MiB (metadata, churn). */
export function fillMargin(used: number): number {
  return Math.round(used * 0.02) + 64 * 1024 * 1024;
}

/** `other` rows shown one by one per filesystem; the rest are summed into one row. */
export const OTHER_ROWS = 15;

export interface WalkRootResult {
  bytes: number;
  entries: number;
  dev: string | null;
  kind: 'missing' | 'dir' | 'file' | 'other' | 'elsewhere';
}

export interface WalkResult {
  roots: WalkRootResult[];
  entries: number;
  errors: number;
  partial: null | 'deadline' | 'budget' | 'stuck';
}

/** The du walk (the native module): allocated bytes per root, same-device only, no symlinks, hard links once. */
export interface TreeWalker {
  walk(
    roots: readonly string[],
    opts: { threads: number; timeoutMs: number; maxEntries: number; excludes: readonly string[]; devices: readonly (string | null)[] },
  ): Promise<WalkResult>;
}

export interface FillersSettings {
  kubeletRootDir: string;
  podLogsDir: string;
  disk: DiskConfig;
  timeoutMs: number;
  maxEntries: number;
  threads: number;
}

export interface FillersInput {
  host: HostAccess;
  runtime: RuntimeAccess;
  walker: TreeWalker | undefined;
  images?: ImageInventory;
  settings: FillersSettings;
}

const podOf = (c: RuntimeContainer): string | undefined => (c.workload.pod ? `${c.workload.namespace ?? ''}/${c.workload.pod}` : undefined);
const isRunning = (c: RuntimeContainer): boolean => c.docker?.running ?? c.containerd?.task?.status === 'RUNNING';

/** The filesystems that matter: nodefs, imagefs, and every other one over its usage warning. */
export function fillFilesystems(rows: readonly DiskRow[], kubeletRootDir: string | undefined, runtimeRoot: string | undefined, warning: number): { row: DiskRow; roles: FilesystemRole[] }[] {
  const points = rows.flatMap((row) => [row.mountPoint, ...row.alsoAt].map((mountPoint) => ({ mountPoint, row })));
  const out = new Map<DiskRow, FilesystemRole[]>();
  const add = (row: DiskRow | undefined, role: FilesystemRole) => {
    if (!row || row.status !== 'ok') return;
    out.set(row, [...(out.get(row) ?? []), role]);
  };
  if (kubeletRootDir) add(mountFor(points, kubeletRootDir)?.row, 'nodefs');
  if (runtimeRoot) add(mountFor(points, runtimeRoot)?.row, 'imagefs');
  for (const r of rows) if ((r.usePercent ?? 0) > warning && !out.has(r)) add(r, 'over-warning');
  return [...out].map(([row, roles]) => ({ row, roles }));
}

/**
 * Reads the node and measures: mountinfo and statfs for the filesystems, the runtime's containers and
 * images, the kubelet and log dirs for the roots, then one walk of them all.
 */
export async function measureFillers(input: FillersInput): Promise<Fillers> {
  const { host, runtime, settings } = input;
  const notes: string[] = [];
  // The runtime's containers and its images are asked while the filesystems are read.
  const snapshot = runtime.snapshot();
  const images = input.images ? input.images() : Promise.resolve(undefined);
  images.catch(() => undefined);
  const raw = (await host.readBytes(host.procPath('1', 'mountinfo'))) ?? (await host.readBytes(host.procPath('self', 'mountinfo')));
  const mounts = raw ? parseMountinfo(raw) : [];
  const selected = selectFilesystems(mounts, settings.disk);
  const rows = buildRows(selected, await host.statfs(selected.map((x) => x.mount.mountPoint), settings.disk.statfsTimeout));
  for (const r of rows) if (r.status === 'unresponsive') notes.push(`${r.mountPoint} does not answer statfs: not measured`);
  const kubelet = (await host.exists(host.hostPath(settings.kubeletRootDir))) ? settings.kubeletRootDir : undefined;
  let runtimeRoot: string | undefined;
  for (const r of settings.disk.eviction.runtimeRootDirs) {
    if (await host.exists(host.hostPath(r))) {
      runtimeRoot = r;
      break;
    }
  }
  const chosen = fillFilesystems(rows, kubelet, runtimeRoot, settings.disk.usage.warning);
  const chosenRows = new Set(chosen.map((c) => c.row));
  // Only the filesystems chosen: a path on another one (a bind mount elsewhere) is not measured here.
  const all = rows.flatMap((row) => [row.mountPoint, ...row.alsoAt].map((mountPoint) => ({ mountPoint, row })));
  const fsOf = (p: string): DiskRow | undefined => {
    const row = mountFor(all, p)?.row;
    return row && chosenRows.has(row) ? row : undefined;
  };

  const snap = await snapshot;
  for (const st of snap.runtimes) if (st.status !== 'ok' && st.status !== 'absent') notes.push(`${st.name} is ${st.status}${st.error ? ` (${st.error})` : ''}: its containers and images may be missing`);

  const roots: Root[] = [];
  const seen = new Set<string>();
  const addRoot = (r: Root) => {
    if (seen.has(r.path) || !fsOf(r.path)) return;
    seen.add(r.path);
    roots.push(r);
  };
  const podsByUid = new Map<string, string>();
  for (const c of snap.containers) {
    const who = { ...(podOf(c) ? { pod: podOf(c)! } : {}), container: c.workload.containerName, image: c.image };
    if (c.workload.podUid && podOf(c)) podsByUid.set(c.workload.podUid, podOf(c)!);
    if (c.storage.upperDir) addRoot({ path: layerDirOf(c.storage.upperDir), kind: 'writable-layer', ...who });
    if (c.manager === 'docker' && c.storage.containerDir) addRoot({ path: c.storage.containerDir, kind: 'logs', ...who });
  }
  // kubelet's pod logs: NAMESPACE_NAME_UID/CONTAINER/N.log
  const podLogs = settings.podLogsDir.replace(/\/+$/, '');
  for (const dir of (await host.list(host.hostPath(podLogs))) ?? []) {
    const p = parsePodLogDir(dir);
    if (p) podsByUid.set(p.uid, podsByUid.get(p.uid) ?? `${p.namespace}/${p.pod}`);
    const containers = (await host.list(host.hostPath(`${podLogs}/${dir}`))) ?? [];
    for (const name of containers) addRoot({ path: `${podLogs}/${dir}/${name}`, kind: 'logs', ...(p ? { pod: `${p.namespace}/${p.pod}` } : {}), container: name });
  }
  const kubeletPods = `${settings.kubeletRootDir.replace(/\/+$/, '')}/pods`;
  const emptyDirs: Root[] = [];
  for (const uid of (kubelet && (await host.list(host.hostPath(kubeletPods)))) || []) {
    const base = `${kubeletPods}/${uid}/volumes/kubernetes.io~empty-dir`;
    for (const name of (await host.list(host.hostPath(base))) ?? []) {
      const pod = podsByUid.get(uid);
      emptyDirs.push({ path: `${base}/${name}`, kind: 'emptydir', ...(pod ? { pod } : {}), volume: name });
    }
  }
  for (const r of emptyDirs) addRoot(r);

  // Images: counted from their layers' sizes; their layer dirs are not walked (see imageFrees).
  const listed = await images;
  const inventory = listed?.images;
  if (listed) notes.push(...listed.notes);
  const imageRows: Consumer[] = [];
  const layerDirs: string[] = [];
  // Layers whose dir is not known, by the dir they are somewhere under: each once, their bytes.
  const hidden = new Map<string, { bytes: number; layers: number }>();
  if (inventory) {
    const running = new Set<string>();
    const stopped = new Set<string>();
    const usedBy = new Map<string, RuntimeContainer[]>();
    const byId = new Map(snap.containers.map((c) => [c.id, c]));
    for (const img of inventory) {
      for (const id of img.containers) {
        const c = byId.get(id);
        // A container the snapshot does not know (made since, or in a namespace it does not read)
        // still holds its image; the runtime that listed it says whether it runs.
        if (c ? isRunning(c) : img.running?.includes(id)) running.add(img.id);
        else stopped.add(img.id);
        if (c) usedBy.set(img.id, [...(usedBy.get(img.id) ?? []), c]);
      }
    }
    const hiddenSeen = new Set<string>();
    for (const img of inventory) {
      for (const l of img.layers) {
        if (l.dir) layerDirs.push(l.dir);
        else if (l.within && !hiddenSeen.has(l.id)) {
          hiddenSeen.add(l.id);
          const h = hidden.get(l.within) ?? { bytes: 0, layers: 0 };
          hidden.set(l.within, { bytes: h.bytes + l.bytes, layers: h.layers + 1 });
        }
      }
    }
    for (const r of classifyImages(inventory, running, stopped)) {
      const top = [...r.image.layers].reverse().find((l) => l.dir || l.within);
      const dir = top?.dir ?? top?.within ?? runtimeRoot ?? '/';
      const fs = fsOf(dir);
      if (!fs) continue;
      const users = usedBy.get(r.image.id) ?? [];
      const one = users.length === 1 ? users[0] : undefined;
      imageRows.push({
        kind: `image-${r.class}`,
        bytes: r.bytes,
        path: dir,
        filesystem: fs.mountPoint,
        image: r.image.name,
        ...(one && podOf(one) ? { pod: podOf(one)! } : {}),
        ...(one ? { container: one.workload.containerName } : {}),
      });
    }
  } else if (input.images) notes.push('no runtime listed its images: images are counted with the rest');

  // The rest of each filesystem: its largest subtrees that hold nothing attributed. A dir holding layers
  // whose own dirs are not known is one root of its own (the known ones inside it excluded), less their bytes.
  const hiddenDirs = [...hidden.keys()].filter((d) => fsOf(d));
  const taken = [...roots.map((r) => r.path), ...emptyDirs.map((r) => r.path), ...layerDirs, ...hiddenDirs];
  const others: { path: string; fs: DiskRow; less?: number }[] = [];
  for (const { row } of chosen) {
    const mine = taken.filter((p) => fsOf(p) === row);
    for (const p of await otherRoots(row.mountPoint, mine, (d) => host.list(host.hostPath(d)))) if (fsOf(p) === row) others.push({ path: p, fs: row });
  }
  for (const d of hiddenDirs) {
    const h = hidden.get(d)!;
    others.push({ path: d, fs: fsOf(d)!, less: h.bytes });
    notes.push(`${h.layers} image layer${h.layers === 1 ? '' : 's'} under ${d} that no container sits on ${h.layers === 1 ? 'is' : 'are'} counted by the runtime's own size (it does not say which dir is whose); the rest of ${d} is one row`);
  }

  const walkPaths = [...roots.map((r) => r.path), ...others.map((o) => o.path)];
  const devices = [...roots.map((r) => fsOf(r.path)?.device ?? null), ...others.map((o) => o.fs.device)];
  let walked: WalkResult;
  let partial: Fillers['partial'];
  if (!input.walker) {
    walked = { roots: walkPaths.map(() => ({ bytes: 0, entries: 0, dev: null, kind: 'missing' })), entries: 0, errors: 0, partial: null };
    partial = { reason: 'no-walker', detail: 'the native module is not built (npm rebuild): nothing was walked' };
  } else {
    walked = await input.walker.walk(
      walkPaths.map((p) => host.hostPath(p)),
      { threads: settings.threads, timeoutMs: settings.timeoutMs, maxEntries: settings.maxEntries, excludes: [...new Set([...taken, ...layerDirs])].map((p) => host.hostPath(p)), devices },
    );
    if (walked.partial === 'deadline') partial = { reason: 'deadline', detail: `the walk stopped at its ${Math.round(settings.timeoutMs / 1000)} s deadline: the numbers are low` };
    else if (walked.partial === 'budget') partial = { reason: 'budget', detail: `the walk stopped after ${settings.maxEntries.toLocaleString('en-US')} entries: the numbers are low` };
    else if (walked.partial === 'stuck') partial = { reason: 'stuck', detail: 'the walk did not come back (a filesystem call stuck in the kernel): nothing measured' };
  }

  const consumers: Consumer[] = [...imageRows];
  roots.forEach((r, i) => {
    const w = walked.roots[i];
    if (!w || w.kind === 'missing') return;
    if (w.kind === 'elsewhere') {
      if (r.kind === 'emptydir') notes.push(`emptyDir ${r.path} is on another filesystem (memory-backed or its own): not counted here`);
      return;
    }
    const { path, kind, ...who } = r;
    consumers.push({ kind, bytes: w.bytes, path, filesystem: fsOf(path)!.mountPoint, ...who, entries: w.entries });
  });
  for (const { row } of chosen) {
    const mine = others
      .map((o, i) => ({ o, w: walked.roots[roots.length + i] }))
      .filter(({ o, w }) => o.fs === row && w && w.kind !== 'missing' && w.kind !== 'elsewhere')
      .map(({ o, w }) => ({ path: o.path, bytes: Math.max(0, w!.bytes - (o.less ?? 0)), ...(o.less !== undefined ? { less: o.less } : {}), entries: w!.entries }))
      .sort((a, b) => b.bytes - a.bytes);
    for (const m of mine.slice(0, OTHER_ROWS)) consumers.push({ kind: 'other', filesystem: row.mountPoint, ...m });
    const rest = mine.slice(OTHER_ROWS);
    if (rest.length > 0) consumers.push({ kind: 'other', bytes: rest.reduce((n, m) => n + m.bytes, 0), path: row.mountPoint, filesystem: row.mountPoint, rest: rest.length, entries: rest.reduce((n, m) => n + m.entries, 0) });
  }
  consumers.sort((a, b) => b.bytes - a.bytes);
  const filesystems = chosen.map(({ row, roles }) => summarise(row, roles, consumers));
  const out: Fillers = { filesystems, consumers, entries: walked.entries, errors: walked.errors, notes };
  if (partial) out.partial = partial;
  return out;
}

/** One filesystem's line: its statfs numbers and how much of `used` the consumers account for. */
export function summarise(row: DiskRow, roles: FilesystemRole[], consumers: readonly Consumer[]): FilesystemFill {
  const used = row.used ?? 0;
  const attributed = consumers.filter((c) => c.filesystem === row.mountPoint).reduce((n, c) => n + c.bytes, 0);
  return {
    mountPoint: row.mountPoint,
    device: row.device,
    fsType: row.fsType,
    source: row.source,
    roles,
    size: row.size ?? 0,
    used,
    avail: row.avail ?? 0,
    usePercent: row.usePercent ?? 0,
    attributed,
    unattributed: used - attributed,
    margin: fillMargin(used),
  };
}

/** Consumers refreshed between full walks, per filesystem: the largest. */
export const REFRESH_PER_FILESYSTEM = 5;
/**
 * A consumer the walk found holding more entries than this is not refreshed (indexing it would cost an
 * lstat per entry, about 12 microseconds of CPU each): the full walk alone measures it.
 */
export const REFRESH_MAX_ENTRIES = 250_000;

/**
 * The consumers the agent refreshes incrementally between full walks: the largest `n` of each filesystem
 * that are directories or files of their own (not images, counted from their layers, nor the summed rest,
 * nor a dir less the image layers in it) and small enough to index (REFRESH_MAX_ENTRIES).
 */
export function refreshRoots(fillers: Fillers, n = REFRESH_PER_FILESYSTEM): string[] {
  const out: string[] = [];
  for (const fs of fillers.filesystems) {
    const mine = fillers.consumers.filter((c) => c.filesystem === fs.mountPoint && !c.kind.startsWith('image-') && c.rest === undefined && c.less === undefined && (c.entries ?? 0) <= REFRESH_MAX_ENTRIES);
    out.push(...mine.sort((a, b) => b.bytes - a.bytes).slice(0, n).map((c) => c.path));
  }
  return [...new Set(out)];
}
