// The one place nodewarden runs commands: execa, no shell, always a timeout and an output cap.
import { NodewardenError } from '../../protocol/errors.js';
import { withDeadline } from '../../protocol/deadline.js';
import type { Exec, ExecResult } from '../../collectors/types.js';

/** A command that did not finish in time. `exited` settles when the child really ends (maybe never). */
export class ExecTimeoutError extends NodewardenError {
  readonly exited: Promise<void>;
  constructor(message: string, exited: Promise<void>) {
    super('NW_ERR_TIMEOUT', message);
    this.exited = exited;
  }
}

const DEFAULT_MAX_BUFFER = 16 * 1024 * 1024;

/**
 * Runs `file args` and resolves with its output and exit code (a non-zero exit is not an error here:
 * callers decide). Rejects with NW_ERR_TIMEOUT when it does not finish in time, NW_ERR_EXEC when it
 * cannot start. The timer is ours, not only execa's: a child stuck in uninterruptible sleep (D state)
 * ignores SIGKILL, and we must not wait for it.
 */
// execa is loaded on first use: it costs ~0.1 s of start-up, and `check --only sockets` never runs a command.
let execaModule: Promise<typeof import('execa')> | undefined;

export const exec: Exec = async (file, args, opts) => {
  const { execa } = await (execaModule ??= import('execa'));
  const child = execa(file, args, {
    reject: false,
    stdin: 'ignore',
    timeout: opts.timeoutMs,
    killSignal: 'SIGKILL',
    maxBuffer: opts.maxBuffer ?? DEFAULT_MAX_BUFFER,
    encoding: 'utf8',
    stripFinalNewline: false,
  });
  const exited = child.then(
    () => undefined,
    () => undefined,
  );
  const result = await withDeadline(child, opts.timeoutMs + 250, () => new ExecTimeoutError(`${file} did not finish within ${opts.timeoutMs} ms`, exited));
  if (result.timedOut) {
    throw new ExecTimeoutError(`${file} did not finish within ${opts.timeoutMs} ms`, exited);
  }
  if (result.failed && result.exitCode === undefined) {
    throw new NodewardenError('NW_ERR_EXEC', `could not run ${file}: ${result.shortMessage ?? result.message}`);
  }
  const out: ExecResult = { stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? ''), exitCode: result.exitCode ?? -1 };
  return out;
};
