import t from 'tap';
import { decodeMessage, encodeMessage, pb } from '../../../agent/runtime/protobuf.js';
import fc from 'fast-check';

t.test('round trip of strings, varints, nested and repeated fields', async (t) => {
  const inner = encodeMessage([{ n: 1, string: 'overlay' }, { n: 4, string: 'upperdir=/a' }, { n: 4, string: 'lowerdir=/b:/c' }]);
  const buf = encodeMessage([{ n: 1, message: inner }, { n: 1, message: inner }, { n: 3, uint: 300 }, { n: 2, string: 'héllo' }]);
  const m = decodeMessage(buf);
  t.equal(pb.messages(m, 1).length, 2);
  t.same(pb.strings(pb.messages(m, 1)[0]!, 4), ['upperdir=/a', 'lowerdir=/b:/c']);
  t.equal(pb.uint(m, 3), 300);
  t.equal(pb.string(m, 2), 'héllo');
  t.equal(pb.string(m, 9), '', 'absent string is empty, as proto3 says');
});

t.test('varints past 49 bits stay exact; negative int64s decode signed; a nested message is read in place', async (t) => {
  const big = 2n ** 60n + 12345n;
  const buf = encodeMessage([{ n: 1, uint: big }, { n: 2, uint: BigInt.asUintN(64, -42n) }, { n: 3, uint: 2 ** 48 + 7 }, { n: 4, message: encodeMessage([{ n: 1, string: 'inner' }]) }]);
  const m = decodeMessage(buf);
  t.equal(m.get(1)?.[0]?.value, big, 'a 61-bit varint is an exact bigint');
  t.equal(pb.int(m, 2), -42, 'a 10-byte varint is a negative int64');
  t.equal(pb.uint(m, 3), 2 ** 48 + 7, 'a 49-bit varint is an exact number');
  t.equal(pb.string(pb.message(m, 4)!, 1), 'inner');
  t.equal(pb.bytes(m, 4)?.length, 7, 'bytes gives the field\'s own bytes');
  // The same message inside a larger buffer decodes the same from its range.
  const framed = Buffer.concat([Buffer.from([0xff, 0xff]), buf, Buffer.from([0x0b])]);
  t.equal(pb.string(pb.message(decodeMessage(framed, 2, 2 + buf.length), 4)!, 1), 'inner', 'a range of a buffer decodes without what lies around it');
  t.throws(() => decodeMessage(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x01])), { code: 'NW_ERR_PARSE' }, 'a key past 32 bits is NW_ERR_PARSE');
});

t.test("timestamps: real ones decode, Go's zero time (negative seconds) is absent", async (t) => {
  const ts = (seconds: bigint) => encodeMessage([{ n: 10, message: encodeMessage([{ n: 1, uint: BigInt.asUintN(64, seconds) }, { n: 2, uint: 5e8 }]) }]);
  t.equal(pb.timestamp(decodeMessage(ts(1_700_000_000n)), 10), '2023-11-14T22:13:20.500Z');
  t.equal(pb.timestamp(decodeMessage(ts(-62135596800n)), 10), undefined);
});

t.test('truncated input throws, unknown wire types too', async (t) => {
  t.throws(() => decodeMessage(Buffer.from([0x0a, 0x05, 0x41])), /truncated/);
  t.throws(() => decodeMessage(Buffer.from([0x0b])), /wire type/);
  t.throws(() => decodeMessage(Buffer.from([0x0a, 0x05, 0x41])), { code: 'NW_ERR_PARSE' }, 'a truncated field is NW_ERR_PARSE');
  t.throws(() => decodeMessage(Buffer.from([0x08, 0x80])), { code: 'NW_ERR_PARSE' }, 'a truncated varint is NW_ERR_PARSE');
  t.throws(() => decodeMessage(Buffer.from([0x08, ...new Array<number>(11).fill(0xff), 0x01])), { code: 'NW_ERR_PARSE' }, 'a varint over 64 bits is NW_ERR_PARSE');
  t.throws(() => decodeMessage(Buffer.from([0x0d, 0x01])), { code: 'NW_ERR_PARSE' }, 'a truncated fixed32 is NW_ERR_PARSE');
  t.throws(() => decodeMessage(Buffer.from([0x0b])), { code: 'NW_ERR_PARSE' }, 'an unsupported wire type is NW_ERR_PARSE');
});

t.test('fuzz: any bytes decode or throw NW_ERR_PARSE, nothing else', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        decodeMessage(Buffer.from(bytes));
        return true;
      } catch (err) {
        return (err as { code?: string }).code === 'NW_ERR_PARSE';
      }
    }),
    { numRuns: 5000 },
  );
  t.pass('5,000 random messages');
});
