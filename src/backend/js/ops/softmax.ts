// softmax and log_softmax along any axis, and the row-wise softmax that attention and cross-entropy share.
import type { Floats } from '../../types.js';
import { axisOf, zerosLike, type Tensor } from '../tensor.js';
import { required, type Kernel } from './kernel.js';

/** Softmax in place over each of `rows` contiguous rows of length n starting at `off`. */
export function softmaxRows(a: Floats, off: number, rows: number, n: number): void {
  for (let r = 0; r < rows; r++) {
    const o = off + r * n;
    let max = -Infinity;
    for (let j = 0; j < n; j++) if (a[o + j] > max) max = a[o + j];
    let s = 0;
    for (let j = 0; j < n; j++) {
      const e = Math.exp(a[o + j] - max);
      a[o + j] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let j = 0; j < n; j++) a[o + j] *= inv;
  }
}

/** In place over rows: g = y * (g - sum(g * y)), the softmax backward for output y and gradient g. */
export function softmaxBackwardRows(y: Floats, yOff: number, g: Floats, gOff: number, rows: number, n: number): void {
  for (let r = 0; r < rows; r++) {
    const yo = yOff + r * n, go = gOff + r * n;
    let dot = 0;
    for (let j = 0; j < n; j++) dot += g[go + j] * y[yo + j];
    for (let j = 0; j < n; j++) g[go + j] = y[yo + j] * (g[go + j] - dot);
  }
}

interface SoftmaxSaved {
  y: Floats;
  outer: number;
  n: number;
  inner: number;
}

/** `axis` of x as `outer` blocks of n entries `inner` apart: entry j of lane (o, i) is at o * n * inner + i + j * inner. */
function lanes(x: Tensor, axis: number, op: string): { outer: number; n: number; inner: number } {
  const a = axisOf(axis, x.shape.length, op);
  const n = x.shape[a];
  const inner = x.shape.slice(a + 1).reduce((p, d) => p * d, 1);
  return { outer: x.data.length / (n * inner), n, inner };
}

/** The largest of the lane's n entries, `inner` apart from `base`: the shift that keeps exp() finite. */
function laneMax(data: Floats, base: number, n: number, inner: number): number {
  let max = -Infinity;
  for (let j = 0; j < n; j++) max = Math.max(max, data[base + j * inner]);
  return max;
}

export const softmax: Kernel<'softmax', SoftmaxSaved> = {
  forward(inputs, { axis }) {
    const x = required(inputs[0], 'softmax', 'x');
    const { outer, n, inner } = lanes(x, axis, 'softmax');
    const y = zerosLike(x.data);
    if (inner === 1) {
      y.set(x.data);
      softmaxRows(y, 0, outer, n);
    } else {
      for (let o = 0; o < outer; o++) {
        for (let i = 0; i < inner; i++) {
          const base = o * n * inner + i;
          const max = laneMax(x.data, base, n, inner);
          let s = 0;
          for (let j = 0; j < n; j++) {
            const e = Math.exp(x.data[base + j * inner] - max);
            y[base + j * inner] = e;
            s += e;
          }
          for (let j = 0; j < n; j++) y[base + j * inner] /= s;
        }
      }
    }
    const out: Tensor = { shape: x.shape, data: y };
    return { out, saved: { y, outer, n, inner } };
  },
  backward({ y, outer, n, inner }, dy, needs) {
    if (!needs[0]) return [null];
    const g = dy.slice();
    if (inner === 1) {
      softmaxBackwardRows(y, 0, g, 0, outer, n);
    } else {
      for (let o = 0; o < outer; o++) {
        for (let i = 0; i < inner; i++) {
          const base = o * n * inner + i;
          let dot = 0;
          for (let j = 0; j < n; j++) dot += g[base + j * inner] * y[base + j * inner];
          for (let j = 0; j < n; j++) g[base + j * inner] = y[base + j * inner] * (g[base + j * inner] - dot);
        }
      }
    }
    return [g];
  },
};

/** y = x - max - log(sum(exp(x - max))) over the axis; saves y, since softmax(x) = exp(y). */
export const logSoftmax: Kernel<'log_softmax', SoftmaxSaved> = {
  forward(inputs, { axis }) {
    const x = required(inputs[0], 'log_softmax', 'x');
    const { outer, n, inner } = lanes(x, axis, 'log_softmax');
    const y = zerosLike(x.data);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const base = o * n * inner + i;
        const max = laneMax(x.data, base, n, inner);
        let s = 0;
        for (let j = 0; j < n; j++) s += Math.exp(x.data[base + j * inner] - max);
        const logS = Math.log(s);
        for (let j = 0; j < n; j++) y[base + j * inner] = x.data[base + j * inner] - max - logS;
      }
    }
    const out: Tensor = { shape: x.shape, data: y };
    return { out, saved: { y, outer, n, inner } };
  },
  /** dx = dy - softmax(x) * sum(dy) over the axis */
  backward({ y, outer, n, inner }, dy, needs) {
    if (!needs[0]) return [null];
    const g = dy.slice();
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const base = o * n * inner + i;
        let sum = 0;
        for (let j = 0; j < n; j++) sum += dy[base + j * inner];
        for (let j = 0; j < n; j++) g[base + j * inner] = dy[base + j * inner] - Math.exp(y[base + j * inner]) * sum;
      }
    }
    return [g];
  },
};
