import t from 'tap';
import { Fleet } from '../../aggregator/fleet.js';
import { AggregatorCounters, renderAggregatorMetrics } from '../../aggregator/metrics.js';
import { finding } from '../helpers/findings.js';

function fleet(t: { teardown(fn: () => void): void }) {
  const f = new Fleet({ historyLimit: 100, silentAfterMs: 60_000 });
  t.teardown(() => f.close());
  return f;
}

const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

t.test('findings by check and severity, with a check no collector declares counted as "other"', async (t) => {
  const f = fleet(t);
  f.connect('node-a', { agentVersion: 't', collectors: ['disk'] });
  f.applySnapshot('node-a', [finding('node-a', 'disk.usage', '/'), finding('node-a', 'disk.usage', '/var'), finding('node-a', 'made.up', 'x'), finding('node-a', 'also.made.up', 'y', 'critical')]);
  const text = renderAggregatorMetrics({ fleet: f, counters: new AggregatorCounters(), tailers: 2, tailerBufferedBytes: 4096 });
  t.equal(sample(text, 'nodewarden_aggregator_findings{check="disk.usage",severity="warning"}'), 2);
  t.equal(sample(text, 'nodewarden_aggregator_findings{check="other",severity="warning"}'), 1);
  t.equal(sample(text, 'nodewarden_aggregator_findings{check="other",severity="critical"}'), 1);
  t.notMatch(text, /made\.up/, 'a made-up check name never becomes a label value');
  t.equal(sample(text, 'nodewarden_aggregator_nodes{connected="true"}'), 1);
  t.equal(sample(text, 'nodewarden_aggregator_tailers'), 2);
  t.equal(sample(text, 'nodewarden_aggregator_tailer_buffered_bytes'), 4096);
  t.notMatch(text, /node=/, 'no node label: one series per node and check would not scale');
});

t.test('the counters every part adds to, and the journal series only with a journal', async (t) => {
  const counters = new AggregatorCounters();
  counters.messages = 7;
  counters.transitions = 3;
  counters.dropped = 1;
  counters.reject('upgrade 401');
  counters.reject('upgrade 401');
  counters.error('journal', 'NW_ERR_IO');
  const without = renderAggregatorMetrics({ fleet: fleet(t), counters, tailers: 0, tailerBufferedBytes: 0 });
  t.equal(sample(without, 'nodewarden_aggregator_messages_total'), 7);
  t.equal(sample(without, 'nodewarden_aggregator_transitions_total'), 3);
  t.equal(sample(without, 'nodewarden_aggregator_connections_dropped_total'), 1);
  t.equal(sample(without, 'nodewarden_aggregator_rejected_total{reason="upgrade 401"}'), 2);
  t.equal(sample(without, 'nodewarden_aggregator_errors_total{where="journal",code="NW_ERR_IO"}'), 1);
  t.notMatch(without, /journal_ok/, 'no --journal: no journal series');
  const withJournal = renderAggregatorMetrics({ fleet: fleet(t), counters, tailers: 0, tailerBufferedBytes: 0, journal: { ok: false, writeFailures: 4, bytes: 512, pendingBytes: 2048, compactions: 0, catchUps: 0 } });
  t.equal(sample(withJournal, 'nodewarden_aggregator_journal_ok'), 0);
  t.equal(sample(withJournal, 'nodewarden_aggregator_journal_write_failures_total'), 4);
  t.equal(sample(withJournal, 'nodewarden_aggregator_journal_bytes'), 512);
  t.equal(sample(withJournal, 'nodewarden_aggregator_journal_pending_bytes'), 2048);
});
