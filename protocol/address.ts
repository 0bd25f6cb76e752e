// HOST:PORT, as the agent's `agent.listen` and the aggregator's `--listen` take it: one parser for both
// (there were three, and only one of them refused port 99999).
import { NodewardenError, errnoCode, errorMessage } from './errors.js';

const PORT = '(6553[0-5]|655[0-2]\\d|65[0-4]\\d{2}|6[0-4]\\d{3}|[1-5]\\d{4}|\\d{1,4})';

/** HOST:PORT: HOST a name, an IPv4 address, a bracketed IPv6 address, or empty for every interface; PORT 0-65535. */
export const HOST_PORT = new RegExp(`^(\\[[0-9a-fA-F:.]+\\]|[^:\\s[\\]]*):${PORT}$`);

/** The host (brackets off; '' is 0.0.0.0) and port of HOST:PORT, or undefined when it is not one. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const m = HOST_PORT.exec(text);
  if (!m) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, '') || '0.0.0.0', port: Number(m[2]) };
}

/**
 * A listen() failure as the one line a person can act on: which flag, which address, what to do.
 * (EADDRINUSE with a stack trace was what `aggregator --listen` on a busy port printed.)
 */
export function listenFailure(err: unknown, flag: string, at: { host: string; port: number }): NodewardenError {
  const code = errnoCode(err);
  const where = `${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`;
  const why =
    code === 'EADDRINUSE'
      ? `${where} is already in use (another nodewarden, or another server, listens there): stop it, or give ${flag} another port`
      : code === 'EACCES'
        ? `no permission to listen on ${where} (ports below 1024 need root or CAP_NET_BIND_SERVICE): run as root, or give ${flag} a port of 1024 or more`
        : code === 'EADDRNOTAVAIL'
          ? `${at.host} is not an address of this machine: give ${flag} one of its addresses, or 0.0.0.0`
          : `cannot listen on ${where}: ${errorMessage(err)}`;
  // The errno stays reachable as the cause: `up` picks another port on EADDRINUSE.
  return new NodewardenError('NW_ERR_CONFIG', `${flag}: ${why}`, { cause: err });
}
