// Percentage bands with hysteresis, for usage checks that hover at a threshold (pids, conntrack): a
// finding fires at its threshold and clears only `clearBelow` points under it, so a count that
// oscillates around 80% is one finding, not one per cycle.
import type { Severity } from '../../protocol/finding.js';
import { s } from '../../protocol/schema.js';

export interface Bands {
  warning: number;
  critical: number;
}

/** The config of one usage band: warning and critical percentages. */
export function bandSpec(doc: string, warning: number, critical: number) {
  return s.object({
    warning: s.percent({ default: warning, doc: `${doc}: warning at this percentage` }),
    critical: s.percent({ default: critical, doc: `${doc}: critical at this percentage` }),
  });
}

/** The config of the hysteresis margin. */
export function clearBelowSpec(what: string) {
  return s.percent({ default: 5, doc: `a firing ${what} finding clears only once usage falls this many percentage points below the threshold it crossed` });
}

/**
 * The severity of `pct` against the bands, given what fired last time (`before`). Pure. A critical stays
 * critical down to critical - clearBelow, then is a warning; a warning (or a critical falling further)
 * stays a warning down to warning - clearBelow.
 */
export function severityWithHysteresis(pct: number, bands: Bands, clearBelow: number, before: Severity | undefined): Severity | undefined {
  if (pct >= bands.critical) return 'critical';
  if (before === 'critical' && pct >= bands.critical - clearBelow) return 'critical';
  if (pct >= bands.warning) return 'warning';
  if ((before === 'critical' || before === 'warning') && pct >= bands.warning - clearBelow) return 'warning';
  return undefined;
}
