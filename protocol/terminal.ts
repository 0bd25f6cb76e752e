// Text that came from a node or the aggregator (finding messages, subjects, container names, command
// lines, image names, close reasons) is data, never terminal commands. Every string shown to a person
// goes through escapeForTerminal; every JSON line printed goes through jsonForTerminal. One place, so
// one fuzz test covers tail, prune, check, who-holds and the logs.

// C0 controls (ESC, BEL, CR, LF, backspace...), DEL, C1 controls (U+0080-U+009F: U+009B is a one-character
// CSI, U+009D an OSC), and the invisible direction overrides that make a line read differently from what
// it holds (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069), plus the Unicode line separators.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// In JSON output C0 is already escaped by JSON.stringify; the rest is not.
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

const hex = (code: number, width: number) => code.toString(16).padStart(width, '0');

/** The string with every control character shown as a visible escape (`\x1b`, `\u009b`, `\n`). */
export function escapeForTerminal(s: string): string {
  return s.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return NAMED[c] ?? (code <= 0xff ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`);
  });
}

/** JSON.stringify whose output holds no C1 control or direction override: they become \uXXXX, same value. */
export function jsonForTerminal(value: unknown, space?: number): string {
  return escapeJsonLine(JSON.stringify(value, null, space));
}

/** The same for text that is already JSON (a log line, a line from the aggregator): \uXXXX is valid inside strings. */
export function escapeJsonLine(json: string): string {
  return json.replace(UNSAFE_IN_JSON, (c) => `\\u${hex(c.charCodeAt(0), 4)}`);
}

/** Whether a string holds nothing a terminal would act on. */
export function isTerminalSafe(s: string): boolean {
  UNSAFE.lastIndex = 0;
  return !UNSAFE.test(s);
}
