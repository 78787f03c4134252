// linear (x [..., in] @ weight[out, in]^T + bias) and conv2d (im2col + GEMM), forward and backward.
import type { Floats } from '../../types.js';
import { gemm, mat } from '../matmul.js';
import { shapeStr, zerosLike, type Tensor } from '../tensor.js';
import { outputShape } from '../../../model/ops.js';
import { required, type Kernel } from './kernel.js';

/** Fills each of `rows` rows of `out` (row length n, at `off`) with `bias`. */
function fillRows(out: Floats, off: number, rows: number, n: number, bias: Floats): void {
  for (let r = 0; r < rows; r++) out.set(bias, off + r * n);
}

/** Column sums of dy [rows, n] added into g [n]. */
function sumRows(dy: Floats, off: number, rows: number, n: number, g: Floats): void {
  for (let r = 0; r < rows; r++) {
    const o = off + r * n;
    for (let j = 0; j < n; j++) g[j] += dy[o + j];
  }
}

interface LinearSaved {
  x: Tensor;
  w: Tensor;
  rows: number;
  hasBias: boolean;
}

export const linear: Kernel<'linear', LinearSaved> = {
  forward(inputs) {
    const x = required(inputs[0], 'linear', 'x');
    const w = required(inputs[1], 'linear', 'weight');
    const b = inputs[2];
    const shape = outputShape('linear', [x.shape, w.shape], {});
    const [N, K] = w.shape;
    if (b && b.data.length !== N) throw new RangeError(`linear: bias ${shapeStr(b.shape)} for ${N} outputs`);
    const M = x.data.length / K;
    const out = zerosLike(x.data, M * N);
    if (b) fillRows(out, 0, M, N, b.data);
    gemm(M, N, K, mat(x.data, 0, K), mat(w.data, 0, K, true), out, 0, N, !!b);
    return { out: { shape, data: out }, saved: { x, w, rows: M, hasBias: !!b } };
  },
  backward({ x, w, rows: M, hasBias }, dy, needs) {
    const [N, K] = w.shape;
    let dx: Floats | null = null, dw: Floats | null = null, db: Floats | null = null;
    if (needs[0]) {
      dx = zerosLike(dy, M * K);
      gemm(M, K, N, mat(dy, 0, N), mat(w.data, 0, K), dx, 0, K);
    }
    if (needs[1]) {
      dw = zerosLike(dy, N * K);
      gemm(N, K, M, mat(dy, 0, N, true), mat(x.data, 0, K), dw, 0, K);
    }
    if (needs[2] && hasBias) {
      db = zerosLike(dy, N);
      sumRows(dy, 0, M, N, db);
    }
    return [dx, dw, db];
  },
};

interface ConvGeometry {
  B: number; Ci: number; H: number; W: number;
  Co: number; kh: number; kw: number;
  stride: number; pad: number; Ho: number; Wo: number;
}

/** Unfolds image b of x into cols [Ci * kh * kw, Ho * Wo] at `off` (zeros where the window hangs over the padding). */
function im2col(x: Floats, g: ConvGeometry, b: number, cols: Floats, off: number): void {
  const { Ci, H, W, kh, kw, stride, pad, Ho, Wo } = g;
  const L = Ho * Wo;
  for (let c = 0; c < Ci; c++) {
    const plane = (b * Ci + c) * H * W;
    for (let ki = 0; ki < kh; ki++) {
      for (let kj = 0; kj < kw; kj++) {
        let o = off + ((c * kh + ki) * kw + kj) * L;
        for (let oy = 0; oy < Ho; oy++) {
          const iy = oy * stride - pad + ki;
          if (iy < 0 || iy >= H) {
            cols.fill(0, o, o + Wo);
            o += Wo;
            continue;
          }
          const row = plane + iy * W;
          for (let ox = 0; ox < Wo; ox++, o++) {
            const ix = ox * stride - pad + kj;
            cols[o] = ix >= 0 && ix < W ? x[row + ix] : 0;
          }
        }
      }
    }
  }
}

