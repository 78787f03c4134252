// layer_norm over the last axis (biased variance, as PyTorch), forward and backward.
import type { Floats } from '../../types.js';
import { shapeStr, zerosLike, type Tensor } from '../tensor.js';
import { required, type Kernel } from './kernel.js';

interface LayerNormSaved {
  x: Tensor;
  w: Tensor;
  mean: Float64Array;
  rstd: Float64Array;
}

export const layerNorm: Kernel<'layer_norm', LayerNormSaved> = {
  forward(inputs, { eps }) {
    const x = required(inputs[0], 'layer_norm', 'x');
    const w = required(inputs[1], 'layer_norm', 'weight');
    const b = required(inputs[2], 'layer_norm', 'bias');
    const C = x.shape[x.shape.length - 1];
    if (w.data.length !== C || b.data.length !== C) {
      throw new RangeError(`layer_norm: weight ${shapeStr(w.shape)} / bias ${shapeStr(b.shape)} for input ${shapeStr(x.shape)}`);
    }
    const src = x.data, wd = w.data, bd = b.data;
    const rows = src.length / C;
    const out = zerosLike(src);
    const mean = new Float64Array(rows), rstd = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const o = r * C;
      let s = 0;
      for (let j = 0; j < C; j++) s += src[o + j];
      const mu = s / C;
      let v = 0;
      for (let j = 0; j < C; j++) {
        const d = src[o + j] - mu;
        v += d * d;
      }
      const rs = 1 / Math.sqrt(v / C + eps);
      mean[r] = mu;
      rstd[r] = rs;
      for (let j = 0; j < C; j++) out[o + j] = (src[o + j] - mu) * rs * wd[j] + bd[j];
    }
    return { out: { shape: x.shape, data: out }, saved: { x, w, mean, rstd } };
  },
  backward({ x, w, mean, rstd }, dy, needs) {
    const src = x.data, wd = w.data;
    const C = wd.length, rows = mean.length;
    const dx = needs[0] ? zerosLike(dy) : null;
    const dw: Floats | null = needs[1] ? zerosLike(dy, C) : null;
    const db: Floats | null = needs[2] ? zerosLike(dy, C) : null;
    for (let r = 0; r < rows; r++) {
      const o = r * C, mu = mean[r], rs = rstd[r];
      if (dx) {
        // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w
        let sg = 0, sgx = 0;
        for (let j = 0; j < C; j++) {
          const g = dy[o + j] * wd[j];
          sg += g;
          sgx += g * (src[o + j] - mu) * rs;
        }
        sg /= C;
        sgx /= C;
        for (let j = 0; j < C; j++) {
          const xhat = (src[o + j] - mu) * rs;
          dx[o + j] = rs * (dy[o + j] * wd[j] - sg - xhat * sgx);
        }
      }
      if (dw) for (let j = 0; j < C; j++) dw[j] += dy[o + j] * (src[o + j] - mu) * rs;
      if (db) for (let j = 0; j < C; j++) db[j] += dy[o + j];
    }
    return [dx, dw, db];
  },
};
