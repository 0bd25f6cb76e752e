// `nodewarden du`: what fills nodefs, imagefs and any filesystem over its warning, ranked per filesystem
// (writable layers, container logs, emptyDirs, images by whether they could go, the rest), with the
// line that says how close the table comes to what the filesystem says is used.
import { loadConfig } from '../agent/config.js';
import { createEnvironment } from '../agent/environment.js';
import { checkHostRoot } from '../agent/host/access.js';
import { DU_DEFAULTS, measureNode } from '../agent/actions/du.js';
import type { Consumer, Fillers, FilesystemFill } from '../collectors/common/fillers.js';
import { formatBytes } from '../collectors/common/text.js';
import { NodewardenError } from '../protocol/errors.js';
import { escapeForTerminal as esc, jsonForTerminal } from '../protocol/terminal.js';
import { painter, table, truncate, useColor, type Painter } from './format.js';

export interface DuCliOptions {
  json: boolean;
  hostRoot?: string;
  config?: string;
  sets: string[];
  timeoutMs?: number;
  maxEntries?: number;
}

const sign = (n: number) => (n < 0 ? `-${formatBytes(-n)}` : formatBytes(n));

function what(c: Consumer): string {
  if (c.kind === 'other' && c.rest) return `${c.rest.toLocaleString('en-US')} smaller paths`;
  return '';
}

/** `columns`: the terminal's width (paths are cut to fit it); undefined in a pipe, where paths are whole. */
export function renderFilesystem(fs: FilesystemFill, consumers: readonly Consumer[], p: Painter, columns?: number): string {
  const mine = consumers.filter((c) => c.filesystem === fs.mountPoint);
  const rows = mine.map((c) => [
    c.kind,
    formatBytes(c.bytes),
    c.pod ? truncate(esc(c.pod), 40) : '-',
    c.container ? truncate(esc(c.container), 24) : '-',
    c.image ? truncate(esc(c.image), 30) : '-',
    truncate(esc(c.kind === 'other' && c.rest ? `${c.path} (${what(c)})` : c.path), columns ? Math.max(40, columns - 80) : Number.MAX_SAFE_INTEGER),
  ]);
  const head = `${p.bold(`${fs.roles.join(', ')}: ${esc(fs.mountPoint)}`)} (${esc(fs.fsType)} on ${esc(fs.source)}): ${formatBytes(fs.used)} used of ${formatBytes(fs.size)} (${fs.usePercent}%), ${formatBytes(fs.avail)} available`;
  const within = Math.abs(fs.unattributed) <= fs.margin;
  const foot = `  ${formatBytes(fs.attributed)} attributed; unattributed ${sign(fs.unattributed)} (${within ? 'within' : p.severity('warning', 'beyond')} the ±${formatBytes(fs.margin)} margin: filesystem metadata, files deleted but still open, writes during the walk)`;
  return `${head}\n${table(['KIND', 'SIZE', 'POD', 'CONTAINER', 'IMAGE', 'PATH'], rows, { rightAlign: [1] }).replace(/^/gm, '  ')}\n${foot}\n`;
}

export function renderDu(r: Fillers, p: Painter, columns?: number): string {
  const parts = r.filesystems.map((fs) => renderFilesystem(fs, r.consumers, p, columns));
  if (r.filesystems.length === 0) parts.push('No filesystem to measure: kubelet\'s root dir and the runtime roots are not here, and none is over its warning.\n');
  const reclaimable = r.consumers.filter((c) => c.kind === 'image-reclaimable').reduce((n, c) => n + c.bytes, 0);
  const tail = [`# ${r.entries.toLocaleString('en-US')} entries walked${r.errors ? `, ${r.errors} unreadable` : ''}; images reclaimable by a prune: ${formatBytes(reclaimable)} (layers shared with images that stay not counted)`];
  if (r.partial) tail.push(p.severity('warning', `# PARTIAL: ${r.partial.detail}`));
  for (const n of r.notes) tail.push(`# ${esc(n)}`);
  return `${parts.join('\n')}\n${tail.join('\n')}\n`;
}

/** Exit 0 measured, 3 when the walk was partial or could not run. */
export async function runDu(opts: DuCliOptions, out: NodeJS.WriteStream): Promise<{ code: number; text: string }> {
  const hostRoot = opts.hostRoot === undefined ? undefined : checkHostRoot(opts.hostRoot);
  const config = loadConfig({ file: opts.config, sets: opts.sets, hostRoot });
  const env = createEnvironment(config);
  try {
    const r = await measureNode(env, config, { timeoutMs: opts.timeoutMs ?? DU_DEFAULTS.timeoutMs, maxEntries: opts.maxEntries ?? DU_DEFAULTS.maxEntries });
    if (r.partial?.reason === 'no-walker') throw new NodewardenError('NW_ERR_NO_DATA', 'the native module is not built: run npm rebuild (needs python3, make and a C compiler)');
    const text = opts.json ? `${jsonForTerminal(r, 2)}\n` : renderDu(r, painter(useColor(out)), out.isTTY ? out.columns : undefined);
    return { code: r.partial ? 3 : 0, text };
  } finally {
    env.runtime.close?.();
  }
}
