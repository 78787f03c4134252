// Classification metrics from logits: loss is the backend's; accuracy and macro-F1 (as sklearn's f1_score with
// average='macro': over the classes that occur in the labels or the predictions); and the figures the ordered
// tasks are read by: orientation's circular angle error and accuracy within one bin, date's within one year.
import type { ModelKey } from '../config/config.js';
import { ORIENTATION_BIN_DEG, orientationBinCentre } from '../data/labels.js';

export interface Metrics {
  loss: number;
  acc: number;
  f1Macro: number;
  /** orientation: circular mean absolute error in degrees, predicted bin centre against the true angle */
  angleMae?: number;
  /** orientation: within +-1 bin (wrapping); date: within +-1 year */
  accWithin1?: number;
}

/** The index of the largest of x[offset .. offset + n) (the first, on ties). */
export function argmaxRow(x: ArrayLike<number>, offset: number, n: number): number {
  let best = 0;
  for (let j = 1; j < n; j++) if (x[offset + j] > x[offset + best]) best = j;
  return best;
}

/** argmaxRow of each row of [rows, classes] logits. */
export function argmaxRows(logits: ArrayLike<number>, rows: number, classes: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) out[r] = argmaxRow(logits, r * classes, classes);
  return out;
}

/** The smaller angle between two directions, degrees in [0, 180]. */
export function angleBetween(a: number, b: number): number {
  return Math.abs((((a - b) % 360) + 540) % 360 - 180);
}

export class Tally {
  private lossSum = 0;
  private n = 0;
  private readonly truth: number[] = [];
  private readonly pred: number[] = [];
  /** the true angles (orientation), null where unknown */
  private readonly angles: (number | null)[] = [];

  constructor(readonly task?: ModelKey) {}

  /** `loss` is the batch mean; `angles` the images' true angles (orientation), NaN where unknown */
  add(loss: number, labels: ArrayLike<number>, predictions: ArrayLike<number>, angles?: ArrayLike<number>): void {
    this.lossSum += loss * labels.length;
    this.n += labels.length;
    for (let i = 0; i < labels.length; i++) {
      this.truth.push(labels[i]);
      this.pred.push(predictions[i]);
      this.angles.push(angles && Number.isFinite(angles[i]) ? angles[i] : null);
    }
  }

  get count(): number {
    return this.n;
  }

  /** [loss sum, images, right]: what ranks add up for the train loss and accuracy of a distributed epoch */
  sums(): Float64Array {
    return Float64Array.of(this.lossSum, this.n, this.truth.filter((t, i) => t === this.pred[i]).length);
  }

  get loss(): number {
    return this.n ? this.lossSum / this.n : NaN;
  }

  get acc(): number {
    return this.n ? this.truth.filter((t, i) => t === this.pred[i]).length / this.n : NaN;
  }

  get f1Macro(): number {
    return macroF1(this.truth, this.pred);
  }

  /** orientation: mean circular distance from the predicted bin's centre to the true angle (or its bin's centre) */
  get angleMae(): number {
    if (!this.n) return NaN;
    let sum = 0;
    for (let i = 0; i < this.n; i++) sum += angleBetween(orientationBinCentre(this.pred[i]), this.angles[i] ?? orientationBinCentre(this.truth[i]));
    return sum / this.n;
  }

  /** predictions within one class of the truth: orientation's bins wrap around, date's years do not */
  get accWithin1(): number {
    if (!this.n) return NaN;
    const bins = 360 / ORIENTATION_BIN_DEG;
    let ok = 0;
    for (let i = 0; i < this.n; i++) {
      const d = Math.abs(this.pred[i] - this.truth[i]);
      if ((this.task === 'orientation' ? Math.min(d, bins - d) : d) <= 1) ok++;
    }
    return ok / this.n;
  }

