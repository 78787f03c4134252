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

interface BatchNormSaved {
  x: Tensor;
  w: Tensor;
  mean: Float64Array;
  rstd: Float64Array;
}

/**
 * batch_norm over [B, C, H, W] per channel. Training: the batch's statistics (biased variance), and the running ones
 * moved by `momentum` (unbiased variance), in place, as torch does; otherwise the running statistics. The backward
 * is the training one (inference records no tape).
 */
export const batchNorm: Kernel<'batch_norm', BatchNormSaved> = {
  forward(inputs, { eps, momentum }, { training }) {
    const x = required(inputs[0], 'batch_norm', 'x');
    const w = required(inputs[1], 'batch_norm', 'weight');
    const b = required(inputs[2], 'batch_norm', 'bias');
    const rm = required(inputs[3], 'batch_norm', 'running_mean');
    const rv = required(inputs[4], 'batch_norm', 'running_var');
    const [B, C] = x.shape;
    if (x.shape.length !== 4 || [w, b, rm, rv].some((t) => t.data.length !== C)) {
      throw new RangeError(`batch_norm: input ${shapeStr(x.shape)} must be [B, C, H, W] with C-sized weight, bias and statistics`);
    }
    const HW = x.shape[2] * x.shape[3], n = B * HW;
    const src = x.data, out = zerosLike(src);
    const mean = new Float64Array(C), rstd = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      let mu: number, variance: number;
      if (training) {
        let s = 0;
        for (let i = 0; i < B; i++) for (let o = (i * C + c) * HW, j = 0; j < HW; j++) s += src[o + j];
        mu = s / n;
        let v = 0;
        for (let i = 0; i < B; i++) for (let o = (i * C + c) * HW, j = 0; j < HW; j++) v += (src[o + j] - mu) ** 2;
        variance = v / n;
        rm.data[c] = (1 - momentum) * rm.data[c] + momentum * mu;
        rv.data[c] = (1 - momentum) * rv.data[c] + momentum * (n > 1 ? v / (n - 1) : variance);
      } else {
        [mu, variance] = [rm.data[c], rv.data[c]];
      }
      const rs = 1 / Math.sqrt(variance + eps);
      mean[c] = mu;
      rstd[c] = rs;
      const scale = rs * w.data[c], shift = b.data[c] - mu * scale;
      for (let i = 0; i < B; i++) for (let o = (i * C + c) * HW, j = 0; j < HW; j++) out[o + j] = src[o + j] * scale + shift;
    }
    return { out: { shape: x.shape, data: out }, saved: { x, w, mean, rstd } };
  },
  backward({ x, w, mean, rstd }, dy, needs) {
    const [B, C] = x.shape;
    const HW = x.shape[2] * x.shape[3], n = B * HW;
    const src = x.data;
    const dx = needs[0] ? zerosLike(dy) : null;
    const dw: Floats | null = needs[1] ? zerosLike(dy, C) : null;
    const db: Floats | null = needs[2] ? zerosLike(dy, C) : null;
    for (let c = 0; c < C; c++) {
      const mu = mean[c], rs = rstd[c];
      let sg = 0, sgx = 0;
      for (let i = 0; i < B; i++) {
        for (let o = (i * C + c) * HW, j = 0; j < HW; j++) {
          sg += dy[o + j];
          sgx += dy[o + j] * (src[o + j] - mu) * rs;
        }
      }
      if (dw) dw[c] = sgx;
      if (db) db[c] = sg;
      if (dx) {
        // dx = w * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))
        const k = w.data[c] * rs, mg = sg / n, mgx = sgx / n;
        for (let i = 0; i < B; i++) {
          for (let o = (i * C + c) * HW, j = 0; j < HW; j++) dx[o + j] = k * (dy[o + j] - mg - (src[o + j] - mu) * rs * mgx);
        }
      }
    }
    return [dx, dw, db, null, null];
  },
};
