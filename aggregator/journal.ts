// The transition journal: one JSON line per transition, appended as they happen, read back at start
// so history and the last known active sets survive a restart. Compacted to the newest `limit` lines.
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { TimedTransition } from './fleet.js';
import { findingSpec } from '../protocol/wire.js';
import type { Problem } from '../protocol/schema.js';

export class Journal {
  private lines = 0;

  constructor(
    private readonly file: string,
    private readonly limit: number,
  ) {}

  /** Reads what is there; lines that do not parse (a torn last write) are skipped and counted. */
  load(): { transitions: TimedTransition[]; skipped: number } {
    if (!existsSync(this.file)) return { transitions: [], skipped: 0 };
    const out: TimedTransition[] = [];
    let skipped = 0;
    for (const line of readFileSync(this.file, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        const t = JSON.parse(line) as TimedTransition;
        const problems: Problem[] = [];
        findingSpec.check(t.finding, 'finding', problems);
        if (problems.length > 0 || !['firing', 'updated', 'resolved'].includes(t.type) || typeof t.at !== 'string') throw new Error('invalid');
        out.push(t);
      } catch {
        skipped++;
      }
    }
    const kept = out.slice(-this.limit);
    this.lines = out.length;
    if (out.length > this.limit) this.compact(kept);
    return { transitions: kept, skipped };
  }

  append(t: TimedTransition): void {
    appendFileSync(this.file, `${JSON.stringify(t)}\n`);
    this.lines++;
    if (this.lines > this.limit * 2) {
      const all = this.load().transitions;
      this.compact(all.slice(-this.limit));
    }
  }

  private compact(keep: readonly TimedTransition[]): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, keep.map((t) => `${JSON.stringify(t)}\n`).join(''));
    renameSync(tmp, this.file);
    this.lines = keep.length;
  }
}
