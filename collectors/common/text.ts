// Turning bytes from the kernel into text we can show, without losing what was not UTF-8.

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes UTF-8; bytes that are not valid UTF-8 are shown as \xHH so the name stays recognisable. */
export function decodeBytes(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return lossless(bytes);
  }
}

function lossless(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] ?? 0;
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len > 0 && i + len <= bytes.length) {
      try {
        out += strictUtf8.decode(bytes.subarray(i, i + len));
        i += len;
        continue;
      } catch {
        // fall through to escaping this byte
      }
    }
    out += `\\x${b.toString(16).padStart(2, '0')}`;
    i += 1;
  }
  return out;
}

/** Undoes the kernel's octal escaping (\040 space, \011 tab, \012 newline, \134 backslash) at byte level. */
export function unescapeOctal(field: Uint8Array): Uint8Array {
  if (!field.includes(0x5c)) return field;
  const out = new Uint8Array(field.length);
  let o = 0;
  for (let i = 0; i < field.length; i++) {
    const b = field[i] ?? 0;
    if (b === 0x5c && i + 3 < field.length && isOctal(field[i + 1]) && isOctal(field[i + 2]) && isOctal(field[i + 3])) {
      out[o++] = ((field[i + 1]! - 48) << 6) | ((field[i + 2]! - 48) << 3) | (field[i + 3]! - 48);
      i += 3;
    } else {
      out[o++] = b;
    }
  }
  return out.subarray(0, o);
}

function isOctal(b: number | undefined): boolean {
  return b !== undefined && b >= 48 && b <= 55;
}

/** Splits a buffer into lines (without the newline). */
export function splitLines(buf: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0x0a) {
      lines.push(buf.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < buf.length) lines.push(buf.subarray(start));
  return lines;
}

/** Splits on single spaces. */
export function splitFields(line: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= line.length; i++) {
    if (i === line.length || line[i] === 0x20) {
      out.push(line.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

export function formatBytes(n: number): string {
  const units = ['B', 'K', 'M', 'G', 'T', 'P'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = unit === 0 ? String(value) : value < 10 ? value.toFixed(1) : String(Math.round(value));
  return `${shown}${units[unit]}`;
}

/** Quotes a path for a shell command in a remedy, only when it needs it. */
export function shellQuote(s: string): string {
  if (/^[A-Za-z0-9_\-./:=@%+,]+$/.test(s)) return s;
  // A name with control characters (a file named with an escape sequence) is quoted as bash's $'...'
  // with \xHH escapes: the command still works when pasted, and printing it does nothing to a terminal.
  if (/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(s)) {
    const bytes = Buffer.from(s, 'utf8');
    let out = '';
    for (const b of bytes) out += b < 0x20 || b >= 0x7f || b === 0x27 || b === 0x5c ? `\\x${b.toString(16).padStart(2, '0')}` : String.fromCharCode(b);
    return `$'${out}'`;
  }
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A whole number >= 0 from a one-value kernel file (pids.current, nf_conntrack_count); undefined when absent or not one. */
export function parseCount(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  return /^\d+$/.test(t) ? Number(t) : undefined;
}
