// Growth from successive samples: a least-squares rate over a window, whether it is sustained (not one
// burst), and how long until a threshold at that rate. Pure: the disk collector keeps the samples in its
// data from one run to the next (statfs used bytes, and the du measurement's consumers) and hands them in.

/** [ms since the epoch, bytes] */
export type Sample = [number, number];

/** Pure: least-squares slope of the samples, in bytes per minute; undefined with fewer than two or no time span. */
export function ratePerMinute(samples: readonly Sample[]): number | undefined {
  if (samples.length < 2) return undefined;
  const n = samples.length;
  const mt = samples.reduce((a, [t]) => a + t, 0) / n;
  const mv = samples.reduce((a, [, v]) => a + v, 0) / n;
  let num = 0;
  let den = 0;
  for (const [t, v] of samples) {
    num += (t - mt) * (v - mv);
    den += (t - mt) ** 2;
  }
  if (den === 0) return undefined;
  return (num / den) * 60_000;
}

/** The samples kept: those of the last `windowMs` before `now`, oldest first, then this one (if any). */
export function keepSamples(previous: readonly Sample[] | undefined, now: number, value: number | undefined, windowMs: number): Sample[] {
  const kept = (previous ?? []).filter(([t]) => now - t <= windowMs && t < now);
  if (value !== undefined) kept.push([now, value]);
  return kept;
}

export interface GrowthSettings {
  /** No rate before the samples span this long (one noisy pair is no rate). */
  minSpanMs: number;
  /** Below this many bytes a minute the filesystem is flat: no rate is claimed. */
  minRatePerMinute: number;
}

export interface Growth {
  /** Bytes per minute, smoothed over the samples (least squares). Always > 0: shrinking or flat is no Growth. */
  ratePerMinute: number;
  samples: number;
  spanMs: number;
  /**
   * Growth in both halves of the span, each at least a third of the overall rate: a steady writer, not one
   * burst (a burst puts all of the growth in one half). Needs 5 samples or more.
   */
  sustained: boolean;
}

/** Pure: the growth the samples show, or undefined (too few, too short, flat or shrinking). */
export function growthOf(samples: readonly Sample[], settings: GrowthSettings): Growth | undefined {
  if (samples.length < 2) return undefined;
  const spanMs = samples[samples.length - 1]![0] - samples[0]![0];
  if (spanMs < settings.minSpanMs) return undefined;
  const rate = ratePerMinute(samples);
  if (rate === undefined || rate < settings.minRatePerMinute) return undefined;
  let sustained = false;
  if (samples.length >= 5) {
    const mid = samples[0]![0] + spanMs / 2;
    const older = samples.filter(([t]) => t <= mid);
    const newer = samples.filter(([t]) => t >= mid);
    const a = ratePerMinute(older);
    const b = ratePerMinute(newer);
    sustained = a !== undefined && b !== undefined && a >= rate / 3 && b >= rate / 3;
  }
  return { ratePerMinute: rate, samples: samples.length, spanMs, sustained };
}

/**
 * Pure: minutes until `available` bytes fall to `floor` bytes at `ratePerMinute`; undefined when not
 * growing, already at or below the floor, or further away than `horizonMs` (a forecast of days is noise).
 */
export function minutesUntil(available: number, floor: number, ratePerMinute: number, horizonMs: number): number | undefined {
  if (!(ratePerMinute > 0) || available <= floor) return undefined;
  const minutes = (available - floor) / ratePerMinute;
  return minutes * 60_000 <= horizonMs ? minutes : undefined;
}

/** "under a minute", "about 25 min", "about 3.5 h" */
export function formatMinutes(m: number): string {
  return m < 1 ? 'under a minute' : m < 90 ? `about ${Math.round(m)} min` : `about ${(m / 60).toFixed(1)} h`;
}

/** "80 MiB/min", "1.5 MiB/min", "1.2 GiB/min" */
export function formatRate(bytesPerMinute: number): string {
  const mib = bytesPerMinute / 1048576;
  if (mib >= 1024) return `${(mib / 1024).toFixed(1)} GiB/min`;
  return `${mib < 10 ? mib.toFixed(1) : Math.round(mib).toLocaleString('en-US')} MiB/min`;
}
