// Ops that move data without arithmetic: reshape, transpose, concat, slice, expand_batch.
import type { Floats } from '../../types.js';
import { axisOf, numel, strides, zerosLike } from '../tensor.js';
import { outputShape, sliceBounds } from '../../../model/ops.js';
import { required, type Kernel } from './kernel.js';

export const reshape: Kernel<'reshape', null> = {
  forward(inputs, { shape }) {
    const x = required(inputs[0], 'reshape', 'x');
    // the data is shared: values are never written after they are made
    return { out: { shape: outputShape('reshape', [x.shape], { shape }), data: x.data }, saved: null };
  },
  backward: (_s, dy, needs) => [needs[0] ? dy : null],
};

/** out = x permuted: out dim i is x dim perm[i] (a permutation of x's axes, as the transpose rule checks). */
export function permute(x: Floats, shape: readonly number[], perm: readonly number[]): { data: Floats; shape: number[] } {
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p]);
  const st = strides(shape);
  const ps = perm.map((p) => st[p]);
  const out = zerosLike(x);
  const n = x.length;
  if (rank === 0 || n === 0) return { data: out, shape: outShape };
  const last = rank - 1, inner = outShape[last], innerStride = ps[last];
  const counter = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < n; o += inner) {
    for (let j = 0, s = src; j < inner; j++, s += innerStride) out[o + j] = x[s];
    // advance the odometer over all but the innermost axis
    for (let d = last - 1; d >= 0; d--) {
      if (++counter[d] < outShape[d]) {
        src += ps[d];
        break;
      }
      src -= ps[d] * (outShape[d] - 1);
      counter[d] = 0;
    }
  }
  return { data: out, shape: outShape };
}

export const transpose: Kernel<'transpose', { perm: number[]; outShape: number[] }> = {
  forward(inputs, { perm }) {
    const x = required(inputs[0], 'transpose', 'x');
    const shape = outputShape('transpose', [x.shape], { perm });
    const p = perm.map((a) => axisOf(a, x.shape.length, 'transpose'));
    return { out: { shape, data: permute(x.data, x.shape, p).data }, saved: { perm: p, outShape: shape } };
  },
  backward({ perm, outShape }, dy, needs) {
    if (!needs[0]) return [null];
    const inverse = new Array<number>(perm.length);
    perm.forEach((p, i) => (inverse[p] = i));
    return [permute(dy, outShape, inverse).data];
  },
};

interface ConcatSaved {
  outer: number;
  /** each input's block per outer index: its dim along the axis times the inner size */
  blocks: number[];
}

export const concat: Kernel<'concat', ConcatSaved> = {
  forward(inputs, { axis }) {
    const parts = inputs.map((t, i) => required(t, 'concat', `input ${i}`));
    const shape = outputShape('concat', parts.map((t) => t.shape), { axis });
    const first = parts[0].shape;
    const a = axisOf(axis, first.length, 'concat');
    const inner = numel(first.slice(a + 1));
    const outer = numel(first.slice(0, a));
    const blocks = parts.map((t) => t.shape[a] * inner);
    const total = blocks.reduce((s, b) => s + b, 0);
    const out = zerosLike(parts[0].data, outer * total);
    for (let o = 0; o < outer; o++) {
      let pos = o * total;
      parts.forEach((t, i) => {
        out.set(t.data.subarray(o * blocks[i], (o + 1) * blocks[i]), pos);
        pos += blocks[i];
      });
    }
    return { out: { shape, data: out }, saved: { outer, blocks } };
  },
  backward({ outer, blocks }, dy, needs) {
    const total = blocks.reduce((s, b) => s + b, 0);
    let start = 0;
    return blocks.map((blk, i) => {
      const at = start;
      start += blk;
      if (!needs[i]) return null;
      const g = zerosLike(dy, outer * blk);
      for (let o = 0; o < outer; o++) g.set(dy.subarray(o * total + at, o * total + at + blk), o * blk);
      return g;
    });
  },
};

interface SliceSaved {
  dim: number;
  outer: number;
  inner: number;
  start: number;
  len: number;
}

export const slice: Kernel<'slice', SliceSaved> = {
  forward(inputs, { axis, start, end }) {
    const x = required(inputs[0], 'slice', 'x');
    const shape = outputShape('slice', [x.shape], { axis, start, end });
    const a = axisOf(axis, x.shape.length, 'slice');
    const dim = x.shape[a];
    const { start: s, len } = sliceBounds(dim, start, end);
    const inner = numel(x.shape.slice(a + 1)), outer = numel(x.shape.slice(0, a));
    const out = zerosLike(x.data, outer * len * inner);
    for (let o = 0; o < outer; o++) {
      const from = (o * dim + s) * inner;
      out.set(x.data.subarray(from, from + len * inner), o * len * inner);
    }
    return { out: { shape, data: out }, saved: { dim, outer, inner, start: s, len } };
  },
  backward({ dim, outer, inner, start, len }, dy, needs) {
    if (!needs[0]) return [null];
    const g = zerosLike(dy, outer * dim * inner);
    for (let o = 0; o < outer; o++) g.set(dy.subarray(o * len * inner, (o + 1) * len * inner), (o * dim + start) * inner);
    return [g];
  },
};

export const expandBatch: Kernel<'expand_batch', { block: number; batch: number }> = {
  forward(inputs) {
    const t = required(inputs[0], 'expand_batch', 't');
    const ref = required(inputs[1], 'expand_batch', 'ref');
    const shape = outputShape('expand_batch', [t.shape, ref.shape], {});
    const batch = ref.shape[0], block = t.data.length;
    const out = zerosLike(t.data, batch * block);
    for (let b = 0; b < batch; b++) out.set(t.data, b * block);
    return { out: { shape, data: out }, saved: { block, batch } };
  },
  backward({ block, batch }, dy, needs) {
    if (!needs[0]) return [null, null];
    const g = zerosLike(dy, block);
    for (let b = 0; b < batch; b++) for (let j = 0, o = b * block; j < block; j++) g[j] += dy[o + j];
    return [g, null];
  },
};
