// Findings for people: names over ids, and the findings one event caused as one entry with a count.
// `check` renders its Findings block with it; `tail` and `up` can use displaySubject for their rows.
import { displaySubject, groupFindings, type Observation } from '../protocol/finding.js';
import type { Painter } from './format.js';
import { escapeForTerminal as esc } from '../protocol/terminal.js';

/** The Findings block: one entry per group, with its count, the worst message and the next command. */
export function renderFindings(findings: readonly Observation[], p: Painter): string {
  if (findings.length === 0) return `${p.bold('Findings')}: none`;
  const entries = groupFindings(findings).map((g) => {
    const [first, ...rest] = g.findings;
    const count = rest.length > 0 ? ` ${p.bold(`×${g.findings.length}`)}` : '';
    const also = rest.length > 0 ? `\n  ${p.dim(`also: ${rest.slice(0, 5).map((f) => esc(displaySubject(f))).join(', ')}${rest.length > 5 ? ` and ${rest.length - 5} more` : ''}`)}` : '';
    return `${p.severity(g.severity, g.severity.toUpperCase().padEnd(8))} ${p.bold(esc(g.check))}  ${esc(g.subject)}${count}\n  ${esc(first!.message)}${also}\n  ${p.dim(`next: ${esc(first!.remedy)}`)}`;
  });
  return `${p.bold('Findings')} (${findings.length})\n${entries.join('\n')}`;
}
