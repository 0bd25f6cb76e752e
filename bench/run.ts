// `npm run bench [-- NAME...]`: runs the side-by-side benchmarks and prints their ratios.
import { benchAggregator } from './aggregator.js';
import { benchFootprint } from './footprint.js';
import { benchImmutable } from './immutable.js';
import { benchMounts } from './mounts.js';
import { benchPods } from './pods.js';
import { benchSockets } from './sockets.js';

const BENCHES: Record<string, () => Promise<string>> = {
  sockets: () => benchSockets(),
  immutable: () => benchImmutable(),
  mounts: () => benchMounts(),
  aggregator: () => benchAggregator(),
  footprint: () => benchFootprint(),
  pods: () => benchPods(),
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !(w in BENCHES));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown ${unknown.join(', ')} (known: ${Object.keys(BENCHES).join(', ')})\n`);
  process.exit(2);
}
if (process.getuid?.() !== 0) process.stderr.write('bench: not root; some benches need root to build their workloads\n');
for (const name of wanted.length ? wanted : Object.keys(BENCHES)) {
  process.stdout.write(`\n# ${name}\n`);
  process.stdout.write(`${await BENCHES[name]!()}\n`);
}
