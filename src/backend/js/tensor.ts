// Dense row-major tensors over Float32Array / Float64Array, and the small shape helpers the kernels share.
import type { DType, Floats } from '../types.js';

export interface Tensor {
  shape: number[];
  data: Floats;
}

export { numel } from '../../model/graph.js';

/** Row-major strides of `shape`. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function alloc(dtype: DType, n: number): Floats {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

/** A zeroed array of `a`'s element type, `n` long (default: as long as `a`). */
export function zerosLike(a: Floats, n = a.length): Floats {
  return a instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/** `dst += src`, element by element. */
export function addInto(dst: Floats, src: Floats): void {
  const n = dst.length;
  for (let i = 0; i < n; i++) dst[i] += src[i];
}

/** Normalises a possibly negative axis against `rank`. */
export function axisOf(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new RangeError(`${what}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
