// Worker-thread entry for the incremental refresh (tree-index.ts): it keeps the indexes and makes the
// stat calls, so a filesystem that hangs in the kernel blocks this thread, never the agent's.
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { createTreeIndex } from './tree-index.js';

interface Request {
  id: number;
  roots: string[];
  mounts: string[];
}

const { hostRoot, maxEntries } = workerData as { hostRoot: string; maxEntries?: number };
let mounts: ReadonlySet<string> = new Set();
const index = createTreeIndex({
  hostPath: (p) => path.join(hostRoot, path.posix.resolve('/', p)),
  ...(maxEntries ? { maxEntries } : {}),
  mountPoints: async () => mounts,
});

parentPort?.on('message', (req: Request) => {
  mounts = new Set(req.mounts);
  index.refresh(req.roots).then(
    (result) => parentPort?.postMessage({ id: req.id, result }),
    (err: unknown) => parentPort?.postMessage({ id: req.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
