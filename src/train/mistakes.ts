// The validation images a model gets most wrong — lowest probability on the true class — kept with the pixels the
// model read, for the run report's contact sheet. Only the current worst `limit` are held, whatever the split's size.
import type { Batch } from '../data/loader.js';
import { argmaxRow } from './metrics.js';

export interface Mistake {
  uid: string;
  truth: number;
  pred: number;
  /** softmax probability of the true class, and of the predicted one */
  pTruth: number;
  pPred: number;
  /** the model input, [3, H, W] normalised as the model read it */
  pixels: Float32Array;
}

export class WorstMistakes {
  private kept: Mistake[] = [];

  constructor(readonly limit: number, private readonly classes: number) {}

  /** Takes one evaluated batch: its logits [rows, classes] and the batch they came from. */
  add(logits: ArrayLike<number>, b: Batch): void {
    const n = b.labels.length;
    const size = b.pixels.length / n;
    for (let r = 0; r < n; r++) {
      const o = r * this.classes;
      const pred = argmaxRow(logits, o, this.classes);
      const truth = b.labels[r];
      if (pred === truth) continue;
      let sum = 0;
      for (let j = 0; j < this.classes; j++) sum += Math.exp(logits[o + j] - logits[o + pred]);
      const pTruth = Math.exp(logits[o + truth] - logits[o + pred]) / sum;
      if (this.kept.length === this.limit && pTruth >= this.kept[this.kept.length - 1].pTruth) continue;
      this.kept.push({ uid: b.uids[r], truth, pred, pTruth, pPred: 1 / sum, pixels: b.pixels.slice(r * size, (r + 1) * size) });
      this.kept.sort((x, y) => x.pTruth - y.pTruth);
      if (this.kept.length > this.limit) this.kept.pop();
    }
  }

  /** worst first */
  get list(): readonly Mistake[] {
    return this.kept;
  }
}
