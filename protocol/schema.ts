// A small typed schema: validates data from outside (config files, flags, wire messages), reports every
// problem at once with its key path, fills documented defaults, and infers the TypeScript type.

export interface Problem {
  path: string;
  message: string;
}

export interface Spec<T> {
  readonly kind: string;
  readonly doc: string;
  readonly defaultValue: T | undefined;
  /** Validates `input` (undefined means absent: the default is used). */
  check(input: unknown, path: string, problems: Problem[]): T | undefined;
  /** One line describing the accepted values, for docs and error messages. */
  describe(): string;
}

/**
 * An object spec, whose fields other specs can extend. Its check always yields an object (absent input
 * is an object of defaults), so its type has no `undefined`.
 */
export interface ObjectSpec<T, F extends Record<string, Spec<unknown>> = Record<string, Spec<unknown>>> extends Spec<T> {
  readonly fields: F;
  readonly defaultValue: T;
  check(input: unknown, path: string, problems: Problem[]): T;
}

/**
 * The type a spec yields. A spec that may yield nothing (no default, not required) has `undefined` in
 * its type; in an object it becomes an optional key (see ObjectOf).
 */
export type Infer<S> = S extends Spec<infer T> ? T : never;

/** A spec's type when its options give a default: then never absent. */
type Defaulted<O, T> = O extends { default: unknown } ? T : T | undefined;

/** Flattens an intersection for readable hover types and exact comparisons. */
type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** Keys whose spec may yield nothing: optional in the object's type (an index signature is never one). */
type OptionalKeys<F> = { [K in keyof F]: string extends K ? never : undefined extends Infer<F[K]> ? K : never }[keyof F];

/**
 * The type of an object spec's value: a field that always yields a value is a required key, one that
 * may yield nothing is an optional key. An index signature (a record of sections) stays as it is.
 */
export type ObjectOf<F extends Record<string, Spec<unknown>>> = Simplify<
  { [K in keyof F as string extends K ? K : K extends OptionalKeys<F> ? never : K]: Infer<F[K]> } & {
    [K in keyof F as string extends K ? never : K extends OptionalKeys<F> ? K : never]?: Exclude<Infer<F[K]>, undefined>;
  }
>;

/** The values of JSON: what a `jsonObject` holds (parsed JSON has nothing else). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `90s`, `5m`, `1h30m`, `72h`, `500ms` into milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = re.exec(trimmed); match !== null; match = re.exec(trimmed)) {
    total += Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? Number.NaN);
    consumed = re.lastIndex;
  }
  return consumed === trimmed.length && Number.isFinite(total) ? Math.round(total) : undefined;
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

/** A leaf whose parse returns the value, or a problem as { error }. */
function leaf<T>(kind: string, doc: string, defaultValue: T | undefined, describe: string, parse: (input: unknown) => T | { error: string }): Spec<T> {
  return {
    kind,
    doc,
    defaultValue,
    describe: () => describe,
    check(input, path, problems) {
      if (input === undefined) return defaultValue;
      const result = parse(input);
      if (typeof result === 'object' && result !== null && 'error' in result) {
        problems.push({ path, message: result.error });
        return defaultValue;
      }
      return result;
    },
  };
}

const fail = (error: string): { error: string } => ({ error });

/**
 * Walks a JSON value without recursion, adding up about what it takes serialized (from above: escapes
 * aside, exact), and stops at the first excess: deeper than maxDepth, or more than maxBytes.
 */
function walkJson(value: unknown, maxDepth: number, maxBytes: number): { bytes: number; over?: 'depth' | 'bytes' } {
  const stack: [unknown, number][] = [[value, 1]];
  let bytes = 0;
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v === 'string') bytes += Buffer.byteLength(v) + 2;
    else if (typeof v === 'object' && v !== null) {
      if (depth > maxDepth) return { bytes, over: 'depth' };
      bytes += 2;
      if (Array.isArray(v)) {
        for (const x of v) {
          bytes += 1;
          stack.push([x, depth + 1]);
        }
      } else {
        for (const k in v) {
          bytes += Buffer.byteLength(k) + 4;
          stack.push([(v as Record<string, unknown>)[k], depth + 1]);
        }
      }
    } else bytes += 24;
    if (bytes > maxBytes) return { bytes, over: 'bytes' };
  }
  return { bytes };
}

