// The finding contract: what every collector produces, the agent tracks and the aggregator stores.
import { createHash } from 'node:crypto';

export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const FINDING_STATES = ['firing', 'resolved'] as const;
export type FindingState = (typeof FINDING_STATES)[number];

/** The container or pod a finding is about, when it is about one. */
export interface Workload {
  containerId?: string;
  containerName?: string;
  pod?: string;
  namespace?: string;
  podUid?: string;
}

export type EvidenceValue = string | number | boolean | null | EvidenceValue[] | { [key: string]: EvidenceValue };
export type Evidence = Record<string, EvidenceValue>;

/** What a collector says about one problem in one cycle, before the tracker gives it identity and time. */
export interface Observation {
  /** Dotted check name, for example `disk.usage`. */
  check: string;
  severity: Severity;
  /** What the finding is about: a mount point, a pid, a container id. Part of the id. */
  subject: string;
  /** One plain sentence with the numbers. */
  message: string;
  evidence: Evidence;
  /** The command a person runs next. */
  remedy: string;
  workload?: Workload;
}

export interface Finding extends Observation {
  id: string;
  node: string;
  state: FindingState;
  /** ISO 8601 timestamps. */
  firstSeen: string;
  lastSeen: string;
}

/** A stable id: the same node, check and subject give the same id across cycles, restarts and reconnects. */
export function findingId(node: string, check: string, subject: string): string {
  return createHash('sha256').update(`${node}\0${check}\0${subject}`).digest('hex').slice(0, 20);
}

const SEVERITY_RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };

export function severityRank(severity: Severity): number {
  return SEVERITY_RANK[severity];
}

/** Most severe first, then by check and subject, so output is stable. */
export function compareFindings(a: Observation, b: Observation): number {
  return (
    severityRank(b.severity) - severityRank(a.severity) ||
    a.check.localeCompare(b.check) ||
    a.subject.localeCompare(b.subject)
  );
}

export function worstSeverity(items: readonly { severity: Severity }[]): Severity | undefined {
  let worst: Severity | undefined;
  for (const item of items) {
    if (worst === undefined || severityRank(item.severity) > severityRank(worst)) worst = item.severity;
  }
  return worst;
}
