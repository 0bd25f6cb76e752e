// Findings as the agent makes them, for protocol and aggregator tests.
import { findingId, type Finding, type Severity } from '../../protocol/finding.js';

export function finding(node: string, check: string, subject: string, severity: Severity = 'warning', over: Partial<Finding> = {}): Finding {
  const now = new Date().toISOString();
  return {
    id: findingId(node, check, subject),
    node,
    check,
    severity,
    subject,
    message: `${check} on ${subject}`,
    evidence: { n: 1 },
    remedy: 'do something',
    state: 'firing',
    firstSeen: now,
    lastSeen: now,
    ...over,
  };
}
