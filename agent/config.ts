// The agent's config: one YAML or JSON file of thresholds with documented defaults, overridable with
// --set key.path=value. Invalid config reports every problem at once, with its key path.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { NodewardenError, errnoCode, errorMessage } from '../protocol/errors.js';
import { HOST_PORT } from '../protocol/address.js';
import { escapeForTerminal } from '../protocol/terminal.js';
import { formatDuration, s, type Infer, type Problem, type Spec } from '../protocol/schema.js';
import { COLLECTORS } from '../collectors/index.js';
import type { AnyCollector } from '../collectors/types.js';

/** One collector's section: enabled, interval and timeout for every collector, then its own thresholds. */
function collectorSection(c: AnyCollector) {
  const fields: { enabled: Spec<boolean>; interval: Spec<number>; timeout: Spec<number>; [threshold: string]: Spec<unknown> } = {
    enabled: s.boolean({ default: true, doc: `run the ${c.name} collector` }),
    interval: s.duration({ default: `${c.defaultIntervalMs}ms`, min: 1000, doc: 'how often it runs' }),
    timeout: s.duration({ default: `${c.defaultTimeoutMs}ms`, min: 100, doc: 'how long one run may take before it is reported as timed out (unset: follows a shorter interval)' }),
    ...c.configSpec.fields,
  };
  return s.object(fields, { doc: c.description });
}

/** `{ enabled: boolean; interval: number; timeout: number; [threshold: string]: unknown }`, inferred from the section's spec. */
export type CollectorSettings = Infer<ReturnType<typeof collectorSection>>;

/** The agent's config, inferred from configSpec (test/protocol/types.ts holds its shape). */
export type Config = Infer<ReturnType<typeof configSpec>>;

