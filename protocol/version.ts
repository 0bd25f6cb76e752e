// nodewarden's version, read once from package.json: the one place it is written. Compiled, this file
// is dist/protocol/version.js (package.json two levels up, as in the image's /app); run from source
// by the tests it is protocol/version.ts (one level up).
import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'nodewarden' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there from this layout: try the next
    }
  }
  return 'unknown';
}

/** The version in package.json ("unknown" if no nodewarden package.json is found beside the code). */
export const VERSION: string = readVersion();
