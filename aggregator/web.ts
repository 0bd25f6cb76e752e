// The web view's files: built from web/ by `npm run build` into dist/web and shipped in the package.
// Read once at start into memory and served from there with their content types, a strict
// Content-Security-Policy (scripts from this origin only: no inline script, no eval) and nosniff.
// Nothing is fetched from anywhere else, at build or at run time.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/** Headers on every answer the web view gets (its files and its API answers alike). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export interface WebAsset {
  type: string;
  body: Buffer;
}

/**
 * Where the built files are: dist/web beside the compiled aggregator, or the package's dist/web when
 * running from another output directory (the tests' dist-test).
 */
export function defaultWebDir(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const dir of [path.join(here, '..', 'web'), path.join(here, '..', '..', 'dist', 'web')]) {
    if (existsSync(path.join(dir, 'index.html')) && existsSync(path.join(dir, 'app.js'))) return dir;
  }
  return undefined;
}

/** Every servable file of `dir` by URL path ('/' is index.html); empty when there is no build. */
export function loadWebAssets(dir: string | undefined): Map<string, WebAsset> {
  const out = new Map<string, WebAsset>();
  if (!dir) return out;
  for (const name of readdirSync(dir)) {
    const type = TYPES[path.extname(name)];
    if (!type || !/^[a-z0-9-]+\.[a-z]+$/.test(name)) continue;
    const body = readFileSync(path.join(dir, name));
    out.set(`/${name}`, { type, body });
    if (name === 'index.html') out.set('/', { type, body });
  }
  return out;
}