/** Why a JSON value is over the depth or size bound, or undefined when it is within both. */
export function jsonBounds(value: unknown, maxDepth: number, maxBytes: number): string | undefined {
  const r = walkJson(value, maxDepth, maxBytes);
  if (r.over === 'depth') return `must nest at most ${maxDepth} levels deep`;
  if (r.over === 'bytes') return `must be at most ${maxBytes} bytes as JSON`;
  return undefined;
}

/** About the serialized size of a JSON value (already bounded in depth), without serializing it. */
export function jsonSize(value: unknown): number {
  return walkJson(value, Infinity, Infinity).bytes;
}

export const s = {
  number<O extends { default?: number; min?: number; max?: number; integer?: boolean; doc: string }>(opts: O): Spec<Defaulted<O, number>> {
    const { min, max, integer } = opts;
    const range = `${integer ? 'a whole number' : 'a number'}${min !== undefined ? ` >= ${min}` : ''}${max !== undefined ? ` <= ${max}` : ''}`;
    return leaf<number>('number', opts.doc, opts.default, range, (input) => {
      if (typeof input !== 'number' || !Number.isFinite(input)) return fail(`must be ${range}, got ${typeName(input)}`);
      if (integer && !Number.isInteger(input)) return fail(`must be ${range}, got ${input}`);
      if ((min !== undefined && input < min) || (max !== undefined && input > max)) return fail(`must be ${range}, got ${input}`);
      return input;
    }) as Spec<Defaulted<O, number>>;
  },
  /** A percentage, 0 to 100. */
  percent<O extends { default?: number; doc: string }>(opts: O): Spec<Defaulted<O, number>> {
    return s.number({ ...opts, min: 0, max: 100 }) as Spec<Defaulted<O, number>>;
  },
  /** A duration written `30s`, `5m`, `72h` or a number of milliseconds; yields milliseconds. */
  duration<O extends { default?: string; min?: number; doc: string }>(opts: O): Spec<Defaulted<O, number>> {
    const def = opts.default === undefined ? undefined : parseDuration(opts.default);
    const min = opts.min ?? 0;
    return leaf('duration', opts.doc, def, 'a duration such as 500ms, 30s, 5m, 72h', (input) => {
      const ms = typeof input === 'number' ? input : typeof input === 'string' ? parseDuration(input) : undefined;
      if (ms === undefined || !Number.isFinite(ms)) return fail(`must be a duration such as 500ms, 30s, 5m, 72h; got ${typeName(input)}`);
      if (ms < min) return fail(`must be at least ${formatDuration(min)}, got ${formatDuration(ms)}`);
      return ms;
    }) as Spec<Defaulted<O, number>>;
  },
  boolean<O extends { default?: boolean; doc: string }>(opts: O): Spec<Defaulted<O, boolean>> {
    return leaf<boolean>('boolean', opts.doc, opts.default, 'true or false', (input) =>
      typeof input === 'boolean' ? input : fail(`must be true or false, got ${typeName(input)}`),
    ) as Spec<Defaulted<O, boolean>>;
  },
  string<O extends { default?: string; doc: string; pattern?: RegExp; patternDoc?: string; nonEmpty?: boolean; maxLength?: number }>(opts: O): Spec<Defaulted<O, string>> {
    const spec: Spec<string> = {
      kind: 'string',
      doc: opts.doc,
      defaultValue: opts.default,
      describe: () => 'a string',
      check(input, path, problems) {
        if (input === undefined) return opts.default;
        if (typeof input !== 'string') {
          problems.push({ path, message: `must be a string, got ${typeName(input)}` });
          return opts.default;
        }
        if (opts.nonEmpty && input === '') problems.push({ path, message: 'must not be empty' });
        else if (opts.maxLength !== undefined && input.length > opts.maxLength) problems.push({ path, message: `must be at most ${opts.maxLength} characters, got ${input.length}` });
        else if (opts.pattern && !opts.pattern.test(input)) problems.push({ path, message: opts.patternDoc ? `must be ${opts.patternDoc}, got ${JSON.stringify(input)}` : `must match ${opts.pattern}, got ${JSON.stringify(input)}` });
        return input;
      },
    };
    return spec as Spec<Defaulted<O, string>>;
  },
  oneOf<const V extends string, O extends { default?: V; doc: string } = { doc: string }>(values: readonly V[], opts: O): Spec<Defaulted<O, V>> {
    const spec: Spec<V> = {
      kind: 'enum',
      doc: opts.doc,
      defaultValue: opts.default,
      describe: () => `one of ${values.join(', ')}`,
      check(input, path, problems) {
        if (input === undefined) return opts.default;
        if (typeof input === 'string' && (values as readonly string[]).includes(input)) return input as V;
        problems.push({ path, message: `must be one of ${values.join(', ')}; got ${typeName(input)}` });
        return opts.default;
      },
    };
    return spec as Spec<Defaulted<O, V>>;
  },
  /**
   * Exactly this value, and required: a wire message's `v` and `type`, whose literal types make the
   * union of messages a discriminated union.
   */
  literal<const V extends string | number>(value: V, opts: { doc?: string } = {}): Spec<V> {
    return {
      kind: 'literal',
      doc: opts.doc ?? '',
      defaultValue: undefined,
      describe: () => JSON.stringify(value),
      check(input, path, problems) {
        if (input === value) return value;
        problems.push({ path, message: input === undefined ? 'is required' : `must be ${JSON.stringify(value)}, got ${typeName(input)}` });
        return undefined;
      },
    };
  },
  /**
   * Any JSON object (evidence and other free-form data), bounded in nesting depth and in size: walked
   * without recursion, so a hostile 5,000-deep value is refused here instead of overflowing the stack
   * of the next JSON.stringify.
   */
  jsonObject<O extends { doc: string; optional?: boolean; maxDepth?: number; maxBytes?: number }>(
    opts: O,
  ): Spec<O extends { optional: true } ? Record<string, JsonValue> | undefined : Record<string, JsonValue>> {
    const spec: Spec<Record<string, JsonValue>> = {
      kind: 'json',
      doc: opts.doc,
      defaultValue: undefined,
      describe: () => 'a JSON object',
      check(input, path, problems) {
        if (input === undefined) {
          if (!opts.optional) problems.push({ path, message: 'is required' });
          return undefined;
        }
        if (typeof input !== 'object' || input === null || Array.isArray(input)) {
          problems.push({ path, message: `must be an object, got ${typeName(input)}` });
          return undefined;
        }
        const bound = jsonBounds(input, opts.maxDepth ?? Infinity, opts.maxBytes ?? Infinity);
        if (bound) {
          problems.push({ path, message: bound });
          return undefined;
        }
        return input as Record<string, JsonValue>;
      },
    };
    return spec as Spec<O extends { optional: true } ? Record<string, JsonValue> | undefined : Record<string, JsonValue>>;
  },
  /** An optional object: absent stays absent (instead of an object of defaults). */
  optional<T>(spec: Spec<T>): Spec<T | undefined> {
    return { ...spec, defaultValue: undefined, check: (input, path, problems) => (input === undefined ? undefined : spec.check(input, path, problems)) };
  },
  /** Marks a spec as required: absent input is a problem (wire messages have no defaults). */
  required<T>(spec: Spec<T>): Spec<Exclude<T, undefined>> {
    return {
      ...spec,
      check(input, path, problems) {
        if (input === undefined) {
          problems.push({ path, message: 'is required' });
          return undefined;
        }
        return spec.check(input, path, problems) as Exclude<T, undefined> | undefined;
      },
    } as Spec<Exclude<T, undefined>>;
  },
  /** A list; items that yield nothing are left out, so its items' type has no `undefined`. */
  list<T, O extends { default?: Exclude<T, undefined>[]; doc: string; maxItems?: number } = { doc: string }>(item: Spec<T>, opts: O): Spec<Defaulted<O, Exclude<T, undefined>[]>> {
    type Item = Exclude<T, undefined>;
    const spec: Spec<Item[]> = {
      kind: 'list',
      doc: opts.doc,
      defaultValue: opts.default,
      describe: () => `a list of ${item.describe()}`,
      check(input, path, problems) {
        if (input === undefined) return opts.default;
        if (!Array.isArray(input)) {
          problems.push({ path, message: `must be a list, got ${typeName(input)}` });
          return opts.default;
        }
        if (opts.maxItems !== undefined && input.length > opts.maxItems) {
          problems.push({ path, message: `must have at most ${opts.maxItems} items, got ${input.length}` });
        }
        const out: Item[] = [];
        input.forEach((element, i) => {
          const value = item.check(element === undefined ? null : element, `${path}[${i}]`, problems);
          if (value !== undefined) out.push(value as Item);
        });
        return out;
      },
    };
    return spec as Spec<Defaulted<O, Item[]>>;
  },
  object<F extends Record<string, Spec<unknown>>>(fields: F, opts: { doc?: string; allowUnknown?: boolean } = {}): ObjectSpec<ObjectOf<F>, F> {
    type Out = ObjectOf<F>;
    const spec: ObjectSpec<Out, F> = {
      kind: 'object',
      doc: opts.doc ?? '',
      fields,
      get defaultValue(): Out {
        const out: Record<string, unknown> = {};
        for (const [key, field] of Object.entries(fields)) out[key] = field.defaultValue;
        return out as Out;
      },
      describe: () => 'an object',
      check(input: unknown, path: string, problems: Problem[]): Out {
        const source: unknown = input === undefined || input === null ? {} : input;
        if (typeof source !== 'object' || Array.isArray(source)) {
          problems.push({ path: path || '(top level)', message: `must be an object, got ${typeName(input)}` });
          return spec.defaultValue;
        }
        const record = source as Record<string, unknown>;
        const out: Record<string, unknown> = {};
        for (const [key, field] of Object.entries(fields)) {
          const childPath = path ? `${path}.${key}` : key;
          const value = field.check(record[key], childPath, problems);
          if (value === undefined && field.defaultValue === undefined && !(key in record)) {
            // Optional field without a default stays absent.
            continue;
          }
          out[key] = value;
        }
        if (!opts.allowUnknown) {
          for (const key of Object.keys(record)) {
            if (!(key in fields)) {
              const known = Object.keys(fields).join(', ');
              problems.push({ path: path ? `${path}.${key}` : key, message: `unknown key (known keys: ${known})` });
            }
          }
        }
        return out as Out;
      },
    };
    return spec;
  },
};

/** The first three problems, each with its path, and how many more: one line for a refusal's reason. */
export function summarizeProblems(problems: readonly Problem[], top = '(message)'): string {
  const first = problems.slice(0, 3).map((p) => `${p.path || top} ${p.message}`).join('; ');
  return `${first}${problems.length > 3 ? ` (+${problems.length - 3} more)` : ''}`;
}

/** Validates and returns the value with defaults filled, or the full list of problems. */
export function validate<T>(spec: Spec<T>, input: unknown): { ok: true; value: T } | { ok: false; problems: Problem[] } {
  const problems: Problem[] = [];
  const value = spec.check(input, '', problems);
  if (problems.length > 0 || value === undefined) return { ok: false, problems };
  return { ok: true, value };
}
