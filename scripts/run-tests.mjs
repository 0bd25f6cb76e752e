#!/usr/bin/env node
// The test runner behind `npm test`. tsc has already type-checked the tests and compiled them with the
// sources into dist-test/ (test/tsconfig.build.json, same layout as the repository), so each test file
// runs as plain JavaScript under node: no TypeScript loader per file (tap's costs ~2 s a file here).
//
// Two groups, run side by side:
// - live files, which use the real machine (docker, containerd, loop devices, mounts, kernel state).
//   A test file is live when it has a line starting with `// @live`. A file whose run may take longer than
//   package.json's tap.timeout says how long with a line `// @timeout SECONDS`.
//   Every file that imports test/helpers/live.ts or test/helpers/runtime.ts must say so: a file that does
//   not is run with the live ones and counted as a failure (test/scripts/run-tests.ts holds that rule).
//   Three kinds, run in this order:
//   - `// @live`: exclusive, one at a time, never beside another live file (beside the unit files).
//   - `// @live shared`: a file that neither restarts, freezes nor reconfigures the daemons, nor asserts
//     anything about the whole node, and does not take another shared file's containers, images or mounts
//     for its own: two at a time once the unit files are done (one beside the unit files before that).
//   - `// @live quiet`: asserts something about the whole machine being calm (no finding on a busy node,
//     pressure and load, timeouts at 2 s intervals): alone, after the unit files and every other live
//     file, so no one else's CPU is counted as the node's.
// - unit files run in parallel on the remaining lanes (--jobs, default 2: one lane beside the live file
//   while live files run; all lanes when there are none).
// Live files spend most of their time waiting for the runtime, so the unit files' CPU costs them little;
// running the groups one after the other spent about 90 s of the 15-minute budget idle.
//
// Each file prints tap's own TAP and its own `# { total, pass, fail }`; the runner prints one line per
// file (the whole output of a failing file), then tap's summary line once per group. Exit 1 on any failure.
//
//   node scripts/run-tests.mjs [--jobs N] [--verbose] [test/a.ts ...]
//   node scripts/run-tests.mjs --list [--root DIR]   the groups as JSON, nothing run
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const LIVE_MARKER = /^\/\/ @live\b/m;
const QUIET_MARKER = /^\/\/ @live quiet\b/m;
const SHARED_MARKER = /^\/\/ @live shared\b/m;
const TIMEOUT_MARKER = /^\/\/ @timeout (\d+)\b/m;
const USES_LIVE_HELPERS = /(?:^import\s[^;]*?from\s+|\bimport\(\s*)['"](?:\.\.?\/)+helpers\/(?:live|runtime)\.js['"]/m;

/** Every test source under root/test, relative to root, sorted (fixtures and helpers are not tests). */
export function testFiles(root) {
  const out = [];
  const walk = (rel) => {
    for (const entry of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = path.posix.join(rel, entry.name);
      if (entry.isDirectory()) {
        if (child !== 'test/fixtures' && child !== 'test/helpers') walk(child);
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        out.push(child);
      }
    }
  };
  walk('test');
  return out.sort();
}

/** Splits the files into unit and live, and names each unmarked file that uses the live helpers. */
export function classify(root, files = testFiles(root)) {
  const unit = [];
  const live = [];
  const quiet = [];
  const shared = [];
  const unmarked = [];
  for (const file of files) {
    const text = readFileSync(path.join(root, file), 'utf8');
    if (LIVE_MARKER.test(text)) {
      live.push(file);
      if (QUIET_MARKER.test(text)) quiet.push(file);
      else if (SHARED_MARKER.test(text)) shared.push(file);
    } else if (USES_LIVE_HELPERS.test(text)) {
      unmarked.push(file);
      live.push(file);
    } else {
      unit.push(file);
    }
  }
  return { unit, live, quiet, shared, unmarked };
}

function parseArgs(argv) {
  const opts = { jobs: Math.max(2, os.availableParallelism?.() ?? os.cpus().length), verbose: false, list: false, root: process.cwd(), files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--jobs' || a === '-j') opts.jobs = Number(argv[++i]);
    else if (a.startsWith('--jobs=')) opts.jobs = Number(a.slice(7));
    else if (a === '--verbose' || a === '-v') opts.verbose = true;
    else if (a === '--list') opts.list = true;
    else if (a === '--root') opts.root = path.resolve(argv[++i] ?? '.');
    else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
    else opts.files.push(path.posix.normalize(a.replace(/^dist-test\//, '').replace(/\.js$/, '.ts')));
  }
  if (!Number.isInteger(opts.jobs) || opts.jobs < 1) throw new Error('--jobs must be a positive integer');
  return opts;
}

const SUMMARY = /^# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?(?:, todo: (\d+))?(?:, skip: (\d+))?/m;

/** Runs one compiled test file; resolves with its counts and output. */
function runFile(root, file, defaultTimeoutS) {
  const js = path.join(root, 'dist-test', file.replace(/\.ts$/, '.js'));
  // A file that needs longer than tap's per-file timeout says so: a line `// @timeout SECONDS`.
  let timeoutS = defaultTimeoutS;
  try {
    const own = TIMEOUT_MARKER.exec(readFileSync(path.join(root, file), 'utf8'));
    if (own) timeoutS = Number(own[1]);
  } catch {
    // no source beside it: the default
  }
  const started = Date.now();
  return new Promise((resolve) => {
    if (!existsSync(js)) {
      resolve({ file, ok: false, counts: { total: 1, pass: 0, fail: 1, todo: 0, skip: 0 }, ms: 0, output: `${js} is missing: compile with tsc -p test/tsconfig.build.json\n` });
      return;
    }
    // TAP_TIMEOUT: tap's per-file timeout (package.json "tap".timeout), which tap's runner would pass.
    const child = spawn(process.execPath, ['--enable-source-maps', js], {
      cwd: root,
      env: { ...process.env, TAP_TIMEOUT: String(timeoutS) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks = [];
    child.stdout.on('data', (c) => chunks.push(c));
    child.stderr.on('data', (c) => chunks.push(c));
    // tap ends a file at its timeout itself; this is the backstop for a file that hangs outside tap.
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, (timeoutS + 30) * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const output = Buffer.concat(chunks).toString('utf8');
      // The file's own summary is the last unindented `# { total: ... }` line it printed.
      const lines = output.split('\n').filter((l) => SUMMARY.test(l));
      const m = lines.length ? SUMMARY.exec(lines[lines.length - 1]) : null;
      const counts = m
        ? { total: +m[1], pass: +(m[2] ?? 0), fail: +(m[3] ?? 0), todo: +(m[4] ?? 0), skip: +(m[5] ?? 0) }
        : { total: 0, pass: 0, fail: 0, todo: 0, skip: 0 };
      const ok = code === 0 && counts.fail === 0 && m !== null;
      if (!ok && counts.fail === 0) {
        // Crashed, killed or exited non-zero without a failed assertion: one failure, never a pass.
        counts.fail = 1;
        counts.total += 1;
      }
      const why = timedOut ? `killed after ${timeoutS + 30} s` : signal ? `killed by ${signal}` : code !== 0 ? `exit ${code}` : '';
      resolve({ file, ok, counts, ms: Date.now() - started, output, why });
    });
  });
}

/** A file that took this long has its slow subtests listed under its line. */
const SLOW_FILE_MS = 20_000;

/**
 * Runs files from one queue on lanes, adding their counts to sum: each lane waits for its gate, then
 * takes the next file until none is left (a lane whose gate opens late may find nothing to do).
 */
async function runLanes(root, files, gates, timeoutS, verbose, counter, sum) {
  const queue = [...files];
  const worker = async (gate) => {
    await gate;
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      const r = await runFile(root, file, timeoutS);
      for (const k of Object.keys(sum)) sum[k] += r.counts[k];
      const n = ++counter.n;
      const detail = `${r.counts.pass} pass${r.counts.fail ? `, ${r.counts.fail} fail` : ''}${r.counts.skip ? `, ${r.counts.skip} skip` : ''}${r.counts.todo ? `, ${r.counts.todo} todo` : ''}`;
      if (!r.ok || verbose) process.stdout.write(r.output.replace(/^/gm, '    ').replace(/ +$/, '') + '\n');
      console.log(`${r.ok ? 'ok' : 'not ok'} ${n} - ${file} # ${detail}${r.why ? `, ${r.why}` : ''}, ${(r.ms / 1000).toFixed(1)} s`);
      // Where a slow file's time went (the suite's budget is watched in CI's log): its subtests over 5 s.
      if (r.ok && !verbose && r.ms >= SLOW_FILE_MS) {
        for (const m of r.output.matchAll(/^ok \d+ - (.*?) # time=([\d.]+)ms$/gm)) {
          if (Number(m[2]) >= 5000) console.log(`#   ${(Number(m[2]) / 1000).toFixed(1).padStart(5)} s  ${m[1].slice(0, 110)}`);
        }
        // The steps a test marked with a comment ending "at +N s" (or ms).
        for (const m of r.output.matchAll(/^\s+# (.{1,100} at \+[\d.]+ m?s)$/gm)) console.log(`#           ${m[1]}`);
      }
    }
  };
  await Promise.all(gates.slice(0, files.length).map(worker));
}

const zero = () => ({ total: 0, pass: 0, fail: 0, todo: 0, skip: 0 });

/** tap's own summary format, which .ci/run reads (one line per group, summed). */
function summaryLine(s) {
  return `# { total: ${s.total}, pass: ${s.pass}${s.fail ? `, fail: ${s.fail}` : ''}${s.todo ? `, todo: ${s.todo}` : ''}${s.skip ? `, skip: ${s.skip}` : ''} }`;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`run-tests: ${e.message}`);
    process.exit(2);
  }
  const all = testFiles(opts.root);
  for (const f of opts.files) {
    if (!all.includes(f)) {
      console.error(`run-tests: ${f} is not a test file (test/**/*.ts outside fixtures/ and helpers/)`);
      process.exit(2);
    }
  }
  const groups = classify(opts.root, opts.files.length ? opts.files : all);
  if (opts.list) {
    console.log(JSON.stringify(groups));
    process.exit(groups.unmarked.length ? 1 : 0);
  }
  const pkg = JSON.parse(readFileSync(path.join(opts.root, 'package.json'), 'utf8'));
  const timeoutS = Number(pkg.tap?.timeout ?? 30);
  const started = Date.now();
  console.log('TAP version 14');
  const counter = { n: 0 };
  for (const f of groups.unmarked) {
    console.log(`not ok ${++counter.n} - ${f} imports test/helpers/live.ts or runtime.ts but has no "// @live" line: it runs with the live files`);
  }
  const quiet = new Set(groups.quiet);
  const shared = new Set(groups.shared);
  const exclusive = groups.live.filter((f) => !quiet.has(f) && !shared.has(f));
  const unitJobs = groups.live.length ? Math.max(1, opts.jobs - 1) : opts.jobs;
  const unitDone = (async () => {
    const unit = zero();
    if (groups.unit.length) {
      console.log(`# unit: ${groups.unit.length} files, ${unitJobs} at a time`);
      await runLanes(opts.root, groups.unit, Array.from({ length: unitJobs }, () => Promise.resolve()), timeoutS, opts.verbose, counter, unit);
    }
    unit.fail += groups.unmarked.length;
    unit.total += groups.unmarked.length;
    console.log(summaryLine(unit));
    return unit;
  })();
  const livePromise = (async () => {
    const live = zero();
    if (!groups.live.length) return live;
    console.log(`# live: ${exclusive.length} one at a time, then ${shared.size} shared (two at a time once the unit files are done), then ${quiet.size} quiet (alone, after the unit files)`);
    // Exclusive first, beside the unit files: one live lane.
    await runLanes(opts.root, exclusive, [Promise.resolve()], timeoutS, opts.verbose, counter, live);
    // Shared: the second live lane opens when the unit files are done.
    await runLanes(opts.root, groups.shared, [Promise.resolve(), unitDone], timeoutS, opts.verbose, counter, live);
    // Quiet: alone.
    await unitDone;
    await runLanes(opts.root, groups.quiet, [Promise.resolve()], timeoutS, opts.verbose, counter, live);
    return live;
  })();
  const [unit, live] = await Promise.all([unitDone, livePromise]);
  if (groups.live.length) console.log(summaryLine(live));
  console.log(`1..${counter.n}`);
  console.log(`# ${counter.n} files in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  process.exit(unit.fail || live.fail ? 1 : 0);
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('scripts/run-tests.mjs')) {
  await main();
}
