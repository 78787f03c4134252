// Classification metrics from logits: loss is the backend's; accuracy and macro-F1 (as sklearn's f1_score with
// average='macro': over the classes that occur in the labels or the predictions).

export function argmaxRows(logits: ArrayLike<number>, rows: number, classes: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c] > logits[r * classes + best]) best = c;
    out[r] = best;
  }
  return out;
}

export class Tally {
  private lossSum = 0;
  private n = 0;
  private readonly truth: number[] = [];
  private readonly pred: number[] = [];

  /** `loss` is the batch mean */
  add(loss: number, labels: ArrayLike<number>, predictions: ArrayLike<number>): void {
    this.lossSum += loss * labels.length;
    this.n += labels.length;
    for (let i = 0; i < labels.length; i++) {
      this.truth.push(labels[i]);
      this.pred.push(predictions[i]);
    }
  }

  get count(): number {
    return this.n;
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

  /** for a checkpoint taken in the middle of an epoch */
  toJSON() {
    return { loss_sum: this.lossSum, n: this.n, truth: this.truth, pred: this.pred };
  }

  static from(j: { loss_sum: number; n: number; truth: number[]; pred: number[] }): Tally {
    const t = new Tally();
    t.lossSum = j.loss_sum;
    t.n = j.n;
    t.truth.push(...j.truth);
    t.pred.push(...j.pred);
    return t;
  }
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
