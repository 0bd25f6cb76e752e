// `nodewarden find-immutable PATH...`: the runbooks' `lsattr -R PATH | grep -- -i-`, on every core,
// with one statx per entry and no file opened. Prints only what carries the i or a attribute.
import os from 'node:os';
import { NodewardenError } from '../protocol/errors.js';
import { createAttrAccess } from '../agent/host/attrs.js';
import { attrLetters, chattrCommand } from '../collectors/immutable.js';
import { escapeForTerminal, jsonForTerminal } from '../protocol/terminal.js';

export async function runFindImmutable(paths: string[], opts: { json: boolean }): Promise<{ code: number; text: string }> {
  const attrs = createAttrAccess();
  if (!attrs) throw new NodewardenError('NW_ERR_NO_DATA', 'the native attrs module is not built: run npm rebuild (needs python3, make and a C compiler)');
  const r = await attrs.scanTree(paths, Math.min(4, os.availableParallelism()));
  const found = r.flagged
    .map(([p, bits]) => ({ path: p, attributes: attrLetters(bits), chattr: chattrCommand(bits, p) }))
    .sort((a, b) => a.path.localeCompare(b.path));
  if (r.entries === 0 && r.errors > 0) throw new NodewardenError('NW_ERR_USAGE', `cannot read ${paths.join(', ')}`);
  // Each file with its own command: -i for immutable, -a for append-only, -ia for both (one chattr -i
  // does not clear an append-only file). File names are shown escaped; the command quotes them so
  // that it works pasted, whatever bytes the name holds.
  const width = Math.min(80, Math.max(0, ...found.map((f) => escapeForTerminal(f.path).length)));
  const text = opts.json
    ? `${jsonForTerminal({ scanned: r.entries, unreadable: r.errors, found }, 2)}\n`
    : found.map((f) => `${f.attributes}  ${escapeForTerminal(f.path).padEnd(width)}  ${f.chattr}\n`).join('') +
      `# ${r.entries.toLocaleString('en-US')} entries scanned, ${found.length} with i or a${r.errors ? `, ${r.errors} unreadable` : ''}` +
      (found.length ? '; each line ends with the chattr that clears it' : '') +
      '\n';
  // Like grep: 0 when something was found, 1 when nothing was.
  return { code: found.length > 0 ? 0 : 1, text };
}
