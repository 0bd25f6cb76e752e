// Kubernetes resource quantities (`resources.limits['ephemeral-storage']`, an emptyDir's `sizeLimit`):
// `1Gi`, `500M`, `1.5G`, `2e9`, `1024`, `100Ki`, `0`. Pure. What the API server stores is already
// canonical, but a quantity is a string from a peer: anything that is not one, or is negative, absurdly
// long or beyond what a filesystem could hold, is undefined and never throws.

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const QUANTITY = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([eE][+-]?\d{1,3})|(n|u|m|k|M|G|T|P|E))?$/;

/** Bytes of a quantity (rounded up to a whole byte, as kubelet compares), or undefined when it is not one. */
export function parseQuantity(raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isFinite(raw) && raw >= 0 && raw <= Number.MAX_SAFE_INTEGER ? Math.ceil(raw) : undefined;
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 64) return undefined;
  const m = QUANTITY.exec(raw.trim());
  if (!m) return undefined;
  const [, sign, digits, binary, exponent, decimal] = m;
  const value = Number(digits) * (binary ? BINARY[binary]! : exponent ? 10 ** Number(exponent.slice(1)) : DECIMAL[decimal ?? '']!);
  if (sign === '-' && value !== 0) return undefined;
  if (!Number.isFinite(value) || value > Number.MAX_SAFE_INTEGER) return undefined;
  return Math.ceil(value);
}
