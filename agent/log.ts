// pino JSON logs on stderr (stdout belongs to the command's output), with the node bound. People read
// them with `kubectl logs` on a terminal: JSON escapes C0 but not C1 (U+009B is a one-character CSI),
// so each line goes through jsonForTerminal's rule before it is written.
import { pino, type Logger } from 'pino';
import { escapeJsonLine } from '../protocol/terminal.js';

/**
 * One key, one meaning: in an agent's lines `node` is the node it runs on (bound here); the aggregator
 * binds `component: "aggregator"` instead, so that in its lines `node` is always the peer's node.
 */
export function createLogger(opts: ({ node: string } | { component: 'aggregator' }) & { level: string; destination?: number }): Logger {
  const dest = pino.destination({ dest: opts.destination ?? 2, sync: true });
  const base = 'node' in opts ? { node: opts.node } : { component: opts.component };
  return pino({ level: opts.level, base }, { write: (line: string) => dest.write(escapeJsonLine(line)) });
}
