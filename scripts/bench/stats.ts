// Timing helper: every benchmark figure is the median of several timed runs, reported with its spread, so one
// noisy run (a page fault, another process) neither makes nor hides a difference.
import { performance } from 'node:perf_hooks';

export interface Stats {
  /** milliseconds per call */
  median: number;
  min: number;
  max: number;
  /** (max - min) / median: how far apart the runs were, relative */
  spread: number;
  runs: number;
  warmup: number;
  samples: number[];
}

export interface MeasureOptions {
  runs: number;
  /** untimed calls first: lazy allocation, the allocator's caches and the optimizer's state settle in them */
  warmup: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function summarize(samples: number[], warmup = 0): Stats {
  if (samples.length === 0) throw new RangeError('summarize: no samples');
  const med = median(samples);
  const min = Math.min(...samples);
  const max = Math.max(...samples);
  return { median: med, min, max, spread: med > 0 ? (max - min) / med : 0, runs: samples.length, warmup, samples };
}

/** Calls `fn` `warmup` times untimed, then `runs` times timed (one call at a time); times in milliseconds. */
export async function measure(fn: () => unknown, { runs, warmup }: MeasureOptions): Promise<Stats> {
  if (!Number.isInteger(runs) || runs < 1) throw new RangeError(`runs must be a positive integer, got ${runs}`);
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return summarize(samples, warmup);
}