  /** counts[true][predicted] over `classes` classes */
  confusion(classes: number): number[][] {
    const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
    for (let i = 0; i < this.n; i++) m[this.truth[i]][this.pred[i]]++;
    return m;
  }

  /** the true angle minus the predicted bin's centre of each image, degrees in (-180, 180] (orientation) */
  angleErrors(): number[] {
    return this.truth.map((t, i) => {
      const d = ((this.angles[i] ?? orientationBinCentre(t)) - orientationBinCentre(this.pred[i])) % 360;
      return d > 180 ? d - 360 : d <= -180 ? d + 360 : d;
    });
  }

  /** the classes the predictions use, ascending */
  predictedClasses(): number[] {
    return [...new Set(this.pred)].sort((a, b) => a - b);
  }

  /** loss, acc, macro-F1, and the task's own figures */
  metrics(): Metrics {
    const m: Metrics = { loss: this.loss, acc: this.acc, f1Macro: this.f1Macro };
    if (this.task === 'orientation') m.angleMae = this.angleMae;
    if (this.task === 'orientation' || this.task === 'date') m.accWithin1 = this.accWithin1;
    return m;
  }

  /** for a checkpoint taken in the middle of an epoch */
  toJSON() {
    return { loss_sum: this.lossSum, n: this.n, truth: this.truth, pred: this.pred, angles: this.angles };
  }

  static from(j: { loss_sum: number; n: number; truth: number[]; pred: number[]; angles?: (number | null)[] }, task?: ModelKey): Tally {
    const t = new Tally(task);
    t.lossSum = j.loss_sum;
    t.n = j.n;
    t.truth.push(...j.truth);
    t.pred.push(...j.pred);
    t.angles.push(...(j.angles ?? j.truth.map(() => null)));
    return t;
  }
}

/** The metrics line of the console and log: `Loss: 1.2345, Acc: 0.9000, F1 (Macro): 0.8800[, Angle MAE: 1.23 deg, Acc +-1: 0.99]` */
export function metricsText(m: Metrics, prefix = ''): string {
  return [`${prefix}Loss: ${m.loss.toFixed(4)}`, `${prefix}Acc: ${m.acc.toFixed(4)}`, `${prefix}F1 (Macro): ${m.f1Macro.toFixed(4)}`,
    ...taskMetricsText(m, prefix)].join(', ');
}

/** The task's own figures as metricsText writes them (none for side and mint). */
export function taskMetricsText(m: Metrics, prefix = ''): string[] {
  const parts: string[] = [];
  if (m.angleMae !== undefined) parts.push(`${prefix}Angle MAE: ${m.angleMae.toFixed(2)} deg`);
  if (m.accWithin1 !== undefined) parts.push(`${prefix}Acc +-1: ${m.accWithin1.toFixed(4)}`);
  return parts;
}

export function macroF1(truth: readonly number[], pred: readonly number[]): number {
  const classes = [...new Set([...truth, ...pred])];
  if (!classes.length) return NaN;
  let sum = 0;
  for (const c of classes) {
    let tp = 0, fp = 0, fn = 0;
    for (let i = 0; i < truth.length; i++) {
      if (pred[i] === c && truth[i] === c) tp++;
      else if (pred[i] === c) fp++;
      else if (truth[i] === c) fn++;
    }
    sum += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return sum / classes.length;
}

export interface ClassFigures {
  precision: number;
  recall: number;
  f1: number;
  /** images of this class */
  support: number;
}

/** Precision, recall, F1 and support of each class from a confusion matrix (counts[true][predicted]); 0 where undefined. */
export function perClass(confusion: number[][]): ClassFigures[] {
  return confusion.map((row, c) => {
    const tp = row[c];
    const support = row.reduce((a, b) => a + b, 0);
    const predicted = confusion.reduce((a, r) => a + r[c], 0);
    const precision = predicted ? tp / predicted : 0;
    const recall = support ? tp / support : 0;
    return { precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0, support };
  });
}
