// `nodewarden config`: prints the effective config (defaults, file, --set) as YAML, with each key's
// documentation; exits 3 listing every problem when it is invalid. docs/configuration.md's defaults come from here.
import { stringify } from 'yaml';
import { configSpec, loadConfig } from '../agent/config.js';
import type { Spec } from '../protocol/schema.js';
import { formatDuration } from '../protocol/schema.js';

export interface ConfigOptions {
  config?: string;
  sets: string[];
  hostRoot?: string;
  node?: string;
}

type AnySpec = Spec<unknown> & { fields?: Record<string, AnySpec> };

/** Durations back to their written form, so the output is itself a valid config file. */
function toDocument(spec: AnySpec, value: unknown): unknown {
  if (spec.fields && typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, f] of Object.entries(spec.fields)) out[k] = toDocument(f, (value as Record<string, unknown>)[k]);
    return out;
  }
  if (spec.kind === 'duration' && typeof value === 'number') return formatDuration(value);
  return value;
}

/** Adds each key's doc as a comment at the end of its line. */
function annotate(yamlText: string, spec: AnySpec): string {
  const docs = new Map<string, string>();
  const walk = (s: AnySpec, prefix: string): void => {
    for (const [k, f] of Object.entries(s.fields ?? {})) {
      const p = prefix ? `${prefix}.${k}` : k;
      if (f.doc) docs.set(p, f.doc);
      walk(f, p);
    }
  };
  walk(spec, '');
  const stack: string[] = [];
  return yamlText
    .split('\n')
    .map((line) => {
      const m = /^( *)([A-Za-z0-9_]+):/.exec(line);
      if (!m) return line;
      const depth = m[1]!.length / 2;
      stack.length = depth;
      stack.push(m[2]!);
      const doc = docs.get(stack.join('.'));
      return doc ? `${line}  # ${doc}` : line;
    })
    .join('\n');
}

export function renderConfig(opts: ConfigOptions): string {
  const config = loadConfig({ file: opts.config, sets: opts.sets, hostRoot: opts.hostRoot, node: opts.node, resolveNode: false });
  const spec: AnySpec = configSpec();
  const doc = toDocument(spec, config) as Record<string, unknown>;
  return annotate(stringify(doc, { lineWidth: 0 }), spec);
}
