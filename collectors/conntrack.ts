// conntrack: the kernel's connection tracking table (nf_conntrack_count against nf_conntrack_max).
// kube-proxy's iptables/IPVS Services and every NAT need it; when it is full the kernel drops the
// first packet of each new connection ("nf_conntrack: table full, dropping packet", which the kernel
// collector reports as kernel.conntrackFull). This check sees it coming. The count is per network
// namespace, the max is one for the whole kernel (measured on 6.18: a namespace filled to the max reads
// 30 of 30 inside while the root reads 0 of 30): the agent runs with hostNetwork and reads the node's own
// table, where kube-proxy's Services and NAT are tracked. A pod's namespace that fills its own table is
// not counted here; newer kernels name it in the log line ("table full in netns N"), and
// kernel.conntrackFull names that namespace.
import type { Observation, Severity } from '../protocol/finding.js';
import { s, type Infer } from '../protocol/schema.js';
import { clearBelowSpec, severityWithHysteresis } from './common/bands.js';
import { parseCount } from './common/text.js';
import type { Collector } from './types.js';

// netdata's alarm (health.d/netfilter.conf, netfilter_conntrack_full): warning above 90%, clearing
// below 85%, critical above 95%. The table is a hash of fixed-size buckets that is meant to run fairly
// full on a busy NAT node, so 80% is normal there; the last 10% go in seconds under a connection burst.
export const conntrackConfigSpec = s.object({
  warning: s.percent({ default: 90, doc: 'nf_conntrack_count against nf_conntrack_max: warning at this percentage' }),
  critical: s.percent({ default: 95, doc: 'nf_conntrack_count against nf_conntrack_max: critical at this percentage' }),
  clearBelow: clearBelowSpec('conntrack.usage'),
});
export type ConntrackConfig = Infer<typeof conntrackConfigSpec>;

export interface ConntrackData {
  count: number;
  max: number;
  /** Severity that fired last run, for hysteresis. */
  firing?: Severity;
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/** The count against the limit, with hysteresis from `previous`. Pure. */
export function evaluateConntrack(data: ConntrackData, config: ConntrackConfig, previous: ConntrackData | undefined): Observation[] {
  // nf_conntrack_max 0 means no limit.
  if (data.max <= 0) return [];
  const pct = (data.count / data.max) * 100;
  const severity = severityWithHysteresis(pct, config, config.clearBelow, previous?.firing);
  if (!severity) return [];
  // Double the table, or twice the count when it is already past the limit.
  const raised = Math.max(data.max, data.count) * 2;
  return [{
    check: 'conntrack.usage',
    severity,
    subject: 'nf_conntrack',
    message:
      `The conntrack table holds ${fmt(data.count)} connections, ${pct.toFixed(0)}% of net.netfilter.nf_conntrack_max (${fmt(data.max)}). ` +
      'When it is full the kernel drops the first packet of every new connection (Services and NAT stop working for them) and logs "nf_conntrack: table full, dropping packet" (kernel.conntrackFull).',
    evidence: { count: data.count, max: data.max, percent: Math.round(pct) },
    remedy: `conntrack -S; conntrack -L 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^dst=/) { print $1, $i; break }}' | sort | uniq -c | sort -rn | head  # where so many connections go; then, if memory allows: sysctl -w net.netfilter.nf_conntrack_max=${raised}`,
  }];
}

export const conntrack: Collector<ConntrackConfig, ConntrackData> = {
  name: 'conntrack',
  description: 'The connection tracking table: nf_conntrack_count against nf_conntrack_max',
  checks: ['conntrack.usage'],
  conditions: { 'conntrack.usage': 'NodewardenConntrackPressure' },
  defaultIntervalMs: 30_000,
  defaultTimeoutMs: 5_000,
  configSpec: conntrackConfigSpec,
  async collect(ctx) {
    const { host } = ctx;
    const [countText, maxText] = await Promise.all([
      host.readText(host.procPath('sys', 'net', 'netfilter', 'nf_conntrack_count')),
      host.readText(host.procPath('sys', 'net', 'netfilter', 'nf_conntrack_max')),
    ]);
    if (countText === undefined || maxText === undefined) return { kind: 'no-data', reason: 'no nf_conntrack on this host (the module is not loaded): nothing is tracked' };
    const count = parseCount(countText);
    const max = parseCount(maxText);
    if (count === undefined || max === undefined) return { kind: 'no-data', reason: `unreadable nf_conntrack_count or nf_conntrack_max: ${JSON.stringify(countText.trim())} / ${JSON.stringify(maxText.trim())}` };
    const data: ConntrackData = { count, max };
    const observations = evaluateConntrack(data, ctx.config, ctx.previous);
    const firing = observations[0]?.severity;
    if (firing) data.firing = firing;
    return { kind: 'ok', observations, data };
  },
};
