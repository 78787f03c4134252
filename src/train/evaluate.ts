// Evaluation of a split: eval transform, logits from the model, the loss the model trains with, and the metrics.
import { meanLoss } from '../backend/js/loss.js';
import type { ModelKey } from '../config/config.js';
import type { Sample } from '../data/dataset.js';
import { batches, evalOptions } from '../data/loader.js';
import type { PennyModel } from '../model/model.js';
import { argmaxRows, Tally } from './metrics.js';
import type { WorstMistakes } from './mistakes.js';

/** `mistakes`, when given, collects the worst misclassified images of the split. */
export async function evaluate(model: PennyModel, samples: readonly Sample[], o: Parameters<typeof evalOptions>[0], task?: ModelKey,
  mistakes?: WorstMistakes): Promise<Tally> {
  const tally = new Tally(task);
  for await (const b of batches(samples, evalOptions(o))) {
    const logits = await model.predict(b.pixels, b.shape);
    mistakes?.add(logits, b);
    tally.add(meanLoss(logits, b.labels, model.graph.loss), b.labels, argmaxRows(logits, b.labels.length, model.numClasses), b.angles);
  }
  return tally;
}
