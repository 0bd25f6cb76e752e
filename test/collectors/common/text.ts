import t from 'tap';
import fc from 'fast-check';
import { decodeBytes, formatBytes, shellQuote, splitFields, splitLines, unescapeOctal } from '../../../collectors/common/text.js';

const str = (b: Uint8Array) => Buffer.from(b).toString('utf8');

t.test('decodeBytes keeps UTF-8 and shows other bytes as \\xHH', async (t) => {
  t.equal(decodeBytes(Buffer.from('café/日本')), 'café/日本');
  t.equal(decodeBytes(Buffer.from([0x61, 0xff, 0x62])), 'a\\xffb');
  t.equal(decodeBytes(Buffer.concat([Buffer.from('é'), Buffer.from([0xc3])])), 'é\\xc3', 'a truncated sequence at the end is escaped');
  t.equal(decodeBytes(Buffer.from([0xed, 0xa0, 0x80])), '\\xed\\xa0\\x80', 'a surrogate encoding is not valid UTF-8');
});

t.test('decodeBytes never throws and round-trips every valid UTF-8 string', async () => {
  fc.assert(fc.property(fc.string({ unit: 'grapheme' }), (s) => decodeBytes(Buffer.from(s, 'utf8')) === s));
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => typeof decodeBytes(b) === 'string'));
});

t.test('unescapeOctal undoes the kernel escapes, leaves the rest', async (t) => {
  t.equal(str(unescapeOctal(Buffer.from('/a\\040b\\011c\\012d\\134e'))), '/a b\tc\nd\\e');
  t.equal(str(unescapeOctal(Buffer.from('/a\\04'))), '/a\\04', 'a short escape at the end stays as written');
  t.equal(str(unescapeOctal(Buffer.from('/a\\089'))), '/a\\089', 'non-octal digits stay as written');
  const plain = Buffer.from('/plain');
  t.equal(unescapeOctal(plain), plain, 'no backslash: the same buffer, no copy');
});

t.test('splitLines and splitFields', async (t) => {
  t.same(splitLines(Buffer.from('a\nb\n\nc')).map(str), ['a', 'b', '', 'c']);
  t.same(splitLines(Buffer.from('a\n')).map(str), ['a'], 'a final newline adds no empty line');
  t.same(splitLines(Buffer.alloc(0)), []);
  t.same(splitFields(Buffer.from('1 2  3')).map(str), ['1', '2', '', '3'], 'single-space splitting keeps empty fields');
});

t.test('formatBytes in binary units as df -h shows them', async (t) => {
  t.equal(formatBytes(0), '0B');
  t.equal(formatBytes(1023), '1023B');
  t.equal(formatBytes(1536), '1.5K');
  t.equal(formatBytes(20 * 1024 * 1024 * 1024), '20G');
  t.equal(formatBytes(2 ** 60), '1024P', 'past the last unit it stays in P');
});

t.test('shellQuote quotes only what a shell would split or expand', async (t) => {
  t.equal(shellQuote('/var/lib/docker'), '/var/lib/docker');
  t.equal(shellQuote('/mnt/my disk'), "'/mnt/my disk'");
  t.equal(shellQuote("it's"), "'it'\\''s'");
  t.equal(shellQuote('$(rm -rf /)'), "'$(rm -rf /)'");
});
