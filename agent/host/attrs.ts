// Loads the native statx module (built from native/attrs.c at install). Without it the immutable
// collector reports no data instead of failing.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errnoCode } from '../../protocol/errors.js';
import type { AttrAccess, AttrScan } from '../../collectors/types.js';

interface NativeAttrs {
  scanTree(roots: string[], threads: number): Promise<AttrScan>;
  attrsOf(path: string): number;
}

let loaded: NativeAttrs | null | undefined;

function load(): NativeAttrs | null {
  if (loaded !== undefined) return loaded;
  const require = createRequire(import.meta.url);
  const here = path.dirname(fileURLToPath(import.meta.url));
  // Compiled: dist/agent/host -> ../../../build; from source (tests): agent/host -> ../../build.
  for (const rel of ['../../../build/Release/nodewarden_attrs.node', '../../build/Release/nodewarden_attrs.node']) {
    try {
      loaded = require(path.join(here, rel)) as NativeAttrs;
      return loaded;
    } catch {
      // try the next place
    }
  }
  loaded = null;
  return loaded;
}

/** The attrs access, or undefined when the native module was not built. */
export function createAttrAccess(): AttrAccess | undefined {
  const native = load();
  if (!native) return undefined;
  return {
    scanTree: (paths, threads) => native.scanTree([...paths], threads),
    attrsOf(p) {
      try {
        return native.attrsOf(p);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
        throw err;
      }
    },
  };
}
