#!/usr/bin/env node
// The nodewarden command: parses the command line and dispatches. Errors become one clear line and a
// non-zero exit (3, "unknown", in the monitoring-plugin convention), never a stack trace.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isNodewardenError } from '../protocol/errors.js';
import { COLLECTORS } from '../collectors/index.js';

// Exit codes of the monitoring-plugin convention. Command modules load only when their command runs.
const EXIT = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;

const VERSION = '0.1.0';

const HELP = `nodewarden ${VERSION}: node-level troubleshooting for Kubernetes

Usage:
  nodewarden check [--json] [--only CHECKS] [--host-root DIR] [--config FILE] [--set KEY=VALUE]...
  nodewarden agent [--host-root DIR] [--config FILE] [--set KEY=VALUE]...
  nodewarden who-holds PATH|DEVICE|CONTAINER [--json] [--host-root DIR]
  nodewarden find-immutable PATH... [--json]
  nodewarden config [--config FILE] [--set KEY=VALUE]...
  nodewarden --help | --version

Commands:
  check    Run every collector once; print the host's facts (on a terminal), the filesystems,
           the socket counters, the top socket holders and the findings, most severe first.
  agent    Run the collectors continuously, each on its own interval; log every finding that
           fires or resolves as a JSON line on stderr. Stops cleanly on SIGTERM or SIGINT.
  who-holds
           Which processes hold a mount: every mount namespace is read once, and each holder is
           shown with pid, command, namespace, container and pod, and the matching mount line.
           PATH matches mount points under it and overlay dirs; /dev/X the device; a container id
           or name its storage; any other text is searched in the mount lines, like grep.
           Exit 0 when something holds it, 1 when nothing does.
  find-immutable
           Files under PATH carrying the immutable (i) or append-only (a) attribute: what
           lsattr -R | grep finds, with one statx per entry on every core. Does not cross
           filesystems or follow symlinks. Exit 0 when something is found, 1 when nothing is.
  config   Print the effective config (defaults, then the file, then --set) as commented YAML;
           exit 3 listing every problem if it is invalid. Start a config file from its output.

Options:
  --json              print one JSON document: {"node","findings","collectors","data"}
  --only NAMES        comma-separated collectors to run (${COLLECTORS.map((c) => c.name).join(', ')})
  --host-root DIR     where the host's root filesystem is mounted (default /; /host in the DaemonSet)
  --config FILE       YAML or JSON file of thresholds (see the README for every key and default)
  --set KEY=VALUE     override one config key, e.g. --set collectors.disk.usage.warning=80
  --node NAME         node name on findings (default: $NODE_NAME, else the hostname)
  -v, --verbose       also print the agent's JSON logs on stderr (check)
  -h, --help          this help

Exit codes (check): 0 no finding, 1 warning, 2 critical, 3 unknown (bad usage or config, a collector
that could not run).

Examples:
  nodewarden check
  nodewarden check --only disk,sockstat --json | jq '.findings[] | {check, subject, message}'
  nodewarden check --host-root /host --set collectors.sockets.maxPerProcess=5000
`;

const COMMON: ParseArgsConfig['options'] = {
  'host-root': { type: 'string' },
  config: { type: 'string' },
  set: { type: 'string', multiple: true },
  node: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

function usageError(message: string): never {
  process.stderr.write(`nodewarden: ${message}\nRun 'nodewarden --help' for usage.\n`);
  process.exit(EXIT.UNKNOWN);
}

function parse(args: string[], options: ParseArgsConfig['options'], allowPositionals = false): { values: Record<string, unknown>; positionals: string[] } {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals, strict: true });
  } catch (err) {
    usageError(err instanceof Error ? err.message.replace(/^TypeError \[.*?\]: /, '') : String(err));
  }
}

async function writeAndExit(text: string, code: number): Promise<never> {
  await new Promise<void>((resolve) => process.stdout.write(text, () => resolve()));
  // Exit explicitly: a collector stuck on a hung mount must not keep the command alive.
  process.exit(code);
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    return writeAndExit(HELP, command === undefined ? EXIT.UNKNOWN : EXIT.OK);
  }
  if (command === '--version' || command === '-V') return writeAndExit(`${VERSION}\n`, EXIT.OK);
  try {
    switch (command) {
      case 'check': {
        const { values } = parse(rest, { json: { type: 'boolean' }, only: { type: 'string' }, verbose: { type: 'boolean', short: 'v' } });
        if (values['help']) return writeAndExit(HELP, EXIT.OK);
        const only = typeof values['only'] === 'string' ? values['only'].split(',').map((x) => x.trim()).filter(Boolean) : undefined;
        if (only !== undefined && only.length === 0) usageError('--only needs at least one collector name');
        const { runCheck } = await import('./check.js');
        const { code, text } = await runCheck(
          {
            json: Boolean(values['json']),
            only,
            hostRoot: values['host-root'] as string | undefined,
            config: values['config'] as string | undefined,
            sets: (values['set'] as string[] | undefined) ?? [],
            node: values['node'] as string | undefined,
            verbose: Boolean(values['verbose']),
          },
          process.stdout,
        );
        return writeAndExit(text, code);
      }
      case 'agent': {
        const { values } = parse(rest, {});
        if (values['help']) return writeAndExit(HELP, EXIT.OK);
        const { runAgent } = await import('./agent.js');
        await runAgent({
          hostRoot: values['host-root'] as string | undefined,
          config: values['config'] as string | undefined,
          sets: (values['set'] as string[] | undefined) ?? [],
          node: values['node'] as string | undefined,
        });
        return;
      }
      case 'who-holds': {
        const { values, positionals } = parse(rest, { json: { type: 'boolean' } }, true);
        if (values['help']) return writeAndExit(HELP, EXIT.OK);
        if (positionals.length !== 1) usageError('who-holds takes exactly one PATH, /dev/DEVICE or CONTAINER');
        const { runWhoHolds } = await import('./who-holds.js');
        const { code, text } = await runWhoHolds(
          { target: positionals[0]!, json: Boolean(values['json']), hostRoot: values['host-root'] as string | undefined, config: values['config'] as string | undefined, sets: (values['set'] as string[] | undefined) ?? [] },
          process.stdout,
        );
        return writeAndExit(text, code);
      }
      case 'find-immutable': {
        const { values, positionals } = parse(rest, { json: { type: 'boolean' } }, true);
        if (values['help']) return writeAndExit(HELP, EXIT.OK);
        if (positionals.length === 0) usageError('find-immutable needs at least one PATH');
        const { runFindImmutable } = await import('./find-immutable.js');
        const { code, text } = await runFindImmutable(positionals, { json: Boolean(values['json']) });
        return writeAndExit(text, code);
      }
      case 'config': {
        const { values } = parse(rest, {});
        if (values['help']) return writeAndExit(HELP, EXIT.OK);
        const { renderConfig } = await import('./config.js');
        return writeAndExit(
          renderConfig({ config: values['config'] as string | undefined, sets: (values['set'] as string[] | undefined) ?? [], node: values['node'] as string | undefined }),
          EXIT.OK,
        );
      }
      default:
        usageError(`unknown command '${command}'`);
    }
  } catch (err) {
    if (isNodewardenError(err)) {
      const details = err.details.map((d) => `  ${d}\n`).join('');
      process.stderr.write(`nodewarden: ${err.message}\n${details}`);
      process.exit(EXIT.UNKNOWN);
    }
    process.stderr.write(`nodewarden: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(EXIT.UNKNOWN);
  }
}

await main(process.argv.slice(2));
