// The one finding-change rule: news is another severity, state or meaning; ticking numbers are a refresh.
import t from 'tap';
import { TRANSITION_TYPES, isNews, isRefresh, meaning } from '../../protocol/transition.js';
import { finding } from '../helpers/findings.js';

const base = finding('n1', 'sockstat.timewait', 'tcp', 'warning', { message: 'TIME_WAIT sockets: 131,071 of 131,072 (99.9%)', remedy: 'ss -tan state time-wait | head -20', evidence: { timewait: 131071 } });

t.test('numbers masked: a ticking count is not news, but is a refresh', async (t) => {
  const ticked = { ...base, message: 'TIME_WAIT sockets: 131,072 of 131,072 (100%)', evidence: { timewait: 131072 } };
  t.equal(meaning(base.message), meaning(ticked.message));
  t.notOk(isNews(base, ticked), 'not news');
  t.ok(isRefresh(base, ticked), 'a refresh');
  t.ok(isRefresh(base, { ...base, evidence: { timewait: 1 } }), 'evidence alone is a refresh');
  t.notOk(isRefresh(base, { ...base }), 'the same finding is nothing');
});

t.test('severity, state, message words and remedy are news', async (t) => {
  t.ok(isNews(base, { ...base, severity: 'critical' }), 'severity');
  t.ok(isNews(base, { ...base, state: 'resolved' }), 'state');
  t.ok(isNews(base, { ...base, message: 'TIME_WAIT sockets: 131,071 of 131,072 (99.9%), and the table is full' }), 'message words');
  t.ok(isNews(base, { ...base, remedy: 'sysctl net.ipv4.tcp_tw_reuse=1' }), 'remedy');
  t.ok(isNews(base, { ...base, remedy: 'ss -tan state time-wait | head -50' }), 'a number in the remedy is news too: the command is another one');
  t.same([...TRANSITION_TYPES], ['firing', 'updated', 'resolved']);
});
