// pino JSON logs on stderr (stdout belongs to the command's output), with the node bound. People read
// them with `kubectl logs` on a terminal: JSON escapes C0 but not C1 (U+009B is a one-character CSI),
// so each line goes through jsonForTerminal's rule before it is written.
import { pino, type Logger } from 'pino';
import { escapeJsonLine } from '../protocol/terminal.js';

export function createLogger(opts: { node: string; level: string; destination?: number }): Logger {
  const dest = pino.destination({ dest: opts.destination ?? 2, sync: true });
  return pino({ level: opts.level, base: { node: opts.node } }, { write: (line: string) => dest.write(escapeJsonLine(line)) });
}
