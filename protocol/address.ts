// HOST:PORT, as the agent's `agent.listen` and the aggregator's `--listen` take it: one parser for both
// (there were three, and only one of them refused port 99999).

const PORT = '(6553[0-5]|655[0-2]\\d|65[0-4]\\d{2}|6[0-4]\\d{3}|[1-5]\\d{4}|\\d{1,4})';

/** HOST:PORT: HOST a name, an IPv4 address, a bracketed IPv6 address, or empty for every interface; PORT 0-65535. */
export const HOST_PORT = new RegExp(`^(\\[[0-9a-fA-F:.]+\\]|[^:\\s[\\]]*):${PORT}$`);

/** The host (brackets off; '' is 0.0.0.0) and port of HOST:PORT, or undefined when it is not one. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const m = HOST_PORT.exec(text);
  if (!m) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, '') || '0.0.0.0', port: Number(m[2]) };
}
