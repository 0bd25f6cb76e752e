import t from 'tap';
import { exec, ExecTimeoutError } from '../../../agent/host/exec.js';
import { isNodewardenError } from '../../../protocol/errors.js';

t.test('runs without a shell and returns output and exit code; a non-zero exit is not an error', async (t) => {
  const ok = await exec('sh', ['-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 10_000 });
  t.same(ok, { stdout: 'out\n', stderr: 'err\n', exitCode: 3 });
  const literal = await exec('echo', ['$HOME', '*', ';ls'], { timeoutMs: 10_000 });
  t.equal(literal.stdout, '$HOME * ;ls\n', 'arguments are not expanded by a shell');
});

t.test('a command that cannot start rejects with NW_ERR_EXEC', async (t) => {
  await t.rejects(exec('/nonexistent/nodewarden-tool', [], { timeoutMs: 10_000 }), { code: 'NW_ERR_EXEC' });
});

t.test('a command past its timeout rejects with NW_ERR_TIMEOUT, and the child is killed', async (t) => {
  const err = await exec('sleep', ['60'], { timeoutMs: 300 }).catch((e: unknown) => e);
  t.ok(isNodewardenError(err, 'NW_ERR_TIMEOUT'), 'timeout code');
  t.ok(err instanceof ExecTimeoutError);
  await (err as ExecTimeoutError).exited; // settles: the child was really ended, not left running
  t.pass('the timed-out child exited');
});

t.test('output past maxBuffer does not grow memory without bound', async (t) => {
  const r = await exec('head', ['-c', '1000000', '/dev/zero'], { timeoutMs: 10_000, maxBuffer: 1000 }).catch((e: unknown) => e);
  if (r instanceof Error) {
    t.ok(isNodewardenError(r), `a capped command fails with a code, not a bare Error: ${r.message}`);
  } else {
    const res = r as { stdout: string };
    t.ok(res.stdout.length <= 1000, `stdout capped at 1000 chars, got ${res.stdout.length}`);
  }
});
