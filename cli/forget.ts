// `nodewarden forget NODE`: asks the aggregator (admin token) to forget a node, such as one deleted
// from the cluster or a name an agent should never have used. Its findings resolve and it is no
// longer reported silent. Exit 0 forgotten, 1 refused (unknown node, agent connected), 3 impossible.
import { NodewardenError, errorMessage } from '../protocol/errors.js';

export interface ForgetOptions {
  url: string;
  token: string;
  node: string;
  timeoutMs?: number;
}

/** Control characters (C0, DEL, C1) from the server's answer never reach the terminal raw. */
const printable = (s: string) => s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

export async function runForget(opts: ForgetOptions, out: (s: string) => void): Promise<number> {
  let res: Response;
  try {
    res = await fetch(`${opts.url}/api/nodes/${encodeURIComponent(opts.node)}`, { method: 'DELETE', headers: { authorization: `Bearer ${opts.token}` }, signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) });
  } catch (err) {
    throw new NodewardenError('NW_ERR_RUNTIME', `cannot reach the aggregator at ${opts.url}: ${errorMessage(err)}`);
  }
  let body: { error?: unknown } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    // not JSON: the status says enough
  }
  if (res.ok) {
    out(`forgot node ${printable(opts.node)}\n`);
    return 0;
  }
  const why = printable(typeof body.error === 'string' ? body.error : `HTTP ${res.status}`).slice(0, 300);
  if (res.status === 401 || res.status === 403) throw new NodewardenError('NW_ERR_USAGE', `the aggregator refused: ${why} (forget needs an admin token)`);
  out(`not forgotten: ${why}\n`);
  return 1;
}
