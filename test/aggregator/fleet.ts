// The aggregator's per-node state: snapshots and deltas make transitions by the one change rule;
// a refresh only renews what is stored.
import t from 'tap';
import { Fleet, type TimedTransition } from '../../aggregator/fleet.js';
import { finding } from '../helpers/findings.js';

function fleet(over: Partial<ConstructorParameters<typeof Fleet>[0]> = {}) {
  const f = new Fleet({ historyLimit: 100, silentAfterMs: 60_000, ...over });
  const seen: TimedTransition[] = [];
  f.on('transition', (x: TimedTransition) => seen.push(x));
  t.teardown(() => f.close());
  return { f, seen };
}

const a = finding('n1', 'sockstat.timewait', 'tcp', 'warning', { message: 'TIME_WAIT sockets: 131,071 of 131,072', evidence: { timewait: 131071 } });
const ticked = { ...a, message: 'TIME_WAIT sockets: 131,072 of 131,072', evidence: { timewait: 131072 } };

t.test('a snapshot whose numbers alone changed stores them without an updated transition', async (t) => {
  const { f, seen } = fleet();
  f.applySnapshot('n1', [a]);
  f.applySnapshot('n1', [ticked]);
  t.same(seen.map((x) => x.type), ['firing']);
  t.same(f.active().map((x) => x.message), [ticked.message]);
  f.applySnapshot('n1', [{ ...ticked, severity: 'critical' }]);
  t.same(seen.map((x) => x.type), ['firing', 'updated'], 'a severity change is news');
});

t.test('a refresh renews an active finding: no transition, no history; others are ignored', async (t) => {
  const { f, seen } = fleet();
  f.applyDelta('n1', [{ type: 'firing', finding: a }]);
  t.equal(f.applyRefresh('n1', [ticked]).applied, 1);
  t.same(f.active().map((x) => x.evidence), [{ timewait: 131072 }], 'the view has the fresh numbers');
  t.same(seen.map((x) => x.type), ['firing']);
  t.equal(f.historySize(), 1, 'no history entry');
  t.same(f.applyRefresh('n1', [finding('n1', 'disk.usage', '/var')]), { applied: 0, refused: [] }, 'a finding not active is not a refresh');
  t.same(f.applyRefresh('n1', [{ ...ticked, severity: 'critical' }]), { applied: 0, refused: [{ id: a.id, field: 'severity' }] }, 'a change of meaning is refused');
  t.same(f.active().map((x) => x.severity), ['warning']);
  t.equal(f.countsByCheck()[0]?.count, 1, 'counts stay right');
});

t.test('hostile refresh: a refresh that rewrites anything but numbers is refused field by field and changes nothing', async (t) => {
  const held = finding('n1', 'mount.holder', '/var/lib/kubelet/pods/x', 'warning', { message: 'held by 1 process', remedy: 'ps -f 4242; nsenter -t 4242 -m umount /var/lib/kubelet/pods/x', workload: { pod: 'web-1', namespace: 'default' } } as never);
  const { f, seen } = fleet();
  f.applyDelta('n1', [{ type: 'firing', finding: held }]);
  const rewrites: [string, object][] = [
    ['check', { check: 'disk.usage' }],
    ['subject', { subject: '/etc' }],
    ['firstSeen', { firstSeen: '2001-01-01T00:00:00.000Z' }],
    ['workload', { workload: { pod: 'coredns', namespace: 'kube-system' } }],
    ['remedy', { remedy: 'ps -f 1; nsenter -t 1 -m umount /var/lib/kubelet/pods/x' }],
    ['node', { node: 'n2' }],
    ['message', { message: 'all is well' }],
  ];
  for (const [field, change] of rewrites) {
    t.same(f.applyRefresh('n1', [{ ...held, ...change }]), { applied: 0, refused: [{ id: held.id, field }] }, `a refresh that changes ${field} is refused`);
  }
  t.same(f.active(), [held], 'the stored finding is unchanged');
  t.equal(seen.length, 1, 'no transition');
  t.equal(f.applyRefresh('n1', [{ ...held, message: 'held by 2 process', lastSeen: new Date().toISOString() }]).applied, 1, 'fresh numbers still refresh');
});

t.test('a refresh counts against the byte limit like any finding', async (t) => {
  const { f } = fleet({ maxActiveBytes: 2000 });
  f.applyDelta('n1', [{ type: 'firing', finding: a }]);
  t.throws(() => f.applyRefresh('n1', [{ ...ticked, evidence: { pad: 'x'.repeat(4000) } }]), { code: 'NW_ERR_LIMIT' });
  t.same(f.active().map((x) => x.message), [a.message], 'refused whole: the stored finding is unchanged');
});