export function configSpec(collectors: readonly AnyCollector[] = COLLECTORS) {
  const sections: Record<string, ReturnType<typeof collectorSection>> = {};
  for (const c of collectors) sections[c.name] = collectorSection(c);
  return s.object({
    node: s.string({ default: '', doc: 'node name on findings (default: $NODE_NAME, else the hostname)' }),
    hostRoot: s.string({ default: '/', nonEmpty: true, doc: "where the host's root filesystem is seen (/host in the DaemonSet)" }),
    runtime: s.object(
      {
        dockerSocket: s.string({ default: '/var/run/docker.sock', nonEmpty: true, doc: "dockerd's API socket, on the host (read under hostRoot)" }),
        containerdSocket: s.string({ default: '/run/containerd/containerd.sock', nonEmpty: true, doc: "containerd's gRPC socket, on the host (read under hostRoot)" }),
        containerdNamespaces: s.list(s.string({ doc: 'namespace' }), { default: ['moby', 'k8s.io'], doc: 'containerd namespaces to read: moby is docker, k8s.io is the CRI' }),
        timeout: s.duration({ default: '5s', min: 100, doc: 'how long one runtime API call may take; past it the runtime is unresponsive' }),
        settle: s.duration({ default: '2s', min: 0, doc: 'a suspected drift, leaked mount or blocked removal is read again this much later and fires only if unchanged (drift once more, three times as long after)' }),
        dockerRoot: s.string({ default: '/var/lib/docker', nonEmpty: true, doc: "dockerd's data root: if it holds containers (or kubelet's runtime endpoint names docker, or docker answered earlier), a missing socket means docker is down; an empty one means nothing (a CRI-only node where docker was installed once)" }),
        containerdRoot: s.string({ default: '/var/lib/containerd', nonEmpty: true, doc: "containerd's data root: if it holds its metadata (or kubelet's runtime endpoint names containerd, or it answered earlier), a missing socket means containerd is down" }),
      },
      { doc: 'container runtimes' },
    ),
    agent: s.object(
      {
        listen: s.string({ default: '0.0.0.0:9742', pattern: new RegExp(`^$|${HOST_PORT.source}`), patternDoc: "HOST:PORT (e.g. 0.0.0.0:9742, 127.0.0.1:9742, [::1]:9742; port 0-65535) or '' for no listener", doc: "HOST:PORT for the agent's /healthz and /metrics ('' to turn them off)" }),
        heartbeat: s.duration({ default: '15s', min: 100, doc: 'ping the aggregator this often; two missed pongs drop the link' }),
        restartAfterUnreachable: s.duration({ default: '10m', min: 1000, doc: '/healthz fails (kubelet restarts the agent) when the configured aggregator has been unreachable this long' }),
      },
      { doc: 'the agent process' },
    ),
    prune: s.object(
      {
        enabled: s.boolean({ default: false, doc: 'allow image prunes asked for through the aggregator (off: the agent refuses)' }),
        sandboxImages: s.list(s.string({ doc: 'image name' }), { default: ['pause'], doc: "more sandbox image names never removed; pause under any registry and naming (pause-amd64, mirrored-pause) and the node's configured sandbox image are always kept" }),
        containerdNamespaces: s.list(s.string({ doc: 'namespace' }), { default: ['k8s.io'], doc: "containerd namespaces whose images are pruned (the CRI's is k8s.io)" }),
        label: s.string({ default: '', doc: "only prune images carrying this label (KEY or KEY=VALUE, as docker image prune --filter label=); '' for all" }),
      },
      { doc: 'image prune on this node' },
    ),
    kubernetes: s.object(
      {
        enabled: s.boolean({ default: false, doc: "keep NodeConditions on this node, emit Events, watch this node's pods for pod.stuck and pod.crashLoop (needs the RBAC in manifests/)" }),
        server: s.string({ default: '', doc: "API server URL ('' in a pod: from KUBERNETES_SERVICE_HOST/PORT)" }),
        tokenFile: s.string({ default: '/var/run/secrets/kubernetes.io/serviceaccount/token', doc: 'service account token (inside the agent container)' }),
        caFile: s.string({ default: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', doc: "the API server's CA (inside the agent container)" }),
        timeout: s.duration({ default: '10s', min: 100, doc: 'how long one API call may take' }),
        nodeInterval: s.duration({ default: '10s', min: 1000, doc: "how often the agent reads its own Node (its Ready condition: kubelet.pleg, kubelet.notReady)" }),
        events: s.boolean({ default: true, doc: 'emit an Event for each finding that fires or resolves (pod.stuck: on the Pod)' }),
        eventNamespace: s.string({ default: 'default', nonEmpty: true, doc: 'namespace of the Node events (kubelet uses default)' }),
        eventInterval: s.duration({ default: '10m', doc: 'at most one event per finding and transition this often' }),
        eventsPerMinute: s.number({ default: 30, min: 1, integer: true, doc: 'and at most this many events per minute from one node' }),
      },
      { doc: 'the Kubernetes exporter' },
    ),
    logLevel: s.oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, { default: 'info', doc: 'pino log level' }),
    collectors: s.object(sections, { doc: 'per-collector settings and thresholds' }),
  });
}

/** Durations in messages, written so they can be pasted back: 6.3s rather than 6300ms. */
function showDuration(ms: number): string {
  return ms > 1000 && ms % 1000 !== 0 && ms % 100 === 0 ? `${ms / 1000}s` : formatDuration(ms);
}

const ceil100 = (ms: number): number => Math.ceil(ms / 100) * 100;
const floor100 = (ms: number): number => Math.floor(ms / 100) * 100;

/** What one run of a collector may wait out (its `waitsFor` keys), with their configured values. */
export function waitsOf(c: AnyCollector, config: Config): { key: string; ms: number }[] {
  const section = config.collectors[c.name];
  return (c.waitsFor ?? []).map((key) => {
    const own = section?.[key];
    if (typeof own === 'number') return { key: `collectors.${c.name}.${key}`, ms: own };
    let v: unknown = config;
    for (const k of key.split('.')) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[k] : undefined;
    return { key, ms: typeof v === 'number' ? v : 0 };
  });
}

/**
 * What a run's own reads get on top of the waits: a quarter of them, and never less than 3 s. With only a
 * quarter, a 2 s-interval drift or mounts run had 1.25 s for its reads after a 5 s runtime wait, and a
 * loaded node (containers churning, a runtime restarting) outlived that about once in three minutes,
 * each time a false `collector.timeout`.
 */
export const TIMEOUT_SLACK_MS = 3000;

/** The shortest timeout that lets what a collector waits on report first: their sum and a quarter more (what a timeout you set must allow). */
export function minimumTimeout(waits: readonly { ms: number }[]): number {
  const sum = waits.reduce((a, w) => a + w.ms, 0);
  return sum > 0 ? ceil100(sum * 1.25) : 0;
}

/** The timeout derived when none is set: the waits, and a quarter more or TIMEOUT_SLACK_MS for the run's own reads. */
export function derivedMinimum(waits: readonly { ms: number }[]): number {
  const sum = waits.reduce((a, w) => a + w.ms, 0);
  return sum > 0 ? ceil100(Math.max(sum * 1.25, sum + TIMEOUT_SLACK_MS)) : 0;
}

/**
 * A collector's timeout follows from its interval and from what it waits on. Unset, it is derived:
 * the default, or the interval when that is shorter, but never less than the minimum its waits need
 * (a run may then outlast the interval: the runner starts the next run an interval after the last one
 * ended, so runs never overlap). Set, it is checked against both, and a contradiction names the values
 * that would work.
 */
/**
 * Every threshold pair in the config: a warning at or above its critical would never warn (a disk at
 * 97 % with warning=99 and critical=95 goes straight to critical, and one at 96 % says nothing at all).
 */
function checkBands(node: unknown, path: string, problems: Problem[]): void {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return;
  const o = node as Record<string, unknown>;
  if (typeof o['warning'] === 'number' && typeof o['critical'] === 'number' && o['warning'] >= o['critical']) {
    problems.push({ path: `${path}warning`, message: `must be below ${path}critical (${o['critical']}), got ${o['warning']}` });
  }
  for (const [k, v] of Object.entries(o)) checkBands(v, `${path}${k}.`, problems);
}

function resolveTimeouts(config: Config, input: Record<string, unknown>, collectors: readonly AnyCollector[], problems: Problem[]): void {
  const given = (name: string): boolean => {
    const sections = input['collectors'];
    const section = typeof sections === 'object' && sections !== null ? (sections as Record<string, unknown>)[name] : undefined;
    return typeof section === 'object' && section !== null && (section as Record<string, unknown>)['timeout'] !== undefined;
  };
  for (const c of collectors) {
    const section = config.collectors?.[c.name];
    if (!section || typeof section.interval !== 'number' || typeof section.timeout !== 'number') continue;
    const waits = waitsOf(c, config);
    const need = minimumTimeout(waits);
    const path = `collectors.${c.name}.timeout`;
    if (!given(c.name)) {
      section.timeout = Math.max(derivedMinimum(waits), Math.min(c.defaultTimeoutMs, section.interval));
      continue;
    }
    if (section.timeout < need) {
      const sum = waits.reduce((a, w) => a + w.ms, 0);
      const alternatives = waits
        .map((w) => ({ key: w.key, most: floor100(section.timeout / 1.25 - (sum - w.ms)) }))
        .filter((a) => a.most >= 100)
        .map((a) => `, or lower ${a.key} to at most ${showDuration(a.most)}`);
      problems.push({
        path,
        message:
          `${showDuration(section.timeout)} is shorter than what one run may wait out (${waits.map((w) => `${w.key} ${showDuration(w.ms)}`).join(' + ')}), ` +
          `so a hang there would show as collector.timeout instead of the check that names it: use at least ${showDuration(need)}${[...new Set(alternatives)].join('')}`,
      });
    } else if (section.timeout > Math.max(section.interval, need)) {
      problems.push({
        path,
        message: `${showDuration(section.timeout)} must not be longer than the interval (${showDuration(section.interval)}): use at most ${showDuration(Math.max(section.interval, need))}, or set collectors.${c.name}.interval to at least ${showDuration(section.timeout)}`,
      });
    }
  }
}

/** Parses `a.b.c=value`; the value is read as YAML, so numbers, booleans and [lists] keep their type. */
export function applySet(target: Record<string, unknown>, assignment: string): Problem | undefined {
  const eq = assignment.indexOf('=');
  if (eq <= 0) return { path: assignment, message: 'a --set must look like key.path=value' };
  const keyPath = assignment.slice(0, eq).split('.');
  if (keyPath.some((k) => k === '' || k === '__proto__' || k === 'constructor' || k === 'prototype')) {
    return { path: assignment.slice(0, eq), message: 'not a valid key path' };
  }
  let value: unknown;
  try {
    value = parseYaml(assignment.slice(eq + 1));
  } catch {
    value = assignment.slice(eq + 1);
  }
  let node: Record<string, unknown> = target;
  for (const key of keyPath.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keyPath[keyPath.length - 1]!] = value;
  return undefined;
}

export interface LoadOptions {
  file?: string;
  sets?: readonly string[];
  /** Flags that win over the file (--host-root, --node). */
  hostRoot?: string;
  node?: string;
  env?: NodeJS.ProcessEnv;
  /** Fill an empty node name from $NODE_NAME or the hostname (default true). */
  resolveNode?: boolean;
}

/** Reads, merges and validates the config; throws NW_ERR_CONFIG listing every problem. */
export function loadConfig(opts: LoadOptions = {}): Config {
  let raw: unknown = {};
  if (opts.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (err) {
      const why = errnoCode(err) === 'ENOENT' ? 'no such file' : errnoCode(err) === 'EACCES' ? 'permission denied' : errnoCode(err) === 'EISDIR' ? 'is a directory' : String(err);
      throw new NodewardenError('NW_ERR_CONFIG', `cannot read config file ${opts.file}: ${why}`);
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (err) {
      // yaml's message ends "at line L, column C:" before a code frame: say it in one line, with the
      // line itself, as FILE:LINE:COLUMN the way compilers do.
      const e = err as { linePos?: { line: number; col: number }[] };
      const pos = e.linePos?.[0];
      const what = errorMessage(err).split('\n')[0]!.replace(/ at line \d+, column \d+:?\s*$/, '').replace(/:\s*$/, '');
      const line = pos ? text.split('\n')[pos.line - 1]?.trim().slice(0, 80) : undefined;
      throw new NodewardenError('NW_ERR_CONFIG', `config file ${opts.file}${pos ? `:${pos.line}:${pos.col}` : ''} is not valid YAML or JSON: ${what}${line ? ` (the line reads: "${escapeForTerminal(line)}")` : ''}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new NodewardenError('NW_ERR_CONFIG', `config file ${opts.file} must hold a mapping of settings at the top level`);
    }
  }
  const merged = structuredClone(raw) as Record<string, unknown>;
  const problems: Problem[] = [];
  for (const set of opts.sets ?? []) {
    const p = applySet(merged, set);
    if (p) problems.push(p);
  }
  if (opts.hostRoot !== undefined) merged['hostRoot'] = opts.hostRoot;
  if (opts.node !== undefined) merged['node'] = opts.node;
  const config: Config = configSpec().check(merged, '', problems);
  resolveTimeouts(config, merged, COLLECTORS, problems);
  checkBands(config, '', problems);
  if (problems.length > 0) {
    const where = opts.file ? ` in ${opts.file}` : '';
    throw new NodewardenError('NW_ERR_CONFIG', `invalid config${where}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`, {
      details: problems.map((p) => `${p.path}: ${p.message}`),
    });
  }
  const env = opts.env ?? process.env;
  if (config.node === '' && opts.resolveNode !== false) config.node = env['NODE_NAME'] || os.hostname();
  return config;
}
