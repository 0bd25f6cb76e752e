import t from 'tap';
import { getEventListeners } from 'node:events';
import { setImmediate as tick } from 'node:timers/promises';
import { sleep, withDeadline } from '../../protocol/deadline.js';
import { NodewardenError } from '../../protocol/errors.js';

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const never = <T>() => new Promise<T>(() => {});
const timeoutError = () => new NodewardenError('NW_ERR_TIMEOUT', 'no answer in time');

t.test('the work wins: its value, and the timer is cleared at once', async (t) => {
  const before = timers();
  t.equal(await withDeadline(Promise.resolve(42), 60_000, timeoutError), 42);
  t.equal(timers(), before, 'no 60 s timer left behind to hold the process');
  await t.rejects(withDeadline(Promise.reject(new NodewardenError('NW_ERR_EXEC', 'boom')), 60_000, timeoutError), { code: 'NW_ERR_EXEC' }, 'its own error, not a timeout');
  t.equal(timers(), before, 'cleared after a rejection too');
});

t.test('the deadline wins: an Error rejects with its code, anything else is the value', async (t) => {
  await t.rejects(withDeadline(never(), 10, timeoutError), { code: 'NW_ERR_TIMEOUT' });
  t.equal(await withDeadline(never<number>(), 10, () => undefined), undefined);
  t.equal(await withDeadline(never<number>(), 10, () => 'timeout' as const), 'timeout');
});

t.test('the loser is told through its signal; a winner is not', async (t) => {
  let seen: AbortSignal | undefined;
  await t.rejects(
    withDeadline(
      (signal) => {
        seen = signal;
        return never();
      },
      10,
      timeoutError,
    ),
    { code: 'NW_ERR_TIMEOUT' },
  );
  t.equal(seen?.aborted, true, 'aborted at the deadline');
  let won: AbortSignal | undefined;
  await withDeadline(
    async (signal) => {
      won = signal;
      return 1;
    },
    60_000,
    timeoutError,
  );
  await tick();
  t.equal(won?.aborted, false, 'work that finished in time is not aborted');
});

t.test('a loser that rejects after the deadline is not an unhandled rejection', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));
  let fail!: (err: Error) => void;
  const late = new Promise<never>((_, reject) => (fail = reject));
  await t.rejects(withDeadline(late, 10, timeoutError), { code: 'NW_ERR_TIMEOUT' });
  fail(new Error('too late'));
  await tick();
  await tick();
  t.same(unhandled, [], 'nothing reached unhandledRejection');
});

t.test('work that throws while starting rejects the promise instead of escaping', async (t) => {
  await t.rejects(
    withDeadline(
      () => {
        throw new NodewardenError('NW_ERR_EXEC', 'cannot start');
      },
      60_000,
      timeoutError,
    ),
    { code: 'NW_ERR_EXEC' },
  );
});

t.test('sleep wakes early when aborted and leaves no listener or timer behind', async (t) => {
  const before = timers();
  const c = new AbortController();
  const slept = sleep(60_000, c.signal);
  t.equal(getEventListeners(c.signal, 'abort').length, 1);
  c.abort();
  await slept;
  t.equal(timers(), before, 'its timer is gone');
  const c2 = new AbortController();
  await sleep(1, c2.signal);
  t.equal(getEventListeners(c2.signal, 'abort').length, 0, 'a sleep that ran out removes its listener');
  await sleep(60_000, c.signal);
  t.pass('an already aborted signal does not sleep at all');
});
