// `nodewarden who-holds TARGET`: the runbook's `grep ID /proc/*/mountinfo` then `ps -f PID`, in one step.
import { loadConfig } from '../agent/config.js';
import { createEnvironment } from '../agent/environment.js';
import { checkHostRoot } from '../agent/host/access.js';
import { whoHolds, type WhoHolds } from '../agent/actions/who-holds.js';
import { escapeForTerminal as esc, jsonForTerminal } from '../protocol/terminal.js';
import { painter, table, truncate, useColor, type Painter } from './format.js';

export interface WhoHoldsOptions {
  target: string;
  json: boolean;
  hostRoot?: string;
  config?: string;
  sets: string[];
}

export function renderWhoHolds(r: WhoHolds, p: Painter, columns = 120): string {
  if (r.namespaces.length === 0) return `No mount namespace holds ${esc(r.target)} (looked for ${esc(r.matchedBy.join(', '))}).\n`;
  const parts: string[] = [];
  for (const ns of r.namespaces) {
    const title = ns.host ? `${ns.namespace} (host, ${ns.processes} processes)` : `${ns.namespace} (${ns.processes} process${ns.processes === 1 ? '' : 'es'})`;
    const rows = ns.holders.map((h) => [
      String(h.pid),
      esc(h.comm),
      esc(h.workload?.containerName ?? (h.containerId ? h.containerId.slice(0, 12) : '-')),
      h.workload?.pod ? esc(`${h.workload.namespace ?? ''}/${h.workload.pod}`) : '-',
      truncate(esc(h.cmdline.replace(/\s+/g, ' ')), Math.max(30, columns - 60)),
    ]);
    const mounts = ns.mounts.map((m) => `  ${p.dim(truncate(esc(m), columns - 2))}`).join('\n');
    parts.push(`${p.bold(title)}\n${table(['PID', 'COMM', 'CONTAINER', 'POD', 'CMDLINE'], rows, { rightAlign: [0] })}${ns.host && ns.processes > ns.holders.length ? `\n  ... and every other host process` : ''}\n${mounts}`);
  }
  return `${parts.join('\n\n')}\n`;
}

export async function runWhoHolds(opts: WhoHoldsOptions, out: NodeJS.WriteStream): Promise<{ code: number; text: string }> {
  const hostRoot = opts.hostRoot === undefined ? undefined : checkHostRoot(opts.hostRoot);
  const config = loadConfig({ file: opts.config, sets: opts.sets, hostRoot });
  const env = createEnvironment(config);
  const r = await whoHolds(opts.target, env.host, env.runtime);
  const text = opts.json ? `${jsonForTerminal(r, 2)}\n` : renderWhoHolds(r, painter(useColor(out)), out.columns);
  // Like grep: 0 when something holds it, 1 when nothing does.
  return { code: r.namespaces.length > 0 ? 0 : 1, text };
}
