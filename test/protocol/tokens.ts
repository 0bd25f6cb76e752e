import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTokenLines, readTokenFile } from '../../protocol/tokens.js';
import { NodewardenError } from '../../protocol/errors.js';

t.test('token files: one per line, optionally NAME TOKEN, comments and blanks ignored', async (t) => {
  t.same(parseTokenLines('# ops team\n\nalice s3cret-0123456789abcdef\nbare-token-0123456789\n'), [
    { name: 'alice', secret: 's3cret-0123456789abcdef', line: 3 },
    { secret: 'bare-token-0123456789', line: 4 },
  ]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-tokens-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'ok'), 'agents agent-token-0123456789\n');
  t.equal(readTokenFile(path.join(dir, 'ok')), 'agent-token-0123456789');
  writeFileSync(path.join(dir, 'short'), 'CHANGE-ME\n');
  t.equal((t.throws(() => readTokenFile(path.join(dir, 'short'))) as NodewardenError).code, 'NW_ERR_CONFIG', 'the placeholder in manifests/secret.yaml is refused');
  t.match((t.throws(() => readTokenFile(path.join(dir, 'missing'))) as Error).message, /no such file/);
});
