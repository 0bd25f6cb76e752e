// Times the attribute scan inside one Node process, as the agent's immutable collector runs it (no
// process start-up): prints elapsed_ms=N and what it found.
import os from 'node:os';
import { createAttrAccess } from '../agent/host/attrs.js';

const attrs = createAttrAccess();
if (!attrs) {
  process.stderr.write('the native attrs module is not built\n');
  process.exit(2);
}
const started = process.hrtime.bigint();
const r = await attrs.scanTree(process.argv.slice(2), Math.min(4, os.availableParallelism()));
const ms = Number(process.hrtime.bigint() - started) / 1e6;
process.stdout.write(`elapsed_ms=${ms.toFixed(1)} entries=${r.entries} found=${r.flagged.length}\n`);
