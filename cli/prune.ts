// `nodewarden prune --node N`: asks the aggregator (admin token) to have that node's agent remove
// unused images older than --until; shows the progress as it comes (a bar on a terminal), then what was
// removed and what was kept, and why. Every string from the node is escaped before it is printed.
import { NodewardenError, errorMessage, isNodewardenError } from '../protocol/errors.js';
import { HttpRequestError, httpStream } from '../protocol/http-request.js';
import { MAX_PRUNE_LINE_BYTES, decodePruneLine, type PruneLine } from '../protocol/prune-stream.js';
import { formatDuration } from '../protocol/schema.js';
import { escapeForTerminal as esc, escapeJsonLine } from '../protocol/terminal.js';
import { formatBytes } from '../collectors/common/text.js';
import { painter, table, truncate, type Painter } from './format.js';

export interface PruneCliOptions {
  url: string;
  token: string;
  node: string;
  untilMs: number;
  /** --until as the user wrote it, printed as given (`1s`, not `0h`). */
  until?: string;
  dryRun: boolean;
  json: boolean;
  tty: boolean;
  out(text: string): void;
}

/** How long the aggregator may take to accept a prune (it answers at once when it is well). */
const HEADERS_TIMEOUT_MS = 30_000;

function bar(done: number, total: number, width = 24): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
}

interface RenderState {
  bytes: number;
  /** A dry run: what the removals listed would free together (each image's size is what it frees). */
  wouldFree: number;
  until: string;
  kept: { image: string; reason: string; size: number }[];
}

/** What stays on the node and why, as a table under the result. */
function renderKept(kept: RenderState['kept'], p: Painter): string {
  if (kept.length === 0) return '';
  const rows = kept.map((k) => [truncate(k.image, 70), formatBytes(k.size), k.reason]);
  return `${p.bold(`kept ${kept.length} image(s)`)}:\n${table(['IMAGE', 'SIZE', 'WHY'], rows, { rightAlign: [1] }).replace(/^/gm, '  ')}\n`;
}

function render(line: PruneLine, p: Painter, state: RenderState, tty: boolean): string | undefined {
  switch (line.type) {
    case 'accepted':
      return `${line.dryRun ? 'dry run: listing' : 'removing'} unused images older than ${esc(state.until)} on ${esc(line.node)}\n`;
    case 'progress': {
      const size = line.size;
      if (line.state === 'kept') {
        state.kept.push({ image: esc(line.image), reason: esc(line.reason ?? ''), size });
        return undefined;
      }
      if (line.state === 'removed') state.bytes += size;
      if (line.state === 'would-remove') state.wouldFree += size;
      const what = line.state === 'would-remove' ? 'would remove' : esc(line.state);
      const text = `${what.padEnd(12)} ${truncate(esc(line.image), 60).padEnd(60)} ${formatBytes(size).padStart(6)}${line.reason ? `  ${p.severity('critical', esc(line.reason))}` : ''}`;
      if (!tty) return `${text}\n`;
      return `\r\x1b[2K${text}\n${bar(line.index, line.total)} ${formatBytes(state.bytes)} reclaimed`;
    }
    case 'result': {
      const keptCount = line.kept ?? state.kept.length;
      const head = line.refused
        ? `refused: ${esc(line.refused)}`
        : line.dryRun
          ? `dry run on ${esc(line.runtime)}: nothing removed; the removals would free ${formatBytes(state.wouldFree)} (each image's size is what removing it frees: layers an image that stays shares are not counted); kept ${keptCount}`
          : `removed ${line.removed} image(s), ${formatBytes(line.bytes)} reclaimed (image sizes; layers other images share stay) on ${esc(line.runtime)}; kept ${keptCount}`;
      return `${tty ? '\r\x1b[2K' : ''}${head}\n${line.errors.map((e) => `  error: ${esc(e)}\n`).join('')}${line.refused ? '' : renderKept(state.kept, p)}`;
    }
    case 'error':
      return `${tty ? '\r\x1b[2K' : ''}error: ${esc(line.message)}\n`;
  }
}

/** A line refused by the decoder: said on its own line (as a JSON object with --json), and skipped. */
function renderRefused(err: NodewardenError, json: boolean, tty: boolean): string {
  if (json) return `${escapeJsonLine(JSON.stringify({ type: 'error', code: err.code, message: err.message }))}\n`;
  return `${tty ? '\r\x1b[2K' : ''}error: ${esc(err.message)} (${err.code})\n`;
}

/** Resolves with the exit code: 0 done, 1 some images failed, 3 refused or not possible. */
export async function runPrune(opts: PruneCliOptions): Promise<number> {
  const target = new URL(`${opts.url.replace(/^ws/, 'http')}/api/nodes/${encodeURIComponent(opts.node)}/prune`);
  const body = JSON.stringify({ untilMs: opts.untilMs, dryRun: opts.dryRun });
  const p = painter(opts.tty);
  const state: RenderState = { bytes: 0, wouldFree: 0, until: opts.until ?? formatDuration(opts.untilMs), kept: [] };
  let buf = '';
  let code = 3;
  const onText = (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const raw = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!raw.trim()) continue;
      let line: PruneLine;
      try {
        line = decodePruneLine(raw);
      } catch (err) {
        opts.out(renderRefused(isNodewardenError(err) ? err : new NodewardenError('NW_ERR_PROTOCOL', errorMessage(err)), opts.json, opts.tty));
        continue;
      }
      if (line.type === 'result') code = line.refused ? 3 : line.ok ? 0 : 1;
      if (opts.json) opts.out(`${escapeJsonLine(raw)}\n`);
      else {
        const text = render(line, p, state, opts.tty);
        if (text) opts.out(text);
      }
    }
    // A line is at most MAX_PRUNE_LINE_BYTES: a peer that never ends one is cut off, not buffered
    // (thrown here, it ends the request and becomes the promise's rejection).
    if (buf.length > MAX_PRUNE_LINE_BYTES) throw new NodewardenError('NW_ERR_PROTOCOL', `a line from the aggregator is over the ${MAX_PRUNE_LINE_BYTES}-byte limit`);
  };
  const statusError = (status: number, text: string) => {
    let msg = text;
    try {
      msg = String((JSON.parse(text) as { error?: unknown }).error ?? text);
    } catch {
      // not JSON
    }
    return new NodewardenError('NW_ERR_USAGE', `the aggregator said ${status}: ${esc(msg.slice(0, 500))}`);
  };
  // The aggregator answers the headers at once; the prune itself may then be quiet for minutes, so only
  // the headers have a deadline (the aggregator bounds the command). A failure while printing (stdout
  // closed) or a stream cut short rejects this promise instead of escaping from an event handler.
  try {
    await httpStream(
      {
        what: `prune on ${opts.node}`,
        url: target,
        method: 'POST',
        headers: { authorization: `Bearer ${opts.token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        body,
        timeoutMs: HEADERS_TIMEOUT_MS,
        peer: `the aggregator at ${opts.url}`,
        code: 'NW_ERR_USAGE',
        statusError,
      },
      { onText },
    );
  } catch (err) {
    if (err instanceof HttpRequestError && err.failure === 'connect') throw new NodewardenError('NW_ERR_USAGE', `cannot reach the aggregator at ${opts.url}: ${err.detail}`, { cause: err });
    throw err;
  }
  if (buf.trim()) opts.out(renderRefused(new NodewardenError('NW_ERR_PROTOCOL', 'the stream from the aggregator ended inside a line'), opts.json, opts.tty));
  return code;
}
