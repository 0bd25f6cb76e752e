import t from 'tap';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../agent/log.js';

t.test('log lines carry no C1 control: U+009B in a finding message is written as \\u009b', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'log');
  const fd = openSync(file, 'w');
  const log = createLogger({ node: 'n1', level: 'info', destination: fd });
  log.info({ finding: { message: 'csi \u009b2J osc \u009d0;x\u009c esc \x1b[2J' } }, 'firing: \u009b31m');
  log.flush();
  closeSync(fd);
  const text = readFileSync(file, 'utf8');
  t.notMatch(text.trimEnd(), /[\u0000-\u001f\u007f-\u009f]/, 'no control character in the line');
  const line = JSON.parse(text) as { msg: string; finding: { message: string } };
  t.equal(line.finding.message, 'csi \u009b2J osc \u009d0;x\u009c esc \x1b[2J', 'the JSON value is unchanged');
  t.equal(line.msg, 'firing: \u009b31m');
});
