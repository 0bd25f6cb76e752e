// Times the du walk inside one Node process (no process start-up), on as many threads as `nodewarden
// du` uses: prints elapsed_ms=N and the entries walked.
import { createTreeWalker } from '../agent/host/attrs.js';
import { duThreads } from '../agent/actions/du.js';

const walker = createTreeWalker();
if (!walker) {
  process.stderr.write('the native attrs module is not built\n');
  process.exit(2);
}
const roots = process.argv.slice(2);
const started = process.hrtime.bigint();
const r = await walker.walk(roots, { threads: duThreads(), timeoutMs: 600_000, maxEntries: 1e9, excludes: [], devices: roots.map(() => null) });
const ms = Number(process.hrtime.bigint() - started) / 1e6;
process.stdout.write(`elapsed_ms=${ms.toFixed(1)} entries=${r.entries} bytes=${r.roots.reduce((n, x) => n + x.bytes, 0)}\n`);
