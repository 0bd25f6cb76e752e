import t from 'tap';
import { NodewardenError, errnoCode, errorMessage, isNodewardenError } from '../../protocol/errors.js';
import { loadConfig } from '../../agent/config.js';

t.test('a typed error carries its code, details and cause for callers that match on code', async (t) => {
  const cause = new Error('underlying');
  const err = new NodewardenError('NW_ERR_PARSE', 'bad input', { cause, details: ['line 3: x'] });
  t.equal(err.code, 'NW_ERR_PARSE');
  t.same(err.details, ['line 3: x']);
  t.equal(err.cause, cause);
  t.ok(err instanceof Error, 'still an Error, so a stack and message reach logs');
  t.equal(new NodewardenError('NW_ERR_USAGE', 'x').cause, undefined, 'no cause when none was given');
});

t.test('isNodewardenError tells our errors, and a given code, from everything else', async (t) => {
  const err = new NodewardenError('NW_ERR_TIMEOUT', 'slow');
  t.ok(isNodewardenError(err));
  t.ok(isNodewardenError(err, 'NW_ERR_TIMEOUT'));
  t.notOk(isNodewardenError(err, 'NW_ERR_EXEC'));
  t.notOk(isNodewardenError(Object.assign(new Error('x'), { code: 'NW_ERR_TIMEOUT' })), 'a look-alike is not ours');
  t.notOk(isNodewardenError(undefined));
});

t.test('errnoCode reads ENOENT from a real system error and nothing from other values', async (t) => {
  let sys: unknown;
  try {
    loadConfig({ file: '/nonexistent/nodewarden.yaml' });
  } catch (err) {
    sys = err;
  }
  t.equal((sys as NodewardenError).code, 'NW_ERR_CONFIG', 'a missing config file is a config error');
  const { readFileSync } = await import('node:fs');
  try {
    readFileSync('/nonexistent/file');
  } catch (err) {
    sys = err;
  }
  t.equal(errnoCode(sys), 'ENOENT');
  t.equal(errnoCode({ code: 5 }), undefined, 'a numeric code is not an errno name');
  t.equal(errnoCode(null), undefined);
  t.equal(errnoCode('ENOENT'), undefined);
});

t.test('errorMessage: an Error says its message, anything else is shown as a string', async (t) => {
  t.equal(errorMessage(new NodewardenError('NW_ERR_PARSE', 'bad bytes')), 'bad bytes');
  t.equal(errorMessage('plain text'), 'plain text');
  t.equal(errorMessage(42), '42');
  t.equal(errorMessage(undefined), 'undefined');
});
