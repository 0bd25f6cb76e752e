#!/usr/bin/env node
// The nodewarden command's entry point: finds the command in the table (cli/commands.ts), parses its
// flags from there, runs it and exits with its code. Errors become one clear line and a non-zero exit
// (3, "unknown", in the monitoring-plugin convention), never a stack trace.
import { escapeForTerminal } from '../protocol/terminal.js';
import { isNodewardenError } from '../protocol/errors.js';
import { commandHelp, EXIT, findCommand, globalHelp, parseCommand, UsageError, VERSION } from './commands.js';

async function writeAndExit(text: string, code: number): Promise<never> {
  await new Promise<void>((resolve) => process.stdout.write(text, () => resolve()));
  // Exit explicitly: a collector stuck on a hung mount must not keep the command alive.
  process.exit(code);
}

export async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const about = name === 'help' && rest[0] !== undefined ? findCommand(rest[0]) : undefined;
    return writeAndExit(about ? await commandHelp(about) : await globalHelp(), name === undefined ? EXIT.UNKNOWN : EXIT.OK);
  }
  if (name === '--version' || name === '-V') return writeAndExit(`${VERSION}\n`, EXIT.OK);
  try {
    const command = findCommand(name);
    if (!command) throw new UsageError(`unknown command '${name}'`);
    const parsed = parseCommand(command, rest);
    if (parsed.help) return writeAndExit(await commandHelp(command), EXIT.OK);
    const { code, text } = await command.run(parsed);
    return writeAndExit(text ?? '', code);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`nodewarden: ${escapeForTerminal(err.message)}\nRun 'nodewarden ${findCommand(name) ? `${name} ` : ''}--help' for usage.\n`);
      process.exit(EXIT.UNKNOWN);
    }
    if (isNodewardenError(err)) {
      // An error may carry a peer's words (an aggregator's or API server's answer): escaped, like all peer text.
      const details = err.details.map((d) => `  ${escapeForTerminal(d)}\n`).join('');
      process.stderr.write(`nodewarden: ${escapeForTerminal(err.message)}\n${details}`);
      process.exit(EXIT.UNKNOWN);
    }
    // One line; the stack only when asked for (it helps a bug report, not an operator).
    const debug = Boolean(process.env['NODEWARDEN_DEBUG']);
    process.stderr.write(`nodewarden: unexpected error: ${escapeForTerminal(err instanceof Error ? (debug ? (err.stack ?? err.message) : err.message) : String(err))}${debug ? '' : ' (NODEWARDEN_DEBUG=1 shows where)'}\n`);
    process.exit(EXIT.UNKNOWN);
  }
}

await main(process.argv.slice(2));
