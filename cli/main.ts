#!/usr/bin/env node
// The nodewarden command: parses the command line and dispatches. Errors become one clear line and a
// non-zero exit (3, "unknown", in the monitoring-plugin convention), never a stack trace. Each
// command's module loads only when that command runs, so `tail` never loads what `check` needs.
import { writeSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isNodewardenError, NodewardenError } from '../protocol/errors.js';
import { parseDuration } from '../protocol/schema.js';

const VERSION = '0.1.0';
const EXIT = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;
const COLLECTOR_NAMES = 'disk, sockstat, sockets, runtime, drift, immutable, mounts, pods';

const HELP = `nodewarden ${VERSION}: node-level troubleshooting for Kubernetes

Usage:
  nodewarden check [--json] [--only CHECKS] [--host-root DIR] [--config FILE] [--set KEY=VALUE]...
  nodewarden agent [--aggregator URL --token-file F] [--listen HOST:PORT] [--host-root DIR] [--config FILE]
  nodewarden aggregator --tokens-dir DIR [--listen HOST:PORT] [--tls-cert F --tls-key F] [--journal FILE]
                        [--evicted-cleanup 10m --evicted-older-than 1h]
  nodewarden tail [--aggregator URL] [--node N] [--check C] [--severity S] [--since 10m] [--json] [--no-follow]
  nodewarden prune --node N [--until 72h] [--dry-run] [--aggregator URL] [--token-file F] [--json]
  nodewarden up [--host-root DIR] [--config FILE] [--json]
  nodewarden evicted [--namespace NS | --all-namespaces] [--older-than 1h] [--delete] [--json]
  nodewarden why POD [-n NAMESPACE] [--aggregator URL] [--token-file F] [--json]
  nodewarden why POD [-n NAMESPACE] --local [--host-root DIR] [--config FILE] [--set KEY=VALUE]... [--node N] [--json]
  nodewarden who-holds PATH|DEVICE|CONTAINER [--json] [--host-root DIR]
  nodewarden find-immutable PATH... [--json]
  nodewarden config [--config FILE] [--set KEY=VALUE]...
  nodewarden --help | --version

Commands:
  check    Run every collector once; print the host's facts (on a terminal), the filesystems,
           the socket counters, the top socket holders and the findings, most severe first.
  agent    Run the collectors continuously, each on its own interval. With --aggregator, stream
           findings to it (hello, the whole active set, then changes; reconnects by itself).
           Serves /healthz and /metrics on agent.listen (default 0.0.0.0:9742).
  aggregator
           The server agents stream to and people tail. Tokens come from DIR/agent, DIR/tail and
           DIR/admin (one per line). --journal keeps history across restarts; --silent-after
           (default 30s) is how long a node may be unheard before it is node.silent.
           --evicted-cleanup 10m deletes evicted pods older than --evicted-older-than (1h) on
           that schedule (off by default; needs the evicted-cleanup component's RBAC).
  tail     The cluster's active findings, then every change as it happens, one line each.
           --since 10m first replays the transitions of the last 10 minutes. --no-follow prints the
           active findings and exits with check's exit codes.
  prune    Ask a node's agent, through the aggregator (admin token), to remove images that no
           container uses and that are older than --until (default 72h). Never the pause image or
           an image the CRI pinned. The agent refuses unless prune.enabled is true in its config.
  up       An aggregator on 127.0.0.1, an agent for this machine and a tail in this terminal.
  evicted  Pods kubelet evicted (phase Failed, reason Evicted), with their node and the eviction
           message; --delete deletes them. Uses $KUBECONFIG, ~/.kube/config or the pod's account.
  why      Why is this pod stuck (Terminating, or waiting to be created or started)? Prints the
           pod.stuck finding its node's agent keeps (any tail token), cause first, then what was
           checked in the runbooks' order. --local diagnoses it on this node now (needs the API
           server: kubernetes.server, or in a pod its service account). Exit 0 not stuck, 2 stuck,
           3 unknown.
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
  --json              machine-readable output (check: one document; tail: one object per line)
  --only NAMES        comma-separated collectors to run (${COLLECTOR_NAMES})
  --host-root DIR     where the host's root filesystem is mounted (default /; /host in the DaemonSet)
  --config FILE       YAML or JSON file of thresholds (see the README for every key and default)
  --set KEY=VALUE     override one config key, e.g. --set collectors.disk.usage.warning=80
  --node NAME         node name on findings (default: $NODE_NAME, else the hostname)
  --aggregator URL    ws:// or wss:// (default $NODEWARDEN_AGGREGATOR, else ws://127.0.0.1:9743)
  --token-file FILE   the bearer token to present (default $NODEWARDEN_TOKEN_FILE or $NODEWARDEN_TOKEN)
  -v, --verbose       also print the agent's JSON logs on stderr (check)
  -h, --help          this help

Exit codes (check, tail --no-follow): 0 no finding, 1 warning, 2 critical, 3 unknown (bad usage or
config, a collector that could not run). Errors are one line on stderr.

Examples:
  nodewarden check
  nodewarden check --only disk,sockstat --json | jq '.findings[] | {check, subject, message}'
  nodewarden who-holds /var/lib/docker/overlay2/8bde3ec18c5a
  nodewarden tail --aggregator wss://nodewarden.example:9743 --severity warning --since 30m
  nodewarden prune --node worker-3 --until 72h --dry-run
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

/** Parses a command's flags; --help prints the help and exits 0, a bad flag exits 3. */
function parse(args: string[], options: ParseArgsConfig['options'], allowPositionals = false): { values: Record<string, unknown>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals, strict: true });
  } catch (err) {
    usageError(err instanceof Error ? err.message.replace(/^TypeError \[.*?\]: /, '') : String(err));
  }
  if (parsed.values['help']) {
    writeSync(1, HELP);
    process.exit(EXIT.OK);
  }
  return parsed;
}

async function writeAndExit(text: string, code: number): Promise<never> {
  await new Promise<void>((resolve) => process.stdout.write(text, () => resolve()));
  // Exit explicitly: a collector stuck on a hung mount must not keep the command alive.
  process.exit(code);
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const sets = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : []);

function durationFlag(flag: string, v: unknown, def: number): number {
  if (v === undefined) return def;
  const ms = parseDuration(String(v));
  if (ms === undefined) throw new NodewardenError('NW_ERR_USAGE', `${flag} must be a duration such as 30m, 72h or 7d, got ${String(v)}`);
  return ms;
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
        const only = str(values['only'])?.split(',').map((x) => x.trim()).filter(Boolean);
        if (only !== undefined && only.length === 0) usageError('--only needs at least one collector name');
        const { runCheck } = await import('./check.js');
        const { code, text } = await runCheck(
          { json: Boolean(values['json']), only, hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']), node: str(values['node']), verbose: Boolean(values['verbose']) },
          process.stdout,
        );
        return writeAndExit(text, code);
      }
      case 'agent': {
        const { values } = parse(rest, { aggregator: { type: 'string' }, 'token-file': { type: 'string' }, listen: { type: 'string' } });
        const { runAgent } = await import('./agent.js');
        return await runAgent({
          hostRoot: str(values['host-root']),
          config: str(values['config']),
          sets: sets(values['set']),
          node: str(values['node']),
          aggregator: str(values['aggregator']),
          tokenFile: str(values['token-file']),
          listen: str(values['listen']),
        });
      }
      case 'aggregator': {
        const { values } = parse(rest, {
          listen: { type: 'string' },
          'tokens-dir': { type: 'string' },
          'tls-cert': { type: 'string' },
          'tls-key': { type: 'string' },
          journal: { type: 'string' },
          history: { type: 'string' },
          'silent-after': { type: 'string' },
          heartbeat: { type: 'string' },
          'log-level': { type: 'string' },
          'evicted-cleanup': { type: 'string' },
          'evicted-older-than': { type: 'string' },
        });
        const { runAggregator } = await import('./aggregator.js');
        return await runAggregator({
          listen: str(values['listen']) ?? '0.0.0.0:9743',
          tokensDir: str(values['tokens-dir']),
          tlsCert: str(values['tls-cert']),
          tlsKey: str(values['tls-key']),
          journal: str(values['journal']),
          history: str(values['history']),
          silentAfter: str(values['silent-after']),
          heartbeat: str(values['heartbeat']),
          logLevel: str(values['log-level']),
          evictedCleanup: str(values['evicted-cleanup']),
          evictedOlderThan: str(values['evicted-older-than']),
        });
      }
      case 'tail': {
        const { values } = parse(rest, {
          aggregator: { type: 'string' },
          'token-file': { type: 'string' },
          check: { type: 'string' },
          severity: { type: 'string' },
          since: { type: 'string' },
          json: { type: 'boolean' },
          'no-follow': { type: 'boolean' },
        });
        const severity = str(values['severity']);
        if (severity && !['info', 'warning', 'critical'].includes(severity)) usageError('--severity must be info, warning or critical');
        const since = values['since'] === undefined ? undefined : Date.now() - durationFlag('--since', values['since'], 0);
        const { aggregatorUrl, token, toWs } = await import('./remote.js');
        const { Tail } = await import('./tail.js');
        const { useColor } = await import('./format.js');
        const filter: Record<string, string> = {};
        for (const k of ['node', 'check'] as const) if (str(values[k])) filter[k] = str(values[k])!;
        if (severity) filter['severity'] = severity;
        const tail = new Tail({
          url: toWs(aggregatorUrl(str(values['aggregator']))),
          token: token(str(values['token-file'])),
          filter,
          ...(since !== undefined ? { sinceMs: since } : {}),
          follow: !values['no-follow'],
          json: Boolean(values['json']),
          color: !values['json'] && useColor(process.stdout),
          columns: process.stdout.columns,
          out: (l) => process.stdout.write(`${l}\n`),
          err: (l) => process.stderr.write(`${l}\n`),
        });
        process.once('SIGINT', () => tail.stop(0));
        process.once('SIGTERM', () => tail.stop(0));
        tail.start();
        return writeAndExit('', await tail.done);
      }
      case 'prune': {
        const { values } = parse(rest, { aggregator: { type: 'string' }, 'token-file': { type: 'string' }, until: { type: 'string' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } });
        const node = str(values['node']);
        if (!node) usageError('prune needs --node NAME');
        const { aggregatorUrl, token, toHttp } = await import('./remote.js');
        const { runPrune } = await import('./prune.js');
        const code = await runPrune({
          url: toHttp(aggregatorUrl(str(values['aggregator']))),
          token: token(str(values['token-file'])),
          node,
          untilMs: durationFlag('--until', values['until'], 72 * 3_600_000),
          dryRun: Boolean(values['dry-run']),
          json: Boolean(values['json']),
          tty: Boolean(process.stdout.isTTY) && !values['json'],
          out: (t) => process.stdout.write(t),
        });
        return writeAndExit('', code);
      }
      case 'up': {
        const { values } = parse(rest, { json: { type: 'boolean' } });
        const { runUp } = await import('./up.js');
        return await runUp({ hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']), json: Boolean(values['json']) });
      }
      case 'evicted': {
        const { values } = parse(rest, { namespace: { type: 'string', short: 'n' }, 'all-namespaces': { type: 'boolean', short: 'A' }, 'older-than': { type: 'string' }, delete: { type: 'boolean' }, json: { type: 'boolean' } });
        if (values['namespace'] !== undefined && values['all-namespaces']) usageError('--namespace and --all-namespaces exclude each other');
        const { runEvicted } = await import('./evicted.js');
        const code = await runEvicted(
          { ...(str(values['namespace']) ? { namespace: str(values['namespace'])! } : {}), allNamespaces: Boolean(values['all-namespaces']), olderThanMs: durationFlag('--older-than', values['older-than'], 3_600_000), delete: Boolean(values['delete']), json: Boolean(values['json']), columns: process.stdout.columns },
          (s) => process.stdout.write(s),
        );
        return writeAndExit('', code);
      }
      case 'why': {
        const { values, positionals } = parse(rest, { namespace: { type: 'string', short: 'n' }, local: { type: 'boolean' }, json: { type: 'boolean' }, aggregator: { type: 'string' }, 'token-file': { type: 'string' } }, true);
        if (positionals.length !== 1) usageError('why takes exactly one POD (and -n NAMESPACE)');
        const { runWhy } = await import('./why.js');
        const { code, text } = await runWhy(
          { pod: positionals[0]!, namespace: str(values['namespace']) ?? 'default', local: Boolean(values['local']), json: Boolean(values['json']), aggregator: str(values['aggregator']), tokenFile: str(values['token-file']), node: str(values['node']), hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']) },
          process.stdout,
        );
        return writeAndExit(text, code);
      }
      case 'who-holds': {
        const { values, positionals } = parse(rest, { json: { type: 'boolean' } }, true);
        if (positionals.length !== 1) usageError('who-holds takes exactly one PATH, /dev/DEVICE or CONTAINER');
        const { runWhoHolds } = await import('./who-holds.js');
        const { code, text } = await runWhoHolds({ target: positionals[0]!, json: Boolean(values['json']), hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']) }, process.stdout);
        return writeAndExit(text, code);
      }
      case 'find-immutable': {
        const { values, positionals } = parse(rest, { json: { type: 'boolean' } }, true);
        if (positionals.length === 0) usageError('find-immutable needs at least one PATH');
        const { runFindImmutable } = await import('./find-immutable.js');
        const { code, text } = await runFindImmutable(positionals, { json: Boolean(values['json']) });
        return writeAndExit(text, code);
      }
      case 'config': {
        const { values } = parse(rest, {});
        const { renderConfig } = await import('./config.js');
        return writeAndExit(renderConfig({ config: str(values['config']), sets: sets(values['set']), node: str(values['node']) }), EXIT.OK);
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
