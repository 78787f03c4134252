// Cross-entropy with mean reduction over the batch (torch.nn.functional.cross_entropy), and its gradient.
import type { Floats } from '../types.js';
import { softmaxRows } from './ops/softmax.js';
import { zerosLike } from './tensor.js';

/** loss = mean_b(logsumexp(z_b) - z_b[y_b]); dlogits = (softmax(z) - onehot(y)) / batch */
export function crossEntropy(logits: Floats, batch: number, labels: Int32Array): { loss: number; dlogits: Floats } {
  const classes = logits.length / batch;
  if (!Number.isInteger(classes) || labels.length !== batch) {
    throw new RangeError(`cross-entropy: ${logits.length} logits and ${labels.length} labels for a batch of ${batch}`);
  }
  let loss = 0;
  for (let b = 0; b < batch; b++) {
    const y = labels[b], o = b * classes;
    if (!(y >= 0 && y < classes)) throw new RangeError(`labels: ${y} is not a class of this ${classes}-class model`);
    let max = -Infinity;
    for (let j = 0; j < classes; j++) if (logits[o + j] > max) max = logits[o + j];
    let s = 0;
    for (let j = 0; j < classes; j++) s += Math.exp(logits[o + j] - max);
    loss += max + Math.log(s) - logits[o + y];
  }
  const dlogits = zerosLike(logits);
  dlogits.set(logits);
  softmaxRows(dlogits, 0, batch, classes);
  for (let b = 0; b < batch; b++) dlogits[b * classes + labels[b]] -= 1;
  for (let i = 0; i < dlogits.length; i++) dlogits[i] /= batch;
  return { loss: loss / batch, dlogits };
}
