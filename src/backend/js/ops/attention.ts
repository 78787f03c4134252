// Multi-head scaled dot-product attention on [B, T, C] q, k, v (heads split along C, as HF CLIPAttention):
// per (batch, head) GEMMs over strided views of q, k, v, with the probabilities kept for the backward.
import type { Floats } from '../../types.js';
import { gemm, mat } from '../matmul.js';
import { shapeStr, zerosLike, type Tensor } from '../tensor.js';
import { required, type Kernel } from './kernel.js';
import { softmaxBackwardRows, softmaxRows } from './softmax.js';

interface AttentionSaved {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  heads: number;
  /** softmax(q k^T * scale) for every (batch, head): [B, heads, T, T] */
  p: Floats;
}

export const attention: Kernel<'attention', AttentionSaved> = {
  forward(inputs, { heads }) {
    const q = required(inputs[0], 'attention', 'q');
    const k = required(inputs[1], 'attention', 'k');
    const v = required(inputs[2], 'attention', 'v');
    const same = (t: Tensor) => t.shape.length === 3 && t.shape.every((d, i) => d === q.shape[i]);
    if (!same(q) || !same(k) || !same(v)) {
      throw new RangeError(`attention: q, k, v must be equal [B, T, C], got ${shapeStr(q.shape)}, ${shapeStr(k.shape)}, ${shapeStr(v.shape)}`);
    }
    const [B, T, C] = q.shape;
    if (!Number.isInteger(heads) || heads < 1 || C % heads !== 0) throw new RangeError(`attention: ${C} channels do not split into ${heads} heads`);
    const d = C / heads, scale = 1 / Math.sqrt(d);
    const p = zerosLike(q.data, B * heads * T * T);
    const out = zerosLike(q.data);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < heads; h++) {
        const off = b * T * C + h * d, pOff = (b * heads + h) * T * T;
        gemm(T, T, d, mat(q.data, off, C), mat(k.data, off, C, true), p, pOff, T, false, scale);
        softmaxRows(p, pOff, T, T);
        gemm(T, d, T, mat(p, pOff, T), mat(v.data, off, C), out, off, C);
      }
    }
    return { out: { shape: q.shape, data: out }, saved: { q, k, v, heads, p } };
  },
  backward({ q, k, v, heads, p }, dy, needs) {
    const [B, T, C] = q.shape;
    const d = C / heads, scale = 1 / Math.sqrt(d);
    const dq = needs[0] ? zerosLike(dy) : null;
    const dk = needs[1] ? zerosLike(dy) : null;
    const dv = needs[2] ? zerosLike(dy) : null;
    const ds = zerosLike(dy, T * T);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < heads; h++) {
        const off = b * T * C + h * d, pOff = (b * heads + h) * T * T;
        // dv = p^T dy
        if (dv) gemm(T, d, T, mat(p, pOff, T, true), mat(dy, off, C), dv, off, C);
        if (!dq && !dk) continue;
        // dp = dy v^T; ds = softmax backward of dp
        gemm(T, T, d, mat(dy, off, C), mat(v.data, off, C, true), ds, 0, T);
        softmaxBackwardRows(p, pOff, ds, 0, T, T);
        // dq = scale * ds k; dk = scale * ds^T q
        if (dq) gemm(T, d, T, mat(ds, 0, T), mat(k.data, off, C), dq, off, C, false, scale);
        if (dk) gemm(T, d, T, mat(ds, 0, T, true), mat(q.data, off, C), dk, off, C, false, scale);
      }
    }
    return [dq, dk, dv];
  },
};
