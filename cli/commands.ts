// The nodewarden command as a table: each command names its flags, positionals and description, and
// parsing, `nodewarden --help`, `nodewarden COMMAND --help` and docs/cli.md all derive
// from it, so adding a flag is one edit. Command modules load only when their command runs.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { NodewardenError, errorMessage } from '../protocol/errors.js';
import { parseDuration } from '../protocol/schema.js';
import { VERSION } from '../protocol/version.js';

export { VERSION };
export const EXIT = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;

export interface Flag {
  name: string;
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** The value's placeholder in usage lines (string flags). */
  value?: string;
  /** Shown without brackets in the usage line. */
  required?: boolean;
  help: string;
}

export interface Parsed {
  values: Record<string, unknown>;
  positionals: string[];
}

export interface Command {
  name: string;
  /** Positionals in the usage line (e.g. `PATH...`); none accepted when absent. */
  positionals?: string;
  flags: readonly Flag[];
  /** What it does, for --help (wrapped by the help renderer). */
  description: string;
  /** Runs the command; resolves to an exit code, or never resolves for daemons that exit themselves. */
  run(args: Parsed): Promise<{ code: number; text?: string }>;
}

/** Thrown for bad usage: one line, then a pointer to --help, exit 3. */
export class UsageError extends NodewardenError {
  constructor(message: string) {
    super('NW_ERR_USAGE', message);
  }
}

// ---- flags shared by several commands: defined once, help text included ----
const f = {
  json: { name: 'json', type: 'boolean', help: 'machine-readable output' },
  hostRoot: { name: 'host-root', type: 'string', value: 'DIR', help: "where the host's root filesystem is mounted (default /; /host in the DaemonSet)" },
  config: { name: 'config', type: 'string', value: 'FILE', help: 'YAML or JSON file of thresholds (every key and default: nodewarden config, docs/configuration.md)' },
  set: { name: 'set', type: 'string', value: 'KEY=VALUE', multiple: true, help: 'override one config key, e.g. --set collectors.disk.usage.warning=80 (repeatable)' },
  node: { name: 'node', type: 'string', value: 'NAME', help: 'node name on findings (default: $NODE_NAME, else the hostname)' },
  aggregator: { name: 'aggregator', type: 'string', value: 'URL', help: 'ws:// or wss:// (default $NODEWARDEN_AGGREGATOR, else ws://127.0.0.1:9743)' },
  tokenFile: { name: 'token-file', type: 'string', value: 'FILE', help: 'the bearer token to present (default $NODEWARDEN_TOKEN_FILE or $NODEWARDEN_TOKEN)' },
  listen: { name: 'listen', type: 'string', value: 'HOST:PORT', help: 'where to listen' },
} satisfies Record<string, Flag>;

const HELP_FLAG: Flag = { name: 'help', type: 'boolean', short: 'h', help: 'this help' };

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const sets = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : []);

const MAX_DURATION_MS = 3650 * 86_400_000;

function durationFlag(flag: string, v: unknown, def: number): number {
  if (v === undefined) return def;
  const ms = parseDuration(String(v));
  if (ms === undefined) throw new UsageError(`${flag} must be a duration such as 30s, 5m, 72h or 7d, got ${String(v)}`);
  // A duration past this is a typo (100000000h), and one before 1970 made tail retry for ever.
  if (ms > MAX_DURATION_MS) throw new UsageError(`${flag} must be at most 3650d (ten years), got ${String(v)}`);
  return ms;
}

