// The training loss with mean reduction over the batch, and its gradient. Cross-entropy (torch's cross_entropy) for
// scores; NLL (torch's nll_loss) when the logits are log-probabilities already (a factorised head). Soft `targets`
// [batch, classes] replace the labels' one-hot rows: loss = -mean_b sum_j t_bj logp_bj.
import type { LossKind } from '../../model/graph.js';
import type { Floats } from '../types.js';
import { softmaxRows } from './ops/softmax.js';
import { zerosLike } from './tensor.js';

/**
 * Per-row log-probabilities in float64: logits - logsumexp for cross-entropy, the logits themselves for NLL (they are
 * log-probabilities already).
 */
export function logProbs(logits: ArrayLike<number>, batch: number, kind: LossKind): Float64Array {
  const classes = logits.length / batch;
  const logp = Float64Array.from(logits);
  if (kind === 'nll') return logp;
  for (let b = 0, o = 0; b < batch; b++, o += classes) {
    let max = -Infinity;
    for (let j = 0; j < classes; j++) if (logits[o + j] > max) max = logits[o + j];
    let s = 0;
    for (let j = 0; j < classes; j++) s += Math.exp(logits[o + j] - max);
    const lse = max + Math.log(s);
    for (let j = 0; j < classes; j++) logp[o + j] = logits[o + j] - lse;
  }
  return logp;
}

/** The mean loss against hard labels, without a gradient: what evaluation reports. */
export function meanLoss(logits: ArrayLike<number>, labels: ArrayLike<number>, kind: LossKind): number {
  const classes = logits.length / labels.length;
  const logp = logProbs(logits, labels.length, kind);
  let sum = 0;
  for (let b = 0; b < labels.length; b++) sum -= logp[b * classes + labels[b]];
  return sum / labels.length;
}

export function lossAndGrad(logits: Floats, batch: number, labels: Int32Array, kind: LossKind, targets?: Float32Array): { loss: number; dlogits: Floats } {
  const classes = logits.length / batch;
  if (!Number.isInteger(classes) || labels.length !== batch) {
    throw new RangeError(`loss: ${logits.length} logits and ${labels.length} labels for a batch of ${batch}`);
  }
  if (targets && targets.length !== logits.length) throw new RangeError(`loss: ${targets.length} targets for ${batch} x ${classes} logits`);
  for (const y of labels) if (!(y >= 0 && y < classes)) throw new RangeError(`labels: ${y} is not a class of this ${classes}-class model`);
  const target = (b: number, j: number) => (targets ? targets[b * classes + j] : j === labels[b] ? 1 : 0);
  const logp = logProbs(logits, batch, kind);
  let loss = 0;
  const dlogits = zerosLike(logits);
  if (kind === 'cross_entropy') {   // d/dz of -sum t logsoftmax(z) = softmax(z) * sum(t) - t
    dlogits.set(logits);
    softmaxRows(dlogits, 0, batch, classes);
  }
  for (let b = 0, o = 0; b < batch; b++, o += classes) {
    let mass = 0;
    for (let j = 0; j < classes; j++) mass += target(b, j);
    for (let j = 0; j < classes; j++) {
      const t = target(b, j);
      if (t !== 0) loss -= t * logp[o + j];
      dlogits[o + j] = (kind === 'cross_entropy' ? dlogits[o + j] * mass - t : -t) / batch;
    }
  }
  return { loss: loss / batch, dlogits };
}
