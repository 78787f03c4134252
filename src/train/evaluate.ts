// Evaluation of a split: eval transform, logits from the model, the loss the model trains with, and the metrics.
import type { ModelKey } from '../config/config.js';
import type { Sample } from '../data/dataset.js';
import { batches, evalOptions } from '../data/loader.js';
import type { PennyModel } from '../model/model.js';
import { argmaxRows, Tally } from './metrics.js';

/**
 * Mean loss of rows of logits against labels: cross-entropy (float64 log-sum-exp), or NLL when the logits are
 * log-probabilities already (a factorised head's).
 */
export function lossOf(logits: ArrayLike<number>, labels: ArrayLike<number>, classes: number, kind: PennyModel['graph']['loss'] = 'cross_entropy'): number {
  let sum = 0;
  for (let r = 0; r < labels.length; r++) {
    if (kind === 'nll') {
      sum -= logits[r * classes + labels[r]];
      continue;
    }
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c]);
    let z = 0;
    for (let c = 0; c < classes; c++) z += Math.exp(logits[r * classes + c] - max);
    sum += max + Math.log(z) - logits[r * classes + labels[r]];
  }
  return sum / labels.length;
}

export async function evaluate(model: PennyModel, samples: readonly Sample[], o: Parameters<typeof evalOptions>[0], task?: ModelKey): Promise<Tally> {
  const tally = new Tally(task);
  for await (const b of batches(samples, evalOptions(o))) {
    const logits = await model.predict(b.pixels, b.shape);
    tally.add(lossOf(logits, b.labels, model.numClasses, model.graph.loss), b.labels, argmaxRows(logits, b.labels.length, model.numClasses), b.angles);
  }
  return tally;
}
