// Times the attribute scan inside one Node process, as the agent's immutable collector runs it (no
// process start-up): prints elapsed_ms=N and what it found. With --progress, each path's children are
// the units and the scan reports progress as check's one-shot scan does on a terminal.
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createAttrAccess } from '../agent/host/attrs.js';

const attrs = createAttrAccess();
if (!attrs) {
  process.stderr.write('the native attrs module is not built\n');
  process.exit(2);
}
const args = process.argv.slice(2);
const progress = args[0] === '--progress';
const roots = progress ? args.slice(1) : args;
const paths = progress ? roots.flatMap((r) => readdirSync(r).map((n) => path.join(r, n))) : roots;
let reports = 0;
const started = process.hrtime.bigint();
const r = await attrs.scanTree(paths, Math.min(4, os.availableParallelism()), progress ? () => reports++ : undefined);
const ms = Number(process.hrtime.bigint() - started) / 1e6;
process.stdout.write(`elapsed_ms=${ms.toFixed(1)} entries=${r.entries} found=${r.flagged.length}${progress ? ` reports=${reports}` : ''}\n`);
