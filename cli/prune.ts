// `nodewarden prune --node N`: asks the aggregator (admin token) to have that node's agent remove
// unused images older than --until; shows the progress as it comes, a bar on a terminal.
import http from 'node:http';
import https from 'node:https';
import { NodewardenError } from '../protocol/errors.js';
import { formatBytes } from '../collectors/common/text.js';
import { painter, truncate, type Painter } from './format.js';

export interface PruneCliOptions {
  url: string;
  token: string;
  node: string;
  untilMs: number;
  dryRun: boolean;
  json: boolean;
  tty: boolean;
  out(text: string): void;
}

interface Line {
  type: string;
  [k: string]: unknown;
}

function bar(done: number, total: number, width = 24): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
}

function render(line: Line, p: Painter, state: { bytes: number }, tty: boolean): string | undefined {
  switch (line.type) {
    case 'accepted':
      return `${line['dryRun'] ? 'dry run: listing' : 'removing'} unused images older than ${Math.round(Number(line['untilMs']) / 3_600_000)}h on ${String(line['node'])}\n`;
    case 'progress': {
      const size = Number(line['size']);
      if (line['state'] === 'removed') state.bytes += size;
      const what = line['state'] === 'would-remove' ? 'would remove' : String(line['state']);
      const text = `${what.padEnd(12)} ${truncate(String(line['image']), 60).padEnd(60)} ${formatBytes(size).padStart(6)}${line['reason'] ? `  ${p.severity('critical', String(line['reason']))}` : ''}`;
      if (!tty) return `${text}\n`;
      return `\r\x1b[2K${text}\n${bar(Number(line['index']), Number(line['total']))} ${formatBytes(state.bytes)} reclaimed`;
    }
    case 'result': {
      const errors = (line['errors'] as string[]) ?? [];
      const head = line['refused']
        ? `refused: ${String(line['refused'])}`
        : line['dryRun']
          ? `dry run on ${String(line['runtime'])}: nothing removed`
          : `removed ${String(line['removed'])} image(s), ${formatBytes(Number(line['bytes']))} reclaimed (image sizes; layers other images share stay) on ${String(line['runtime'])}; kept ${String(line['kept'] ?? 0)}`;
      return `${tty ? '\r\x1b[2K' : ''}${head}\n${errors.map((e) => `  error: ${e}\n`).join('')}`;
    }
    case 'error':
      return `${tty ? '\r\x1b[2K' : ''}error: ${String(line['message'])}\n`;
    default:
      return undefined;
  }
}

/** Resolves with the exit code: 0 done, 1 some images failed, 3 refused or not possible. */
export function runPrune(opts: PruneCliOptions): Promise<number> {
  const target = new URL(`${opts.url.replace(/^ws/, 'http')}/api/nodes/${encodeURIComponent(opts.node)}/prune`);
  const body = JSON.stringify({ untilMs: opts.untilMs, dryRun: opts.dryRun });
  const p = painter(opts.tty);
  const state = { bytes: 0 };
  return new Promise((resolve, reject) => {
    const req = (target.protocol === 'https:' ? https : http).request(
      target,
      { method: 'POST', headers: { authorization: `Bearer ${opts.token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        if (res.statusCode !== 200) {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => {
            let msg = text;
            try {
              msg = (JSON.parse(text) as { error?: string }).error ?? text;
            } catch {
              // not JSON
            }
            reject(new NodewardenError('NW_ERR_USAGE', `the aggregator said ${res.statusCode}: ${msg}`));
          });
          return;
        }
        let buf = '';
        let code = 3;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const raw = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (!raw.trim()) continue;
            const line = JSON.parse(raw) as Line;
            if (line.type === 'result') code = line['refused'] ? 3 : line['ok'] ? 0 : 1;
            if (opts.json) opts.out(`${raw}\n`);
            else {
              const text = render(line, p, state, opts.tty);
              if (text) opts.out(text);
            }
          }
        });
        res.on('end', () => resolve(code));
      },
    );
    req.on('error', (err) => reject(new NodewardenError('NW_ERR_USAGE', `cannot reach the aggregator at ${opts.url}: ${err.message}`)));
    req.end(body);
  });
}
