// Kubernetes quantities as pod specs carry them (ephemeral-storage limits, emptyDir sizeLimit): every
// suffix form the API server accepts, and anything else from a peer is undefined, never a throw.
import t from 'tap';
import fc from 'fast-check';
import { parseQuantity } from '../../../agent/kube/quantity.js';

t.test('the forms a pod spec uses', async (t) => {
  const cases: [unknown, number][] = [
    ['1Gi', 2 ** 30], ['10Mi', 10 * 2 ** 20], ['100Ki', 102_400], ['1Ti', 2 ** 40], ['.5Gi', 2 ** 29], ['1.5Gi', 1.5 * 2 ** 30],
    ['500M', 5e8], ['1G', 1e9], ['2k', 2000], ['1.5G', 1.5e9], ['2e9', 2e9], ['1E3', 1000], ['1024', 1024], ['0', 0], ['+1Mi', 2 ** 20],
    ['100m', 1], // a milli-byte rounds up to a whole byte, as kubelet compares
    [1073741824, 2 ** 30], [' 1Gi ', 2 ** 30],
  ];
  for (const [raw, bytes] of cases) t.equal(parseQuantity(raw), bytes, `${JSON.stringify(raw)} is ${bytes} bytes`);
});

t.test('what is not a quantity is undefined', async (t) => {
  for (const raw of ['', 'Gi', '1GB', '1gi', '1 Gi', '-1Gi', '-5', '1e400', '1e', 'NaN', 'Infinity', '0x10', '1Gi1', '١', 'x'.repeat(100), '9'.repeat(40), null, undefined, {}, [], -1, Number.NaN, Infinity, true]) {
    t.equal(parseQuantity(raw), undefined, `${JSON.stringify(raw)}`);
  }
  t.equal(parseQuantity('-0'), 0, 'minus zero is zero');
});

t.test('fuzz: never throws; a result is a whole, safe, non-negative number of bytes', async (t) => {
  const quantityish = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc.tuple(fc.oneof(fc.constant(''), fc.constant('-'), fc.constant('+')), fc.double({ min: 0, max: 1e20, noNaN: true }).map(String), fc.constantFrom('', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei', 'k', 'M', 'G', 'T', 'P', 'E', 'm', 'u', 'n', 'e3', 'E-2', 'i', 'KiB')).map((p) => p.join('')),
    fc.anything(),
  );
  fc.assert(
    fc.property(quantityish, (raw) => {
      const n = parseQuantity(raw);
      return n === undefined || (Number.isSafeInteger(n) && n >= 0);
    }),
    { numRuns: 5000 },
  );
  t.pass('5,000 inputs');
});
