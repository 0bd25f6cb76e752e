// `nodewarden up` (what `npm start` runs): an aggregator on 127.0.0.1, an agent for this machine and a
// tail in this terminal, in one process. It says how to reach it from another terminal (the URL and
// token files, admin included, in a private directory removed when it stops), prints a summary once
// every collector has run, then keeps a quiet status line so a healthy node is told from a stuck one.
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../agent/config.js';
import { startAgent } from '../agent/daemon.js';
import { checkHostRoot } from '../agent/host/access.js';
import { createLogger } from '../agent/log.js';
import type { CollectorStatus } from '../agent/runner.js';
import { Aggregator } from '../aggregator/server.js';
import type { Token } from '../aggregator/auth.js';
import type { Severity } from '../protocol/finding.js';
import { errnoCode } from '../protocol/errors.js';
import { randomToken } from './aggregator.js';
import { VERSION } from '../protocol/version.js';
import { useColor } from './format.js';
import { DEFAULT_AGGREGATOR } from './remote.js';
import { formatSummary, UpStatusLine, type StatusSnapshot } from './up-status.js';
import { Tail } from './tail.js';

export interface UpOptions {
  hostRoot?: string;
  config?: string;
  sets: string[];
  json: boolean;
}

const ROLES = ['agent', 'tail', 'admin'] as const;
type Role = (typeof ROLES)[number];

/** Token files in a fresh private directory (0700; files 0600), as `nodewarden aggregator --tokens-dir` reads them. */
export function writeTokenDir(tokens: Record<Role, string>, parent = os.tmpdir()): string {
  const dir = mkdtempSync(path.join(parent, 'nodewarden-up-'));
  for (const role of ROLES) writeFileSync(path.join(dir, role), `${tokens[role]}\n`, { mode: 0o600 });
  return dir;
}

/** How this command is invoked from a shell: `nodewarden` when it is on PATH, else `node .../main.js`. */
function selfCommand(): string {
  for (const dir of (process.env['PATH'] ?? '').split(':').filter(Boolean)) {
    try {
      accessSync(path.join(dir, 'nodewarden'), constants.X_OK);
      return 'nodewarden';
    } catch {
      // not in this directory
    }
  }
  return `node ${path.relative(process.cwd(), process.argv[1] ?? 'dist/cli/main.js') || 'dist/cli/main.js'}`;
}

/** What to type in another terminal to tail this `up` and to ask its agent for a prune. */
export function reachText(o: { url: string; dir: string; node: string; collectors: readonly string[]; command: string }): string {
  const agg = o.url === DEFAULT_AGGREGATOR ? '' : ` --aggregator ${o.url}`;
  return [
    `nodewarden up: aggregator ${o.url}, agent for ${o.node} (${o.collectors.join(', ')}); Ctrl-C to stop.`,
    `From another terminal (token files in ${o.dir}, readable only by you, removed when up stops):`,
    `  ${o.command} tail${agg} --token-file ${path.join(o.dir, 'tail')}`,
    `  ${o.command} prune${agg} --token-file ${path.join(o.dir, 'admin')} --node ${o.node} --dry-run`,
    `In a browser: ${o.url.replace(/^ws/, 'http')}/ (log in with the token in ${path.join(o.dir, 'tail')}, or admin to prune)`,
    '',
  ].join('\n');
}

/** The default aggregator port when it is free, so other terminals need no --aggregator; else any port. */
async function startAggregator(tokens: Token[], log: ReturnType<typeof createLogger>): Promise<{ agg: Aggregator; url: string }> {
  const at = async (port: number) => {
    const agg = new Aggregator({ host: '127.0.0.1', port, tokens, version: VERSION, log: createLogger({ component: 'aggregator', level: log.level }) });
    return { agg, url: (await agg.start()).url };
  };
  try {
    return await at(Number(new URL(DEFAULT_AGGREGATOR).port));
  } catch (err) {
    if (errnoCode((err as { cause?: unknown }).cause) !== 'EADDRINUSE') throw err;
    return at(0);
  }
}

export async function runUp(opts: UpOptions): Promise<void> {
  const hostRoot = opts.hostRoot === undefined ? undefined : checkHostRoot(opts.hostRoot);
  // Prune is on here: the admin token exists only in a file readable by whoever ran up.
  const config = loadConfig({ file: opts.config, sets: ['agent.listen="127.0.0.1:0"', 'prune.enabled=true', ...opts.sets], hostRoot });
  if (hostRoot === undefined) checkHostRoot(config.hostRoot);
  const tokens: Record<Role, string> = { agent: randomToken(), tail: randomToken(), admin: randomToken() };
  const dir = writeTokenDir(tokens);
  // Logs go to stderr at warn: the terminal belongs to the tail.
  const log = createLogger({ node: config.node, level: config.logLevel === 'info' ? 'warn' : config.logLevel });
  const { agg, url } = await startAggregator(
    ROLES.map((role) => ({ role, name: `local-${role}`, secret: tokens[role] })),
    log,
  );
  const started = Date.now();
  const agent = await startAgent(config, { log, aggregator: { url, token: tokens.agent } });
  const names = agent.runner.names();
  process.stderr.write(reachText({ url, dir, node: config.node, collectors: names, command: selfCommand() }));

  // What the status line and the summary count.
  const latest = new Map<string, CollectorStatus>();
  let runs = 0;
  let failedRuns = 0;
  let lastRunAt: number | undefined;
  const counts = (): Record<Severity, number> => {
    const c: Record<Severity, number> = { critical: 0, warning: 0, info: 0 };
    for (const f of agent.runner.active()) c[f.severity] += 1;
    return c;
  };
  const snapshot = (): StatusSnapshot => ({
    runs,
    failedRuns,
    failing: [...latest.values()].filter((s) => s.status === 'failed' || s.status === 'timeout').map((s) => s.name),
    ...(lastRunAt !== undefined ? { lastRunAt } : {}),
    findings: counts(),
    nodes: { connected: agent.stream?.connected ? 1 : 0, total: 1 },
  });
  const status = new UpStatusLine({
    tty: Boolean(process.stderr.isTTY),
    write: (t) => process.stderr.write(t),
    out: (l) => process.stdout.write(`${l}\n`),
    snapshot,
    ...(process.stderr.columns ? { columns: process.stderr.columns } : {}),
  });
  let summarized = false;
  agent.runner.on('status', (st: CollectorStatus) => {
    runs += 1;
    if (st.status === 'failed' || st.status === 'timeout') failedRuns += 1;
    lastRunAt = Date.parse(st.finishedAt);
    latest.set(st.name, st);
    if (!summarized && names.every((n) => latest.has(n))) {
      summarized = true;
      // Let the tail print the findings of this cycle first: they reach it through the aggregator.
      setTimeout(() => status.note(formatSummary(names.map((n) => latest.get(n)!), counts(), Date.now() - started)), 300).unref();
    }
  });

  const tail = new Tail({
    url,
    token: tokens.tail,
    filter: {},
    follow: true,
    json: opts.json,
    color: useColor(process.stdout),
    columns: process.stdout.columns,
    out: (l) => status.line(l),
    err: (l) => status.note(l),
  });
  tail.start();
  status.start();
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  status.stop();
  tail.stop();
  await agent.stop();
  await agg.stop();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
