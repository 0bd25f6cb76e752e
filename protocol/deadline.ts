// The one deadline helper: every "wait for this, but not longer than that" in nodewarden goes through
// withDeadline, and every abortable pause through sleep. It lives in protocol/ because the agent, the
// collectors, the aggregator and the CLI all wait on things, and protocol/ is the one room every side may
// import (it imports nothing of ours). Hand-written Promise.race deadlines had drifted apart: some left
// their timer running, some left the loser's rejection unhandled, none could cancel the loser.

/** What a deadline waits for: a promise, or a function that starts the work with the deadline's signal. */
export type Work<T> = PromiseLike<T> | ((signal: AbortSignal) => PromiseLike<T>);

export interface DeadlineOptions {
  /** Let the process exit while only this timer is left (a background call nobody waits to see end). */
  unref?: boolean;
}

/**
 * Waits for `work` at most `ms` milliseconds.
 *
 * - `work` is a promise, or a function that starts the work with an AbortSignal; that signal is aborted
 *   when the deadline passes, so the loser can stop (close its socket, kill its child, end its walk).
 * - At the deadline `onTimeout()` decides the outcome: an Error it returns rejects the promise (a
 *   NodewardenError with code NW_ERR_TIMEOUT, as a rule), anything else is the value it resolves with
 *   (`undefined` for "no answer", `'timeout'` for a caller that branches).
 * - The timer is cleared whichever side wins, and the work's own outcome is always observed, so a
 *   rejection that arrives after the deadline is never an unhandled rejection.
 * - The timer keeps the process alive unless `unref` is set: a `check` waiting on a hung read must still
 *   report the timeout rather than exit with the read pending.
 */
export function withDeadline<T>(work: Work<T>, ms: number, onTimeout: () => Error, opts?: DeadlineOptions): Promise<T>;
export function withDeadline<T, U>(work: Work<T>, ms: number, onTimeout: () => U, opts?: DeadlineOptions): Promise<T | U>;
export function withDeadline<T, U>(work: Work<T>, ms: number, onTimeout: () => Error | U, opts: DeadlineOptions = {}): Promise<T | U> {
  const controller = new AbortController();
  return new Promise<T | U>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      controller.abort();
      let outcome: Error | U;
      try {
        outcome = onTimeout();
      } catch (err) {
        reject(err);
        return;
      }
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    }, Math.max(0, ms));
    if (opts.unref) timer.unref();
    const settle = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn();
    };
    let started: PromiseLike<T>;
    try {
      started = typeof work === 'function' ? work(controller.signal) : work;
    } catch (err) {
      settle(() => reject(err));
      return;
    }
    // Both handlers are attached at once: a loser that rejects later is observed here, and ignored.
    Promise.resolve(started).then(
      (value) => settle(() => resolve(value)),
      (err: unknown) => settle(() => reject(err)),
    );
  });
}

/** Sleeps `ms`, waking early when `signal` aborts; the timer and the listener go away either way. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