/** The adjoint of im2col: adds cols [Ci * kh * kw, Ho * Wo] into image b of dx. */
function col2im(cols: Floats, g: ConvGeometry, b: number, dx: Floats): void {
  const { Ci, H, W, kh, kw, stride, pad, Ho, Wo } = g;
  const L = Ho * Wo;
  for (let c = 0; c < Ci; c++) {
    const plane = (b * Ci + c) * H * W;
    for (let ki = 0; ki < kh; ki++) {
      for (let kj = 0; kj < kw; kj++) {
        let o = ((c * kh + ki) * kw + kj) * L;
        for (let oy = 0; oy < Ho; oy++) {
          const iy = oy * stride - pad + ki;
          if (iy < 0 || iy >= H) {
            o += Wo;
            continue;
          }
          const row = plane + iy * W;
          for (let ox = 0; ox < Wo; ox++, o++) {
            const ix = ox * stride - pad + kj;
            if (ix >= 0 && ix < W) dx[row + ix] += cols[o];
          }
        }
      }
    }
  }
}

interface ConvSaved {
  g: ConvGeometry;
  w: Tensor;
  /** im2col of every image: [B, Ci * kh * kw, Ho * Wo] */
  cols: Floats;
  hasBias: boolean;
}

export const conv2d: Kernel<'conv2d', ConvSaved> = {
  forward(inputs, { stride, padding: pad }) {
    const x = required(inputs[0], 'conv2d', 'x');
    const w = required(inputs[1], 'conv2d', 'weight');
    const bias = inputs[2];
    const shape = outputShape('conv2d', [x.shape, w.shape], { stride, padding: pad });
    const [B, Ci, H, W] = x.shape;
    const [Co, , kh, kw] = w.shape;
    const [, , Ho, Wo] = shape;
    if (bias && bias.data.length !== Co) throw new RangeError(`conv2d: bias ${shapeStr(bias.shape)} for ${Co} channels`);
    const g: ConvGeometry = { B, Ci, H, W, Co, kh, kw, stride, pad, Ho, Wo };
    const L = Ho * Wo, CK = Ci * kh * kw;
    const cols = zerosLike(x.data, B * CK * L);
    const out = zerosLike(x.data, B * Co * L);
    for (let b = 0; b < B; b++) {
      im2col(x.data, g, b, cols, b * CK * L);
      const o = b * Co * L;
      if (bias) for (let c = 0; c < Co; c++) out.fill(bias.data[c], o + c * L, o + (c + 1) * L);
      // out_b [Co, L] = w [Co, CK] @ cols_b [CK, L]
      gemm(Co, L, CK, mat(w.data, 0, CK), mat(cols, b * CK * L, L), out, o, L, !!bias);
    }
    return { out: { shape, data: out }, saved: { g, w, cols, hasBias: !!bias } };
  },
  backward({ g, w, cols, hasBias }, dy, needs) {
    const { B, Ci, H, W, Co, kh, kw, Ho, Wo } = g;
    const L = Ho * Wo, CK = Ci * kh * kw;
    let dx: Floats | null = null, dw: Floats | null = null, db: Floats | null = null;
    if (needs[1]) {
      dw = zerosLike(dy, Co * CK);
      // dw [Co, CK] += dy_b [Co, L] @ cols_b^T [L, CK]
      for (let b = 0; b < B; b++) gemm(Co, CK, L, mat(dy, b * Co * L, L), mat(cols, b * CK * L, L, true), dw, 0, CK, b > 0);
    }
    if (needs[2] && hasBias) {
      db = zerosLike(dy, Co);
      for (let b = 0; b < B; b++) {
        for (let c = 0; c < Co; c++) {
          let s = 0;
          for (let o = (b * Co + c) * L, e = o + L; o < e; o++) s += dy[o];
          db[c] += s;
        }
      }
    }
    if (needs[0]) {
      dx = zerosLike(dy, B * Ci * H * W);
      const dcols = zerosLike(dy, CK * L);
      for (let b = 0; b < B; b++) {
        // dcols [CK, L] = w^T [CK, Co] @ dy_b [Co, L]
        gemm(CK, L, Co, mat(w.data, 0, CK, true), mat(dy, b * Co * L, L), dcols, 0, L);
        col2im(dcols, g, b, dx);
      }
    }
    return [dx, dw, db];
  },
};
