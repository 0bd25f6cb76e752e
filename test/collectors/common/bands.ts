import t from 'tap';
import { severityWithHysteresis } from '../../../collectors/common/bands.js';

t.test('fires at the threshold, clears only clearBelow points under it', async (t) => {
  const bands = { warning: 80, critical: 90 };
  const sev = (pct: number, before?: 'warning' | 'critical') => severityWithHysteresis(pct, bands, 5, before);
  t.same([sev(79.9), sev(80), sev(90), sev(100)], [undefined, 'warning', 'critical', 'critical']);
  t.same([sev(75, 'warning'), sev(74.9, 'warning')], ['warning', undefined], 'a warning holds down to 75');
  t.same([sev(85, 'critical'), sev(84.9, 'critical'), sev(75, 'critical'), sev(74.9, 'critical')], ['critical', 'warning', 'warning', undefined], 'a critical holds down to 85, then is a warning down to 75');
  t.equal(sev(76), undefined, 'nothing fired before: below the threshold is quiet');
  t.equal(severityWithHysteresis(82, bands, 0, 'critical'), 'warning', 'no margin: plain bands');
});
