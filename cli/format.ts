// Human output: aligned columns like kubectl and df, colour only on a terminal (and never with NO_COLOR).
import type { Severity } from '../protocol/finding.js';

export interface Painter {
  bold(s: string): string;
  dim(s: string): string;
  severity(sev: Severity, s: string): string;
}

export function painter(enabled: boolean): Painter {
  const wrap = (code: string) => (s: string) => (enabled ? `\x1b[${code}m${s}\x1b[0m` : s);
  const red = wrap('31;1');
  const yellow = wrap('33');
  const cyan = wrap('36');
  return {
    bold: wrap('1'),
    dim: wrap('2'),
    severity: (sev, s) => (sev === 'critical' ? red(s) : sev === 'warning' ? yellow(s) : cyan(s)),
  };
}

export function useColor(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) && env['NO_COLOR'] === undefined && env['TERM'] !== 'dumb';
}

const ANSI = /\x1b\[[0-9;]*m/g;
const visibleLength = (s: string): number => s.replace(ANSI, '').length;

/**
 * Aligns rows under headers. Cells may carry colour codes; widths count visible characters.
 * `rightAlign` names the columns aligned right (numbers).
 */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], opts: { rightAlign?: readonly number[]; maxWidth?: number } = {}): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const right = new Set(opts.rightAlign ?? []);
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => {
        const pad = ' '.repeat(Math.max(0, (widths[i] ?? 0) - visibleLength(c)));
        if (i === cells.length - 1 && !right.has(i)) return c; // no trailing spaces
        return right.has(i) ? pad + c : c + pad;
      })
      .join('  ');
  const out = [line(headers), ...rows.map(line)];
  return out.map((l) => (opts.maxWidth && visibleLength(l) > opts.maxWidth && !ANSI.test(l) ? `${l.slice(0, opts.maxWidth - 1)}…` : l)).join('\n');
}

export function formatUptime(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m`;
}

export function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
