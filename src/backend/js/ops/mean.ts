// mean over a contiguous run of axes (the IR's reduction, e.g. global average pooling over [2, 3]).
import type { Floats } from '../../types.js';
import { numel, zerosLike } from '../tensor.js';
import { outputShape } from '../../../model/ops.js';
import { required, type Kernel } from './kernel.js';

interface MeanSaved {
  outer: number;
  n: number;
  inner: number;
  like: Floats;
}

export const mean: Kernel<'mean', MeanSaved> = {
  forward(inputs, { axes }) {
    const x = required(inputs[0], 'mean', 'x');
    const rank = x.shape.length;
    const a = axes.map((d) => (d < 0 ? d + rank : d));
    const [first, last] = [a[0], a[a.length - 1]];
    const outer = numel(x.shape.slice(0, first));
    const n = numel(x.shape.slice(first, last + 1));
    const inner = numel(x.shape.slice(last + 1));
    const y = zerosLike(x.data, outer * inner);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < n; j++) {
        const src = (o * n + j) * inner;
        for (let i = 0; i < inner; i++) y[o * inner + i] += x.data[src + i];
      }
    }
    for (let k = 0; k < y.length; k++) y[k] /= n;
    return { out: { shape: outputShape('mean', [x.shape], { axes }), data: y }, saved: { outer, n, inner, like: x.data } };
  },
  backward({ outer, n, inner, like }, dy) {
    const g = zerosLike(like);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < n; j++) {
        const dst = (o * n + j) * inner;
        for (let i = 0; i < inner; i++) g[dst + i] = dy[o * inner + i] / n;
      }
    }
    return [g];
  },
};
