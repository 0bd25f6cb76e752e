// `npm run bench [-- NAME...]`: runs the side-by-side benchmarks and prints their ratios.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { benchAggregator, benchHostile } from './aggregator.js';
import { benchChurnCost } from './churn-cost.js';
import { benchDu } from './du.js';
import { benchFootprint } from './footprint.js';
import { benchHostileNet } from './hostile-net.js';
import { benchImmutable } from './immutable.js';
import { benchKmsg } from './kmsg.js';
import { benchMounts } from './mounts.js';
import { benchPods } from './pods.js';
import { benchSockets } from './sockets.js';
import { benchSoak } from './soak.js';
import { benchWeb } from './web.js';

const BENCHES: Record<string, () => Promise<string>> = {
  sockets: () => benchSockets(),
  immutable: () => benchImmutable(),
  mounts: () => benchMounts(),
  aggregator: async () => `${await benchAggregator()}\n\n${await benchHostile()}`,
  hostile: async () => `${await benchHostile()}\n\n${await benchHostileNet()}`,
  footprint: () => benchFootprint(),
  soak: () => benchSoak({ ...(options.duration === undefined ? {} : { seconds: options.duration }), ...(options.interval === undefined ? {} : { interval: options.interval }) }),
  pods: () => benchPods(),
  kmsg: () => benchKmsg(),
  web: () => benchWeb(options.duration === undefined ? {} : { seconds: options.duration }),
  du: () => benchDu(),
  'churn-cost': () => benchChurnCost({ ...(options.duration === undefined ? {} : { seconds: options.duration }), ...(options.base === undefined ? {} : { base: options.base }), sets: options.sets, baseSets: options.baseSets, nodeFlags: options.nodeFlags }),
};

// Options: --duration 10m (or seconds) for soak, web (its steady state; default 60 s) and churn-cost (default 120 s); --interval 2s: soak with runtime, drift and mounts every 2 s;
// --base DIR: churn-cost runs that checkout's build (built: dist/) side by side with this one; --set K=V (repeatable): churn-cost's
// config for this build only (`--base .` then compares a setting with the defaults); --base-set K=V: the base's config; --node-flag F (repeatable): a V8/Node flag for
// churn-cost's agent of this build only, after the DaemonSet's --max-semi-space-size=2 (`--base . --node-flag --single-threaded-gc`).
const options: { duration?: number; interval?: string; base?: string; sets: string[]; baseSets: string[]; nodeFlags: string[] } = { sets: [], baseSets: [], nodeFlags: [] };
const args = process.argv.slice(2);
const wanted: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--duration') {
    const v = args[++i] ?? '';
    const m = /^(\d+)(s|m)?$/.exec(v);
    if (!m) {
      process.stderr.write(`bench: --duration wants 90s or 10m, not ${v}\n`);
      process.exit(2);
    }
    options.duration = Number(m[1]) * (m[2] === 'm' ? 60 : 1);
  } else if (args[i] === '--interval') {
    const v = args[++i] ?? '';
    if (!/^\d+(ms|s|m)$/.test(v)) {
      process.stderr.write(`bench: --interval wants a duration such as 2s, not ${v}\n`);
      process.exit(2);
    }
    options.interval = v;
  } else if (args[i] === '--set' || args[i] === '--base-set') {
    const v = args[++i] ?? '';
    if (!/^[\w.]+=/.test(v)) {
      process.stderr.write(`bench: ${args[i - 1]} wants KEY=VALUE, not ${v || 'nothing'}\n`);
      process.exit(2);
    }
    (args[i - 1] === '--set' ? options.sets : options.baseSets).push(v);
  } else if (args[i] === '--node-flag') {
    const v = args[++i] ?? '';
    if (!/^--[\w-]+(=\S+)?$/.test(v)) {
      process.stderr.write(`bench: --node-flag wants a flag such as --single-threaded-gc, not ${v || 'nothing'}\n`);
      process.exit(2);
    }
    options.nodeFlags.push(v);
  } else if (args[i] === '--base') {
    const v = args[++i] ?? '';
    if (!existsSync(path.join(v, 'dist', 'cli', 'main.js'))) {
      process.stderr.write(`bench: --base wants a built checkout (DIR/dist/cli/main.js), not ${v || 'nothing'}\n`);
      process.exit(2);
    }
    options.base = v;
  } else wanted.push(args[i]!);
}
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
