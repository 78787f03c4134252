// Labels of the four models, as the original trainer derives them from metadata.
import type { ModelKey } from '../config/config.js';

export const SIDES = ['obverse', 'memorial', 'shield', 'wheat', 'bicentennial'] as const;
export const REVERSE_TYPES = ['memorial', 'shield', 'wheat', 'bicentennial'] as const;
export const MINT_MARKS = ['D', 'S', 'P', 'nomint'] as const;
export const FIRST_YEAR = 1909;
export const LAST_YEAR = 2024;

/** index -> name, for each model */
export function labelNames(model: ModelKey): string[] {
  switch (model) {
    case 'side':
      return [...SIDES];
    case 'orientation':
      return Array.from({ length: 120 }, (_, i) => `${i * 3}-${i * 3 + 2}`);
    case 'date':
      return Array.from({ length: LAST_YEAR - FIRST_YEAR + 1 }, (_, i) => String(FIRST_YEAR + i));
    case 'mint':
      return [...MINT_MARKS];
  }
}

/** The label map as the output files carry it: {"0": "obverse", ...} */
export function labelMap(model: ModelKey): Record<string, string> {
  return Object.fromEntries(labelNames(model).map((n, i) => [String(i), n]));
}

export interface Entry {
  uid: string;
  side: 'obverse' | 'reverse';
  type?: (typeof REVERSE_TYPES)[number];
  angle?: number;
  year?: number;
  mint_mark?: (typeof MINT_MARKS)[number];
}

export const ORIENTATION_BIN_DEG = 3;

/** The orientation bin of an angle in degrees (any real; wrapped into [0, 360)). */
export function orientationBin(angle: number): number {
  const a = ((angle % 360) + 360) % 360;
  return Math.min(119, Math.floor(a / ORIENTATION_BIN_DEG));
}

/** The centre of an orientation bin, in degrees: the angle a predicted bin stands for. */
export function orientationBinCentre(bin: number): number {
  return (bin + 0.5) * ORIENTATION_BIN_DEG;
}

/** The label of `e` for `model`, or null when the sample does not belong to that model (e.g. reverse for date). */
export function labelOf(model: ModelKey, e: Entry): number | null {
  switch (model) {
    case 'side':
      return e.side === 'obverse' ? 0 : SIDES.indexOf(e.type!);
    case 'orientation':
      return e.side === 'obverse' && e.angle !== undefined ? orientationBin(e.angle) : null;
    case 'date':
      return e.side === 'obverse' && e.year !== undefined ? e.year - FIRST_YEAR : null;
    case 'mint':
      return e.side === 'obverse' && e.mint_mark !== undefined ? MINT_MARKS.indexOf(e.mint_mark) : null;
  }
}
