// Broadcasting add and mul, and the pointwise activations (quick_gelu, gelu, relu, relu6), forward and backward.
import type { Floats } from '../../types.js';
import { erf } from '../erf.js';
import { outputShape } from '../../../model/ops.js';
import { strides, zerosLike, numel, type Tensor } from '../tensor.js';
import { required, type Kernel } from './kernel.js';

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * For a tensor of shape `inShape` broadcast to `outShape`: the offset into it of each output element, or null when
 * it is read in order (no broadcast), or a number when `inShape` is a suffix of `outShape`: its element count, so
 * the offset is i % n.
 */
type Index = null | number | Int32Array;

function broadcastIndex(inShape: readonly number[], outShape: readonly number[]): Index {
  if (sameShape(inShape, outShape)) return null;
  const lead = outShape.length - inShape.length;
  let trimmed = 0;
  while (trimmed < inShape.length && inShape[trimmed] === 1) trimmed++;
  // the shape without its leading 1s matches the trailing dims of the output: a repeated block
  if (inShape.slice(trimmed).every((d, i) => d === outShape[lead + trimmed + i])) return numel(inShape);
  const rank = outShape.length;
  const st = strides(inShape);
  const bs = new Array<number>(rank).fill(0);
  for (let i = 0; i < inShape.length; i++) if (inShape[i] !== 1) bs[lead + i] = st[i];
  const n = numel(outShape);
  const idx = new Int32Array(n);
  const counter = new Array<number>(rank).fill(0);
  let off = 0;
  for (let i = 0; i < n; i++) {
    idx[i] = off;
    for (let d = rank - 1; d >= 0; d--) {
      if (++counter[d] < outShape[d]) {
        off += bs[d];
        break;
      }
      off -= bs[d] * (outShape[d] - 1);
      counter[d] = 0;
    }
  }
  return idx;
}

/** out[i] = src at the broadcast position of output element i */
function gather(src: Floats, index: Index, n: number): Floats {
  if (index === null) return src;
  const out = zerosLike(src, n);
  if (typeof index === 'number') {
    for (let i = 0; i < n; i += index) out.set(src.subarray(0, index), i);
  } else {
    for (let i = 0; i < n; i++) out[i] = src[index[i]];
  }
  return out;
}

/** Sums `full` (output-shaped) back onto an input of `size` elements read through `index`. */
function reduceTo(full: Floats, index: Index, size: number): Floats {
  if (index === null) return full;
  const out = zerosLike(full, size);
  const n = full.length;
  if (typeof index === 'number') {
    for (let i = 0; i < n; i += index) for (let j = 0; j < index; j++) out[j] += full[i + j];
  } else {
    for (let i = 0; i < n; i++) out[index[i]] += full[i];
  }
  return out;
}

interface BinarySaved {
  a: Tensor;
  b: Tensor;
  ia: Index;
  ib: Index;
  n: number;
}

function binaryForward(op: 'add' | 'mul', inputs: (Tensor | null)[]): { out: Tensor; saved: BinarySaved } {
  const a = required(inputs[0], op, 'a');
  const b = required(inputs[1], op, 'b');
  const shape = outputShape(op, [a.shape, b.shape], {});
  const n = numel(shape);
  const ia = broadcastIndex(a.shape, shape);
  const ib = broadcastIndex(b.shape, shape);
  const out = zerosLike(a.data, n);
  const x = a.data, y = b.data;
  if (ia === null && typeof ib === 'number') {
    // the common case: [B, T, C] (+|*) [T, C] or [C]
    for (let i = 0; i < n; i += ib) {
      if (op === 'add') for (let j = 0; j < ib; j++) out[i + j] = x[i + j] + y[j];
      else for (let j = 0; j < ib; j++) out[i + j] = x[i + j] * y[j];
    }
  } else {
    const xa = gather(x, ia, n), yb = gather(y, ib, n);
    if (op === 'add') for (let i = 0; i < n; i++) out[i] = xa[i] + yb[i];
    else for (let i = 0; i < n; i++) out[i] = xa[i] * yb[i];
  }
  return { out: { shape, data: out }, saved: { a, b, ia, ib, n } };
}

export const add: Kernel<'add', BinarySaved> = {
  forward: (inputs) => binaryForward('add', inputs),
  backward(s, dy, needs) {
    const ga = needs[0] ? reduceTo(dy, s.ia, s.a.data.length) : null;
    let gb = needs[1] ? reduceTo(dy, s.ib, s.b.data.length) : null;
    if (gb !== null && gb === ga) gb = gb.slice();   // both took dy as it is: hand out distinct arrays
    return [ga, gb];
  },
};

export const mul: Kernel<'mul', BinarySaved> = {
  forward: (inputs) => binaryForward('mul', inputs),
  backward(s, dy, needs) {
    const prod = (other: Tensor, index: Index) => {
      const o = gather(other.data, index, s.n);
      const out = zerosLike(dy, s.n);
      for (let i = 0; i < s.n; i++) out[i] = dy[i] * o[i];
      return out;
    };
    return [
      needs[0] ? reduceTo(prod(s.b, s.ib), s.ia, s.a.data.length) : null,
      needs[1] ? reduceTo(prod(s.a, s.ia), s.ib, s.b.data.length) : null,
    ];
  },
};

/** A pointwise op y = f(x) with dy/dx = f'(x); the backward keeps x. */
function pointwise<K extends 'quick_gelu' | 'gelu' | 'relu' | 'relu6'>(
  op: K, f: (x: number) => number, df: (x: number) => number): Kernel<K, Tensor> {
  return {
    forward(inputs) {
      const x = required(inputs[0], op, 'x');
      const src = x.data, n = src.length;
      const out = zerosLike(src);
      for (let i = 0; i < n; i++) out[i] = f(src[i]);
      return { out: { shape: x.shape, data: out }, saved: x };
    },
    backward(x, dy, needs) {
      if (!needs[0]) return [null];
      const src = x.data, n = src.length;
      const g = zerosLike(dy);
      for (let i = 0; i < n; i++) g[i] = dy[i] * df(src[i]);
      return [g];
    },
  };
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

export const quickGelu = pointwise('quick_gelu',
  (x) => x * sigmoid(1.702 * x),
  (x) => {
    const s = sigmoid(1.702 * x);
    return s + 1.702 * x * s * (1 - s);
  });

export const gelu = pointwise('gelu',
  (x) => 0.5 * x * (1 + erf(x * SQRT1_2)),
  (x) => 0.5 * (1 + erf(x * SQRT1_2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x));

// PyTorch's relu passes the gradient where x > 0; hardtanh(0, 6) where 0 < x < 6.
export const relu = pointwise('relu', (x) => (x < 0 ? 0 : x), (x) => (x > 0 ? 1 : 0));
export const relu6 = pointwise('relu6', (x) => (x < 0 ? 0 : x > 6 ? 6 : x), (x) => (x > 0 && x < 6 ? 1 : 0));