export const COMMANDS: readonly Command[] = [
  {
    name: 'check',
    flags: [
      { ...f.json, help: 'one JSON document: node, findings, collectors, data' },
      { name: 'only', type: 'string', value: 'NAMES', multiple: true, help: 'comma-separated collectors to run (COLLECTORS), even ones the config disables; repeatable' },
      f.hostRoot,
      f.config,
      f.set,
      f.node,
      { name: 'verbose', type: 'boolean', short: 'v', help: "also print the agent's JSON logs on stderr" },
    ],
    description:
      "Run every collector once; print the host's facts (on a terminal), the filesystems, the socket counters, the top socket holders and the findings, most severe first. Exit 0 no finding, 1 warning, 2 critical, 3 unknown.",
    async run({ values }) {
      // Repeated --only flags add up (--only disk --only sockstat), as comma lists do.
      const only = values['only'] === undefined ? undefined : [...new Set(sets(values['only']).flatMap((v) => v.split(',')).map((x) => x.trim()).filter(Boolean))];
      if (only !== undefined && only.length === 0) throw new UsageError('--only needs at least one collector name');
      const { runCheck } = await import('./check.js');
      return runCheck(
        { json: Boolean(values['json']), only, hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']), node: str(values['node']), verbose: Boolean(values['verbose']) },
        process.stdout,
      );
    },
  },
  {
    name: 'agent',
    flags: [
      { ...f.aggregator, help: 'stream findings to this aggregator (ws:// or wss://); needs --token-file' },
      { ...f.tokenFile, help: 'the agent token (default $NODEWARDEN_TOKEN_FILE)' },
      { ...f.listen, help: "HOST:PORT for /healthz and /metrics (overrides agent.listen, default 0.0.0.0:9742)" },
      f.hostRoot,
      f.config,
      f.set,
      f.node,
    ],
    description:
      'Run the collectors continuously, each on its own interval. With --aggregator, stream findings to it (hello, the whole active set, then changes; reconnects by itself). Serves /healthz and /metrics on agent.listen.',
    async run({ values }) {
      const { runAgent } = await import('./agent.js');
      await runAgent({ hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']), node: str(values['node']), aggregator: str(values['aggregator']), tokenFile: str(values['token-file']), listen: str(values['listen']) });
      return { code: EXIT.OK };
    },
  },
  {
    name: 'aggregator',
    flags: [
      { name: 'tokens-dir', type: 'string', value: 'DIR', required: true, help: 'token files agent, tail and admin, one token per line (or $NODEWARDEN_TOKENS_DIR)' },
      { ...f.listen, help: 'HOST:PORT to serve on (default 0.0.0.0:9743)' },
      { name: 'tls-cert', type: 'string', value: 'FILE', help: 'serve wss:// and https:// with this certificate (with --tls-key)' },
      { name: 'tls-key', type: 'string', value: 'FILE', help: "the certificate's private key" },
      { name: 'journal', type: 'string', value: 'FILE', help: 'append every transition here; restore history and active sets from it at start' },
      { name: 'history', type: 'string', value: 'N', help: 'transitions kept in memory (default 10000)' },
      { name: 'silent-after', type: 'string', value: 'DURATION', help: 'a node unheard this long is node.silent (default 30s)' },
      { name: 'heartbeat', type: 'string', value: 'DURATION', help: 'ping agents and tails this often (default 10s)' },
      { name: 'log-level', type: 'string', value: 'LEVEL', help: 'pino log level (default info)' },
      { name: 'evicted-cleanup', type: 'string', value: 'DURATION', help: 'delete evicted pods on this schedule (off by default; needs the RBAC of manifests/components/evicted-cleanup)' },
      { name: 'evicted-older-than', type: 'string', value: 'DURATION', help: 'only evicted pods older than this (default 1h)' },
      { name: 'agent-auth', type: 'string', value: 'tokens|kubernetes', help: "kubernetes also accepts agents' bound service-account tokens (audience nodewarden, checked by TokenReview): each speaks only for its own node" },
      { name: 'agent-service-account', type: 'string', value: 'NS:NAME', help: 'with --agent-auth kubernetes: the service account agents run as (default nodewarden:nodewarden-agent)' },
      { name: 'max-connections', type: 'string', value: 'N', help: 'open connections at once (default 10000)' },
      { name: 'max-nodes-per-token', type: 'string', value: 'N', help: 'nodes one shared agent token may speak for (default 5000)' },
      { name: 'max-findings-per-node', type: 'string', value: 'N', help: 'active findings kept per node (default 2000)' },
    ],
    description:
      'The server agents stream to and people tail. Tokens come from DIR/agent, DIR/tail and DIR/admin (one per line), re-read when they change and on SIGHUP. --journal keeps history across restarts.',
    async run({ values }) {
      const { runAggregator } = await import('./aggregator.js');
      await runAggregator({
        listen: str(values['listen']) ?? '0.0.0.0:9743',
        tokensDir: str(values['tokens-dir']),
        tlsCert: str(values['tls-cert']),
        tlsKey: str(values['tls-key']),
        journal: str(values['journal']),
        history: str(values['history']),
        silentAfterMs: durationFlag('--silent-after', values['silent-after'], 30_000),
        heartbeatMs: durationFlag('--heartbeat', values['heartbeat'], 10_000),
        logLevel: str(values['log-level']),
        ...(values['evicted-cleanup'] !== undefined ? { evictedCleanupMs: durationFlag('--evicted-cleanup', values['evicted-cleanup'], 600_000) } : {}),
        evictedOlderThanMs: durationFlag('--evicted-older-than', values['evicted-older-than'], 3_600_000),
        agentAuth: str(values['agent-auth']),
        agentServiceAccount: str(values['agent-service-account']),
        maxConnections: str(values['max-connections']),
        maxNodesPerToken: str(values['max-nodes-per-token']),
        maxFindingsPerNode: str(values['max-findings-per-node']),
      });
      return { code: EXIT.OK };
    },
  },
  {
    name: 'tail',
    flags: [
      f.aggregator,
      { ...f.tokenFile, help: 'a tail or admin token (default $NODEWARDEN_TOKEN_FILE or $NODEWARDEN_TOKEN)' },
      { ...f.node, help: 'only this node' },
      { name: 'check', type: 'string', value: 'CHECK', help: 'only this check, e.g. disk.usage' },
      { name: 'severity', type: 'string', value: 'SEVERITY', help: 'at least this severity: info, warning or critical' },
      { name: 'since', type: 'string', value: 'DURATION', help: 'first replay the transitions of the last DURATION, e.g. 10m' },
      { ...f.json, help: 'one object per line: {"at","event","finding"}' },
      { name: 'no-follow', type: 'boolean', help: "print the active findings and exit with check's exit codes" },
    ],
    description:
      "The cluster's active findings, then every change as it happens, one line each. A status line (findings by severity, nodes connected) updates in place on a terminal, and every 5 minutes at most in a pipe.",
    async run({ values }) {
      const severity = str(values['severity']);
      if (severity && !['info', 'warning', 'critical'].includes(severity)) throw new UsageError('--severity must be info, warning or critical');
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
        write: (text) => process.stdout.write(text),
        tty: Boolean(process.stdout.isTTY),
      });
      process.once('SIGINT', () => tail.stop(0));
      process.once('SIGTERM', () => tail.stop(0));
      tail.start();
      return { code: await tail.done };
    },
  },
  {
    name: 'prune',
    flags: [
      { ...f.node, required: true, help: 'the node whose images to prune' },
      { name: 'until', type: 'string', value: 'DURATION', help: 'only images older than this (default 72h)' },
      { name: 'dry-run', type: 'boolean', help: 'list what would go, with sizes; remove nothing' },
      f.aggregator,
      { ...f.tokenFile, help: 'an admin token (default $NODEWARDEN_TOKEN_FILE or $NODEWARDEN_TOKEN)' },
      { ...f.json, help: 'one object per line: accepted, progress..., result' },
    ],
    description:
      "Ask a node's agent, through the aggregator (admin token), to remove images that no container or pod sandbox uses and that are older than --until. Never a sandbox (pause) image under any registry or naming, the node's configured sandbox image or an image the CRI pinned; lists what it kept and why. The agent refuses unless prune.enabled is true in its config. Exit 0 done, 1 some images failed, 3 refused or impossible.",
    async run({ values }) {
      const node = str(values['node']);
      if (!node) throw new UsageError('prune needs --node NAME');
      const { aggregatorUrl, token, toHttp } = await import('./remote.js');
      const { runPrune } = await import('./prune.js');
      const code = await runPrune({
        url: toHttp(aggregatorUrl(str(values['aggregator']))),
        token: token(str(values['token-file'])),
        node,
        untilMs: durationFlag('--until', values['until'], 72 * 3_600_000),
        until: str(values['until']) ?? '72h',
        dryRun: Boolean(values['dry-run']),
        json: Boolean(values['json']),
        tty: Boolean(process.stdout.isTTY) && !values['json'],
        out: (t) => process.stdout.write(t),
      });
      return { code };
    },
  },
  {
    name: 'forget',
    flags: [f.aggregator, { ...f.tokenFile, help: 'an admin token (default $NODEWARDEN_TOKEN_FILE or $NODEWARDEN_TOKEN)' }],
    positionals: 'NODE',
    description:
      'Make the aggregator forget a node (admin token): its findings resolve and it is no longer reported silent. Refused while an agent is connected for it.',
    async run({ values, positionals }) {
      if (positionals.length !== 1) throw new UsageError('forget takes exactly one NODE');
      const { aggregatorUrl, token, toHttp } = await import('./remote.js');
      const { runForget } = await import('./forget.js');
      const code = await runForget({ url: toHttp(aggregatorUrl(str(values['aggregator']))), token: token(str(values['token-file'])), node: positionals[0]! }, (t) => process.stdout.write(t));
      return { code };
    },
  },
  {
    name: 'up',
    flags: [f.hostRoot, f.config, f.set, { ...f.json, help: 'findings as one object per line, as tail --json' }],
    description:
      'An aggregator on 127.0.0.1, an agent for this machine and a tail in this terminal, in one process. Prints how to reach it from another terminal (URL and token files, admin included), a summary, then a quiet status line.',
    async run({ values }) {
      const { runUp } = await import('./up.js');
      await runUp({ hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']), json: Boolean(values['json']) });
      return { code: EXIT.OK };
    },
  },
  {
    name: 'evicted',
    flags: [
      { name: 'namespace', type: 'string', short: 'n', value: 'NS', help: 'only this namespace' },
      { name: 'all-namespaces', type: 'boolean', short: 'A', help: 'every namespace (the default namespace otherwise)' },
      { name: 'older-than', type: 'string', value: 'DURATION', help: 'only pods evicted longer ago than this (default 1h)' },
      { name: 'delete', type: 'boolean', help: 'delete them' },
      f.json,
    ],
    description:
      "Pods kubelet evicted (phase Failed, reason Evicted), with their node and the eviction message; --delete deletes them. Uses $KUBECONFIG, ~/.kube/config or the pod's account.",
    async run({ values }) {
      if (values['namespace'] !== undefined && values['all-namespaces']) throw new UsageError('--namespace and --all-namespaces exclude each other');
      const { runEvicted } = await import('./evicted.js');
      const code = await runEvicted(
        { ...(str(values['namespace']) ? { namespace: str(values['namespace'])! } : {}), allNamespaces: Boolean(values['all-namespaces']), olderThanMs: durationFlag('--older-than', values['older-than'], 3_600_000), delete: Boolean(values['delete']), json: Boolean(values['json']), columns: process.stdout.columns },
        (s) => process.stdout.write(s),
      );
      return { code };
    },
  },
  {
    name: 'why',
    positionals: 'POD',
    flags: [
      { name: 'namespace', type: 'string', short: 'n', value: 'NAMESPACE', help: "the pod's namespace (default default)" },
      { name: 'local', type: 'boolean', help: "diagnose it on this node now instead of asking the aggregator (needs the API server: kubernetes.server, or in a pod its service account); takes check's flags" },
      { ...f.aggregator, help: 'ask this aggregator (any tail token) for the pod.stuck finding its node keeps' },
      { ...f.tokenFile, help: 'a tail or admin token (default $NODEWARDEN_TOKEN_FILE or $NODEWARDEN_TOKEN)' },
      f.hostRoot,
      f.config,
      f.set,
      f.node,
      f.json,
    ],
    description:
      "Why is this pod stuck (Terminating, or waiting to be created or started)? Prints the pod.stuck diagnosis: the cause first, then what was checked in the runbooks' order and what was ruled out. Through the aggregator, a pod close to its local-storage limits (pod.ephemeral) or evicted after being so is named with what grew. Exit 0 not stuck, 1 close to eviction for its local storage, 2 stuck, 3 unknown.",
    async run({ values, positionals }) {
      if (positionals.length !== 1) throw new UsageError('why takes exactly one POD (and -n NAMESPACE)');
      const { runWhy } = await import('./why.js');
      return runWhy(
        { pod: positionals[0]!, namespace: str(values['namespace']) ?? 'default', local: Boolean(values['local']), json: Boolean(values['json']), aggregator: str(values['aggregator']), tokenFile: str(values['token-file']), node: str(values['node']), hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']) },
        process.stdout,
      );
    },
  },
  {
    name: 'who-holds',
    positionals: 'PATH|DEVICE|CONTAINER',
    flags: [f.json, f.hostRoot, { ...f.config, help: 'config file, for the runtime sockets (runtime.dockerSocket, runtime.containerdSocket)' }, f.set],
    description:
      'Which processes hold a mount: every mount namespace is read once, and each holder is shown with pid, command, namespace, container and pod, and the matching mount line. PATH matches mount points under it and overlay dirs; /dev/X the device; a container id or name its storage; any other text is searched in the mount lines, like grep. Exit 0 when something holds it, 1 when nothing does.',
    async run({ values, positionals }) {
      if (positionals.length !== 1) throw new UsageError('who-holds takes exactly one PATH, /dev/DEVICE or CONTAINER');
      const { runWhoHolds } = await import('./who-holds.js');
      return runWhoHolds({ target: positionals[0]!, json: Boolean(values['json']), hostRoot: str(values['host-root']), config: str(values['config']), sets: sets(values['set']) }, process.stdout);
    },
  },
  {
    name: 'find-immutable',
    positionals: 'PATH...',
    flags: [f.json],
    description:
      'Files under PATH carrying the immutable (i) or append-only (a) attribute: what lsattr -R | grep finds, with one statx per entry on every core. Does not cross filesystems or follow symlinks. Exit 0 when something is found, 1 when nothing is.',
    async run({ values, positionals }) {
      if (positionals.length === 0) throw new UsageError('find-immutable needs at least one PATH');
      const { runFindImmutable } = await import('./find-immutable.js');
      return runFindImmutable(positionals, { json: Boolean(values['json']) });
    },
  },
  {
    name: 'du',
    flags: [
      { ...f.json, help: 'one JSON document: {"filesystems":[...],"consumers":[{"kind","bytes","path","filesystem","pod"?,"container"?,"image"?,"volume"?}],"entries","errors","notes","partial"?}' },
      f.hostRoot,
      { ...f.config, help: 'config file: kubelet\'s root dir and the runtime roots (collectors.disk.eviction), the pod logs dir (collectors.pods.podLogsDir), the runtime sockets' },
      f.set,
      { name: 'timeout', type: 'string', value: 'DURATION', help: 'stop walking after this long and report what was measured as partial (default 2m)' },
      { name: 'max-entries', type: 'string', value: 'N', help: 'stop walking after this many files and directories, as partial (default 20000000)' },
    ],
    description:
      "What fills this node's disks: for nodefs (kubelet's root), imagefs (the runtime's root) and any filesystem over its usage warning, a ranked table of writable layers, container logs, emptyDir volumes, images (in use, held by stopped containers, pinned, reclaimable: what a prune would free, shared layers once) and the rest (the largest other directories), with pod, container and image, adding up to the filesystem's used bytes within a stated margin. Bytes are allocated bytes, as du counts them; it never crosses into another filesystem or follows a symlink. Exit 0 measured, 3 partial (deadline or budget) or impossible.",
    async run({ values }) {
      const maxEntries = str(values['max-entries']);
      if (maxEntries !== undefined && !/^[1-9]\d*$/.test(maxEntries)) throw new UsageError(`--max-entries must be a positive whole number, got ${maxEntries}`);
      const { runDu } = await import('./du.js');
      return runDu(
        {
          json: Boolean(values['json']),
          hostRoot: str(values['host-root']),
          config: str(values['config']),
          sets: sets(values['set']),
          ...(values['timeout'] !== undefined ? { timeoutMs: durationFlag('--timeout', values['timeout'], 120_000) } : {}),
          ...(maxEntries !== undefined ? { maxEntries: Number(maxEntries) } : {}),
        },
        process.stdout,
      );
    },
  },
  {
    name: 'config',
    flags: [f.config, f.set, f.node],
    description: 'Print the effective config (defaults, then the file, then --set) as commented YAML; exit 3 listing every problem if it is invalid. Start a config file from its output.',
    async run({ values }) {
      const { renderConfig } = await import('./config.js');
      return { code: EXIT.OK, text: renderConfig({ config: str(values['config']), sets: sets(values['set']), node: str(values['node']) }) };
    },
  },
];

export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** Parses a command's flags and positionals, strictly; --help is a flag of every command. */
export function parseCommand(cmd: Command, args: string[]): Parsed & { help: boolean } {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const fl of [...cmd.flags, HELP_FLAG]) {
    options[fl.name] = { type: fl.type, ...(fl.short ? { short: fl.short } : {}), ...(fl.multiple ? { multiple: true } : {}) };
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: cmd.positionals !== undefined, strict: true });
  } catch (err) {
    throw new UsageError(errorMessage(err).replace(/^TypeError \[.*?\]: /, ''));
  }
  return { values: parsed.values, positionals: parsed.positionals, help: Boolean(parsed.values['help']) };
}

// ---- help, derived from the table ----

const flagUsage = (fl: Flag): string => {
  const inner = fl.type === 'string' ? `--${fl.name} ${fl.value ?? 'VALUE'}` : `--${fl.name}`;
  return `${fl.required ? inner : `[${inner}]`}${fl.multiple ? '...' : ''}`;
};

/** Words wrapped to `width`, every line after the first indented by `indent`. */
function wrap(words: readonly string[], first: string, indent: number, width: number): string {
  const lines: string[] = [];
  let line = first;
  for (const w of words) {
    if (line.trim().length > 0 && line.length + 1 + w.length > width && line.length > indent) {
      lines.push(line);
      line = ' '.repeat(indent) + w;
    } else line = line.length === 0 || line.endsWith(' ') ? line + w : `${line} ${w}`;
  }
  lines.push(line);
  return lines.join('\n');
}

/** `nodewarden check [--json] [--only NAMES] ...`, wrapped under the command's name. */
export function usageLine(cmd: Command, width = 110): string {
  const head = `nodewarden ${cmd.name}`;
  const words = [...(cmd.positionals ? [cmd.positionals] : []), ...cmd.flags.map(flagUsage)];
  return wrap(words, head, head.length + 1, width);
}

/** The usage block shared by --help and docs/cli.md. */
export function usageBlock(): string {
  return [...COMMANDS.map((c) => usageLine(c)), 'nodewarden COMMAND --help', 'nodewarden --help | --version'].join('\n');
}

function flagLines(flags: readonly Flag[], collectors: string): string {
  const label = (fl: Flag) => `${fl.short ? `-${fl.short}, ` : '    '}--${fl.name}${fl.type === 'string' ? ` ${fl.value ?? 'VALUE'}` : ''}`;
  const w = Math.max(...flags.map((fl) => label(fl).length)) + 2;
  return flags.map((fl) => wrap(fl.help.replace('COLLECTORS', collectors).split(' '), `  ${label(fl).padEnd(w)}`, w + 2, 110)).join('\n');
}

async function collectorList(): Promise<string> {
  const { collectorNames } = await import('../collectors/index.js');
  return collectorNames().join(', ');
}

/** `nodewarden COMMAND --help`: its usage, what it does, and every flag it accepts. */
export async function commandHelp(cmd: Command): Promise<string> {
  return `Usage:\n  ${usageLine(cmd).replace(/\n/g, '\n  ')}\n\n${wrap(cmd.description.split(' '), '', 0, 108)}\n\nOptions:\n${flagLines([...cmd.flags, HELP_FLAG], await collectorList())}\n\nRun 'nodewarden --help' for every command.\n`;
}

/** `nodewarden --help`: every command's usage and what it does. */
export async function globalHelp(): Promise<string> {
  const commands = COMMANDS.map((c) => wrap(c.description.split(' '), `  ${c.name.padEnd(16)}`, 18, 110)).join('\n');
  return `nodewarden ${VERSION}: node-level troubleshooting for Kubernetes

Usage:
  ${usageBlock().replace(/\n/g, '\n  ')}

Commands:
${commands}

Every command's options, each explained: nodewarden COMMAND --help. The collectors are
${await collectorList()}. --token-file and --aggregator default to $NODEWARDEN_TOKEN_FILE (or
$NODEWARDEN_TOKEN) and $NODEWARDEN_AGGREGATOR (else ws://127.0.0.1:9743).

Exit codes (check, tail --no-follow): 0 no finding, 1 warning, 2 critical, 3 unknown (bad usage or
config, a collector that could not run). Errors are one line on stderr.

Examples:
  nodewarden check
  nodewarden check --only disk,sockstat --json | jq '.findings[] | {check, subject, message}'
  nodewarden who-holds /var/lib/docker/overlay2/8bde3ec18c5a
  nodewarden tail --aggregator wss://nodewarden.example:9743 --severity warning --since 30m
  nodewarden prune --node worker-3 --until 72h --dry-run
  nodewarden du --json | jq '.consumers[] | select(.kind == "image-reclaimable")'
`;
}
