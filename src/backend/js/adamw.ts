// AdamW exactly as torch::optim::AdamW steps (LibTorch's torch/csrc/api/src/optim/adamw.cpp), with the native
// backend's two parameter groups: weight decay for parameters marked `decay`, none for the rest.
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// A parameter without a gradient (not reached by the loss) is skipped, state and all, as torch skips it.
import type { AdamState, DType, Floats, OptimizerOptions } from '../types.js';
import { alloc } from './tensor.js';

export class AdamW {
  private state: (AdamState | undefined)[];

  constructor(readonly options: OptimizerOptions, private readonly decay: readonly boolean[], private readonly dtype: DType) {
    this.state = decay.map(() => undefined);
  }

  step(params: Floats[], grads: readonly (Floats | null)[], lr: number): void {
    const { beta1: b1, beta2: b2, eps, weightDecay } = this.options;
    for (let i = 0; i < params.length; i++) {
      const g = grads[i];
      if (!g) continue;
      const p = params[i], n = p.length;
      const wd = this.decay[i] ? weightDecay : 0;
      if (wd !== 0) {
        const f = 1 - lr * wd;
        for (let j = 0; j < n; j++) p[j] *= f;
      }
      const s = (this.state[i] ??= { step: 0, expAvg: alloc(this.dtype, n), expAvgSq: alloc(this.dtype, n) });
      s.step += 1;
      const bc1 = 1 - b1 ** s.step, bc2 = 1 - b2 ** s.step;
      const stepSize = lr / bc1, sqrtBc2 = Math.sqrt(bc2);
      const m = s.expAvg, v = s.expAvgSq;
      for (let j = 0; j < n; j++) {
        const gj = g[j];
        m[j] = m[j] * b1 + (1 - b1) * gj;
        v[j] = v[j] * b2 + (1 - b2) * gj * gj;
        // read back the stored moments, as torch does with its float tensors
        p[j] -= stepSize * (m[j] / (Math.sqrt(v[j]) / sqrtBc2 + eps));
      }
    }
  }

  /** The state of every parameter that has taken a step (live arrays; callers copy). */
  entries(): [number, AdamState][] {
    const out: [number, AdamState][] = [];
    this.state.forEach((s, i) => s && out.push([i, s]));
    return out;
  }

  /** Replaces all state: parameters absent from `entries` start afresh. */
  load(entries: [number, AdamState][]): void {
    this.state = this.decay.map(() => undefined);
    for (const [i, s] of entries) this.state[i] = s;
  }
}
