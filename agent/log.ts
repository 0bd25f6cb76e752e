// pino JSON logs on stderr (stdout belongs to the command's output), with the node bound.
import { pino, type Logger } from 'pino';

export function createLogger(opts: { node: string; level: string; destination?: number }): Logger {
  return pino({ level: opts.level, base: { node: opts.node } }, pino.destination({ dest: opts.destination ?? 2, sync: true }));
}
