// A minimal protobuf codec: enough of the wire format to speak containerd's gRPC API (strings,
// varints, nested messages, repeated fields, maps). Unknown fields are skipped, as protobuf requires.
import { NodewardenError } from '../../protocol/errors.js';

/** Undecodable input is NW_ERR_PARSE: the daemon's reply, not our state, is wrong. */
const undecodable = (what: string) => new NodewardenError('NW_ERR_PARSE', `protobuf: ${what}`);

export type Field = { wire: 0; value: bigint } | { wire: 2; value: Buffer } | { wire: 1 | 5; value: Buffer };

/** Decodes one message into its fields by number, in order. Throws on truncated input. */
export function decodeMessage(buf: Buffer): Map<number, Field[]> {
  const out = new Map<number, Field[]>();
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw undecodable('truncated varint');
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw undecodable('varint too long');
    }
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const num = key >>> 3;
    const wire = key & 7;
    let field: Field;
    if (wire === 0) field = { wire: 0, value: varint() };
    else if (wire === 2) {
      const len = Number(varint());
      if (pos + len > buf.length) throw undecodable('truncated field');
      field = { wire: 2, value: buf.subarray(pos, pos + len) };
      pos += len;
    } else if (wire === 1 || wire === 5) {
      const len = wire === 1 ? 8 : 4;
      if (pos + len > buf.length) throw undecodable('truncated fixed field');
      field = { wire, value: buf.subarray(pos, pos + len) };
      pos += len;
    } else throw undecodable(`unsupported wire type ${wire}`);
    const list = out.get(num);
    if (list) list.push(field);
    else out.set(num, [field]);
  }
  return out;
}

export const pb = {
  string(m: Map<number, Field[]>, n: number): string {
    const f = m.get(n)?.at(-1);
    return f?.wire === 2 ? f.value.toString('utf8') : '';
  },
  strings(m: Map<number, Field[]>, n: number): string[] {
    return (m.get(n) ?? []).flatMap((f) => (f.wire === 2 ? [f.value.toString('utf8')] : []));
  },
  uint(m: Map<number, Field[]>, n: number): number {
    const f = m.get(n)?.at(-1);
    return f?.wire === 0 ? Number(f.value) : 0;
  },
  message(m: Map<number, Field[]>, n: number): Map<number, Field[]> | undefined {
    const f = m.get(n)?.at(-1);
    return f?.wire === 2 ? decodeMessage(f.value) : undefined;
  },
  messages(m: Map<number, Field[]>, n: number): Map<number, Field[]>[] {
    return (m.get(n) ?? []).flatMap((f) => (f.wire === 2 ? [decodeMessage(f.value)] : []));
  },
  /** map<string,string> fields are repeated entries with key = 1, value = 2. */
  stringMap(m: Map<number, Field[]>, n: number): Record<string, string> {
    const out: Record<string, string> = {};
    for (const entry of pb.messages(m, n)) out[pb.string(entry, 1)] = pb.string(entry, 2);
    return out;
  },
  /** int64 as a signed number (negative values arrive as 10-byte varints). */
  int(m: Map<number, Field[]>, n: number): number {
    const f = m.get(n)?.at(-1);
    return f?.wire === 0 ? Number(BigInt.asIntN(64, f.value)) : 0;
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
