// `nodewarden find-immutable PATH...`: the runbooks' `lsattr -R PATH | grep -- -i-`, on every core,
// with one statx per entry and no file opened. Prints only what carries the i or a attribute.
import os from 'node:os';
import { NodewardenError } from '../protocol/errors.js';
import { createAttrAccess } from '../agent/host/attrs.js';
import { attrLetters } from '../collectors/immutable.js';
import { shellQuote } from '../collectors/common/text.js';

export async function runFindImmutable(paths: string[], opts: { json: boolean }): Promise<{ code: number; text: string }> {
  const attrs = createAttrAccess();
  if (!attrs) throw new NodewardenError('NW_ERR_NO_DATA', 'the native attrs module is not built: run npm rebuild (needs python3, make and a C compiler)');
  const r = await attrs.scanTree(paths, Math.min(4, os.availableParallelism()));
  const found = r.flagged.map(([p, bits]) => ({ path: p, attributes: attrLetters(bits) })).sort((a, b) => a.path.localeCompare(b.path));
  if (r.entries === 0 && r.errors > 0) throw new NodewardenError('NW_ERR_USAGE', `cannot read ${paths.join(', ')}`);
  const text = opts.json
    ? `${JSON.stringify({ scanned: r.entries, unreadable: r.errors, found }, null, 2)}\n`
    : found.map((f) => `${f.attributes}  ${f.path}\n`).join('') +
      `# ${r.entries.toLocaleString('en-US')} entries scanned, ${found.length} with i or a${r.errors ? `, ${r.errors} unreadable` : ''}` +
      (found.length ? `; clear with: chattr -i ${shellQuote(found[0]!.path)}` : '') +
      '\n';
  // Like grep: 0 when something was found, 1 when nothing was.
  return { code: found.length > 0 ? 0 : 1, text };
}
