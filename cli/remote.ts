// Where the aggregator is and which token to show it, for tail and prune (flags, then environment).
import { NodewardenError } from '../protocol/errors.js';
import { readTokenFile } from '../protocol/tokens.js';

export const DEFAULT_AGGREGATOR = 'ws://127.0.0.1:9743';

export function aggregatorUrl(flag: string | undefined): string {
  const url = flag ?? process.env['NODEWARDEN_AGGREGATOR'] ?? DEFAULT_AGGREGATOR;
  if (!/^(wss?|https?):\/\/[^/]+/.test(url)) throw new NodewardenError('NW_ERR_USAGE', `--aggregator must be a ws://, wss://, http:// or https:// URL, got ${url}`);
  return url.replace(/\/+$/, '');
}

/** The token from --token-file, $NODEWARDEN_TOKEN_FILE or $NODEWARDEN_TOKEN. */
export function token(flag: string | undefined): string {
  const file = flag ?? process.env['NODEWARDEN_TOKEN_FILE'];
  if (file) return readTokenFile(file);
  const env = process.env['NODEWARDEN_TOKEN'];
  if (env) return env.trim();
  throw new NodewardenError('NW_ERR_USAGE', 'no token: pass --token-file FILE, or set NODEWARDEN_TOKEN_FILE or NODEWARDEN_TOKEN');
}

export const toWs = (url: string) => url.replace(/^http/, 'ws');
export const toHttp = (url: string) => url.replace(/^ws/, 'http');
