// A minimal protobuf codec: enough of the wire format to speak containerd's gRPC API (strings,
// varints, nested messages, repeated fields, maps). Unknown fields are skipped, as protobuf requires.
import { NodewardenError } from '../../protocol/errors.js';

/** Undecodable input is NW_ERR_PARSE: the daemon's reply, not our state, is wrong. */
const undecodable = (what: string) => new NodewardenError('NW_ERR_PARSE', `protobuf: ${what}`);

/**
 * One field. A varint is a number when it fits in 49 bits (every key, length, pid and status), a bigint
 * beyond. A length-delimited or fixed field keeps its place in the message's buffer: `value` makes the
 * Buffer view only when asked (pb's accessors read strings and nested messages in place). Under a busy
 * node's runtime calls and events, a view and a BigInt per field were a fifth of the agent's allocations.
 */
export type Field = { wire: 0; value: number | bigint } | BytesField;

export class BytesField {
  constructor(
    readonly wire: 1 | 2 | 5,
    readonly buf: Buffer,
    readonly start: number,
    readonly end: number,
  ) {}
  get value(): Buffer {
    return this.buf.subarray(this.start, this.end);
  }
}

/** Decodes one message (the whole buffer, or buf[start, end)) into its fields by number, in order. Throws on truncated input. */
export function decodeMessage(buf: Buffer, start = 0, end = buf.length): Map<number, Field[]> {
  const out = new Map<number, Field[]>();
  let pos = start;
  // Up to 7 bytes (49 bits) in a number; longer ones (up to 10 bytes, 64 bits) as a bigint.
  const varint = (): number | bigint => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      if (pos >= end) throw undecodable('truncated varint');
      const b = buf[pos++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    let big = BigInt(result);
    let shift = 49n;
    for (;;) {
      if (pos >= end) throw undecodable('truncated varint');
      const b = buf[pos++]!;
      big |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return big;
      shift += 7n;
      if (shift > 63n) throw undecodable('varint too long');
    }
  };
  const length = (): number => {
    const v = varint();
    // A length past 2^49 can never fit in the buffer.
    return typeof v === 'number' ? v : Number.MAX_SAFE_INTEGER;
  };
  while (pos < end) {
    const key = varint();
    // Field numbers are at most 2^29 - 1: a key past 32 bits is not one.
    if (typeof key !== 'number' || key > 0xffffffff) throw undecodable('field key too large');
    const num = Math.floor(key / 8);
    const wire = key % 8;
    let field: Field;
    if (wire === 0) field = { wire: 0, value: varint() };
    else if (wire === 2) {
      const len = length();
      if (len > end - pos) throw undecodable('truncated field');
      field = new BytesField(2, buf, pos, pos + len);
      pos += len;
    } else if (wire === 1 || wire === 5) {
      const len = wire === 1 ? 8 : 4;
      if (len > end - pos) throw undecodable('truncated fixed field');
      field = new BytesField(wire, buf, pos, pos + len);
      pos += len;
    } else throw undecodable(`unsupported wire type ${wire}`);
    const list = out.get(num);
    if (list) list.push(field);
    else out.set(num, [field]);
  }
  return out;
}

const last = (m: Map<number, Field[]>, n: number): Field | undefined => {
  const list = m.get(n);
  return list ? list[list.length - 1] : undefined;
};

export const pb = {
  string(m: Map<number, Field[]>, n: number): string {
    const f = last(m, n);
    return f?.wire === 2 ? f.buf.toString('utf8', f.start, f.end) : '';
  },
  strings(m: Map<number, Field[]>, n: number): string[] {
    const out: string[] = [];
    for (const f of m.get(n) ?? []) if (f.wire === 2) out.push(f.buf.toString('utf8', f.start, f.end));
    return out;
  },
  uint(m: Map<number, Field[]>, n: number): number {
    const f = last(m, n);
    return f?.wire === 0 ? Number(f.value) : 0;
  },
  message(m: Map<number, Field[]>, n: number): Map<number, Field[]> | undefined {
    const f = last(m, n);
    return f?.wire === 2 ? decodeMessage(f.buf, f.start, f.end) : undefined;
  },
  messages(m: Map<number, Field[]>, n: number): Map<number, Field[]>[] {
    const out: Map<number, Field[]>[] = [];
    for (const f of m.get(n) ?? []) if (f.wire === 2) out.push(decodeMessage(f.buf, f.start, f.end));
    return out;
  },
  /** A bytes field's value (a view into the message's buffer), or undefined when absent. */
  bytes(m: Map<number, Field[]>, n: number): Buffer | undefined {
    const f = last(m, n);
    return f?.wire === 2 ? f.value : undefined;
  },
  /** map<string,string> fields are repeated entries with key = 1, value = 2. */
  stringMap(m: Map<number, Field[]>, n: number): Record<string, string> {
    const out: Record<string, string> = {};
    for (const entry of pb.messages(m, n)) out[pb.string(entry, 1)] = pb.string(entry, 2);
    return out;
  },
  /** int64 as a signed number (negative values arrive as 10-byte varints). */
  int(m: Map<number, Field[]>, n: number): number {
    const f = last(m, n);
    if (f?.wire !== 0) return 0;
    return typeof f.value === 'number' ? f.value : Number(BigInt.asIntN(64, f.value));
  },
  /** google.protobuf.Timestamp (seconds = 1, nanos = 2); undefined when absent or Go's zero time. */
  timestamp(m: Map<number, Field[]>, n: number): string | undefined {
    const t = pb.message(m, n);
    if (!t) return undefined;
    const seconds = pb.int(t, 1);
    if (seconds <= 0) return undefined;
    return new Date(seconds * 1000 + Math.floor(pb.uint(t, 2) / 1e6)).toISOString();
  },
};

function encodeVarint(n: bigint | number): Buffer {
  let v = BigInt(n);
  const bytes: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    bytes.push(b);
  } while (v > 0n);
  return Buffer.from(bytes);
}

export type Encodable = { n: number; string: string } | { n: number; uint: number | bigint } | { n: number; message: Buffer };

/** Encodes fields in the given order (repeated fields: give the same number several times). */
export function encodeMessage(fields: readonly Encodable[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    if ('uint' in f) {
      parts.push(encodeVarint((f.n << 3) | 0), encodeVarint(f.uint));
    } else {
      const body = 'string' in f ? Buffer.from(f.string, 'utf8') : f.message;
      parts.push(encodeVarint((f.n << 3) | 2), encodeVarint(body.length), body);
    }
  }
  return Buffer.concat(parts);
}
