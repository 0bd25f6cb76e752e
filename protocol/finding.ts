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

const LONG_HEX = /\b[0-9a-f]{64}\b/g;

/** How people name a workload: `namespace/pod/container`, else the container's name, else its short id. */
export function workloadName(w: Workload): string | undefined {
  if (w.pod) return [w.namespace, w.pod, w.containerName].filter(Boolean).join('/');
  if (w.containerName) return w.containerName;
  return w.containerId?.slice(0, 12);
}

/**
 * The subject as people know it, for human output: a container id becomes the container and pod's
 * names, other 64-hex ids (layers, snapshots) shorten to 12 like docker's. The full ids stay in the
 * finding's subject, evidence and workload, for --json and for the id.
 */
export function displaySubject(f: Pick<Observation, 'subject' | 'workload'>): string {
  const id = f.workload?.containerId;
  const name = f.workload ? workloadName(f.workload) : undefined;
  if (id && name && f.subject === id) return name;
  const shown = (id && name ? f.subject.split(id).join(name) : f.subject).replace(LONG_HEX, (hex) => hex.slice(0, 12));
  // A path or pid about a workload says whose it is.
  return name && !shown.includes(name) ? `${shown} (${name})` : shown;
}

/** Findings one event caused: the same check about the same container (or pod), shown as one row with a count. */
export interface FindingGroup<F extends Observation = Observation> {
  check: string;
  severity: Severity;
  /** What the group is about, for people: the workload's name, or the one finding's display subject. */
  subject: string;
  findings: F[];
}

/**
 * Groups findings for human output: those with the same check and workload (a container's immutable
 * files, a pod's held mounts) become one group, worst severity first; findings without a workload
 * stay alone. Order follows compareFindings.
 */
export function groupFindings<F extends Observation>(findings: readonly F[]): FindingGroup<F>[] {
  const groups = new Map<string, FindingGroup<F>>();
  for (const f of [...findings].sort(compareFindings)) {
    const who = f.workload?.containerId ?? f.workload?.podUid;
    const key = who ? `${f.check}\0${who}` : `${f.check}\0\0${f.subject}`;
    const g = groups.get(key);
    if (!g) groups.set(key, { check: f.check, severity: f.severity, subject: displaySubject(f), findings: [f] });
    else {
      g.findings.push(f);
      if (severityRank(f.severity) > severityRank(g.severity)) g.severity = f.severity;
      g.subject = (f.workload && workloadName(f.workload)) ?? g.subject;
    }
  }
  return [...groups.values()].sort((a, b) => severityRank(b.severity) - severityRank(a.severity) || a.check.localeCompare(b.check) || a.subject.localeCompare(b.subject));
}
