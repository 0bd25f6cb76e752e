// The token file format every part shares: one bearer token per line, optionally "NAME TOKEN"; blank
// lines and # comments ignored. Agents and the CLI present the first token of a file; the aggregator
// accepts every token of its files.
import { readFileSync } from 'node:fs';
import { NodewardenError, errnoCode } from './errors.js';

export const MIN_TOKEN_LENGTH = 16;

export function parseTokenLines(text: string): { name?: string; secret: string; line: number }[] {
  const out: { name?: string; secret: string; line: number }[] = [];
  text.split('\n').forEach((raw, i) => {
    const l = raw.trim();
    if (l === '' || l.startsWith('#')) return;
    const parts = l.split(/\s+/);
    out.push(parts.length > 1 ? { name: parts[0]!, secret: parts[1]!, line: i + 1 } : { secret: parts[0]!, line: i + 1 });
  });
  return out;
}

/** The token to present, from a file; NW_ERR_CONFIG when it is missing, empty or too short. */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new NodewardenError('NW_ERR_CONFIG', `cannot read token file ${file}: ${errnoCode(err) === 'ENOENT' ? 'no such file' : String(err)}`);
  }
  const token = parseTokenLines(text)[0]?.secret ?? '';
  if (token.length < MIN_TOKEN_LENGTH) throw new NodewardenError('NW_ERR_CONFIG', `token file ${file} holds no token of at least ${MIN_TOKEN_LENGTH} characters`);
  return token;
}
