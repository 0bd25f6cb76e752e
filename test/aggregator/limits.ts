import t from 'tap';
import { DEFAULT_LIMITS, MessageRate, NodesPerToken } from '../../aggregator/limits.js';

t.test('a connection may send its burst at once, then only as fast as the sustained rate refills it', async (t) => {
  const rate = new MessageRate({ perSecond: 10, burst: 5 }, 0);
  const admitted = Array.from({ length: 8 }, () => rate.admit(0)).filter(Boolean).length;
  t.equal(admitted, 5, 'the burst, and not one more at the same instant');
  t.notOk(rate.admit(50), 'half a message refilled is not a message');
  t.ok(rate.admit(150), '100 ms at 10/s refills one');
  t.notOk(rate.admit(150));
  t.equal([1, 2, 3, 4, 5, 6, 7].filter(() => rate.admit(60_000)).length, 5, 'a long pause refills up to the burst, never beyond');
});

t.test('a shared token speaks for at most max nodes; the same node again is free; a forgotten node frees its place', async (t) => {
  const nodes = new NodesPerToken(2);
  t.equal(nodes.claim('agents', 'a'), undefined);
  t.equal(nodes.claim('agents', 'b'), undefined);
  t.equal(nodes.claim('agents', 'a'), undefined, 'a node it already speaks for (a reconnect) is not a new one');
  t.equal(nodes.claim('agents', 'c'), 2, 'the third node is refused, with the count the refusal names');
  t.equal(nodes.claim('other-token', 'c'), undefined, 'each token has its own quota');
  nodes.release('a');
  t.equal(nodes.claim('agents', 'c'), undefined, 'forgetting a node frees its place for the token');
  t.equal(nodes.claim('agents', 'd'), 2);
});

t.test('the defaults are the ones the README documents', async (t) => {
  t.same(
    { connections: DEFAULT_LIMITS.maxConnections, perNode: DEFAULT_LIMITS.maxFindingsPerNode, perToken: DEFAULT_LIMITS.maxNodesPerToken, activeMiB: DEFAULT_LIMITS.maxActiveBytes / 1048576, historyMiB: DEFAULT_LIMITS.maxHistoryBytes / 1048576, journalMiB: DEFAULT_LIMITS.maxJournalBytes / 1048576, handshakeMs: DEFAULT_LIMITS.handshakeTimeoutMs, idleMs: DEFAULT_LIMITS.idleTimeoutMs },
    { connections: 10_000, perNode: 2_000, perToken: 5_000, activeMiB: 48, historyMiB: 24, journalMiB: 48, handshakeMs: 10_000, idleMs: 5_000 },
  );
});
