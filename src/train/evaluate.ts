// Evaluation of a split: eval transform, logits from the model, loss/accuracy/macro-F1.
import type { Sample } from '../data/dataset.js';
import { batches, evalOptions } from '../data/loader.js';
import type { PennyModel } from '../model/model.js';
import { argmaxRows, Tally } from './metrics.js';

/** Mean cross-entropy of rows of logits against labels (float64 log-sum-exp). */
export function crossEntropy(logits: ArrayLike<number>, labels: ArrayLike<number>, classes: number): number {
  let sum = 0;
  for (let r = 0; r < labels.length; r++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c]);
    let z = 0;
    for (let c = 0; c < classes; c++) z += Math.exp(logits[r * classes + c] - max);
    sum += max + Math.log(z) - logits[r * classes + labels[r]];
  }
  return sum / labels.length;
}

export async function evaluate(model: PennyModel, samples: readonly Sample[], o: Parameters<typeof evalOptions>[0]): Promise<Tally> {
  const tally = new Tally();
  for await (const b of batches(samples, evalOptions(o))) {
    const logits = await model.predict(b.pixels, b.shape);
    tally.add(crossEntropy(logits, b.labels, model.numClasses), b.labels, argmaxRows(logits, b.labels.length, model.numClasses));
  }
  return tally;
}
