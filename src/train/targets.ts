// Soft labels for the ordered tasks (label_smoothing_bins: sigma). A neighbouring orientation bin or year is a small
// error, not a wrong class: the target is a Gaussian of width sigma classes around the truth, normalised; wrapped
// around the circle for orientation, centred on the coin's exact angle (so a coin at the edge of a bin gives weight
// to the bin next to it); over the year line for date.
import type { ModelKey } from '../config/config.js';
import { ORIENTATION_BIN_DEG } from '../data/labels.js';

export function softTargets(task: ModelKey, labels: Int32Array, angles: ArrayLike<number>, classes: number, sigma: number): Float32Array {
  const out = new Float32Array(labels.length * classes);
  const circular = task === 'orientation';
  for (let b = 0; b < labels.length; b++) {
    const centre = circular && Number.isFinite(angles[b]) ? angles[b] / ORIENTATION_BIN_DEG - 0.5 : labels[b];
    const row = out.subarray(b * classes, (b + 1) * classes);
    let sum = 0;
    for (let j = 0; j < classes; j++) {
      let d = Math.abs(j - centre);
      if (circular) d = Math.min(d, classes - d);
      row[j] = Math.exp(-(d * d) / (2 * sigma * sigma));
      sum += row[j];
    }
    for (let j = 0; j < classes; j++) row[j] /= sum;
  }
  return out;
}
