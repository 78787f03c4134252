// The op table: every op of the graph IR with its inputs, its named and typed attributes, its output-shape rule and
// whether it has a backward. OpName/OpAttrs derive from it, lower.ts packs attributes by it,
// scripts/gen-native-ops.ts generates native/ops.generated.h from it, and the JS backend and the ONNX emitter both
// take output shapes from its rules, so adding an op is an entry here plus one kernel per consumer.

/** A dim is a number, or null for the symbolic batch of an ONNX export. */
export type Dim = number | null;
export type Shape = Dim[];

/** Attribute types; the native side reads `int`s from a node's ints, `float`s from its floats, an `ints` list last. */
export type AttrType = 'int' | 'float' | 'ints';
type AttrValue<T extends AttrType> = T extends 'ints' ? number[] : number;
// an op without attributes takes {} and nothing else
type AttrsOf<A extends Record<string, AttrType>> = keyof A extends never ? Record<string, never> : { [N in keyof A]: AttrValue<A[N]> };

interface OpSpec<A extends Record<string, AttrType>> {
  /** input names; `?` marks an optional one (absent: ''), `...` any number */
  inputs: readonly string[];
  attrs: A;
  /** The output shape from the input shapes (null for an absent optional input); throws on shapes that do not fit. */
  shape: (ins: (Shape | null)[], attrs: AttrsOf<A>) => Shape;
  /** the JS backend has a backward for it (the native one differentiates every op through LibTorch) */
  backward: boolean;
  /** a constraint on the attributes that the graph is checked against when it is lowered */
  check?: (attrs: AttrsOf<A>) => void;
}

// `const A` keeps each entry's attribute names and types literal, so each shape rule sees its own attrs' types.
const op = <const A extends Record<string, AttrType>>(spec: OpSpec<A>): OpSpec<A> => spec;

const fmt = (s: readonly Dim[]) => `[${s.map((d) => d ?? 'batch').join(', ')}]`;

/** The input at `i`, present (the kernels and emitters check required inputs; a rule reads only those). */
const at = (ins: (Shape | null)[], i: number): Shape => ins[i]!;

/** A dim that must be known (only the batch is symbolic, and no rule computes with it). */
function known(d: Dim, what: string): number {
  if (d === null) throw new RangeError(`${what} cannot be the symbolic batch`);
  return d;
}

function axisOf(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new RangeError(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

const same = (ins: (Shape | null)[]): Shape => [...at(ins, 0)];

/** NumPy / PyTorch broadcasting of two shapes. */
function broadcast(a: Shape, b: Shape): Shape {
  const rank = Math.max(a.length, b.length);
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    // a missing leading dim is 1 (not `?? 1`: that would make the symbolic batch, null, a 1 too)
    const x = i < rank - a.length ? 1 : a[i - rank + a.length];
    const y = i < rank - b.length ? 1 : b[i - rank + b.length];
    if (x !== y && x !== 1 && y !== 1) throw new RangeError(`shapes ${fmt(a)} and ${fmt(b)} do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/**
 * The target of a reshape: 0 copies the input's dim at that index, one -1 is inferred (the batch, if it is left). One
 * pass, no temporaries: the JS backend runs this for every reshape it executes.
 */
function reshape(x: Shape, spec: readonly number[]): Shape {
  const shape: Shape = new Array<Dim>(spec.length);
  let infer = -1, rest = 1, restBatches = 0;
  for (let i = 0; i < spec.length; i++) {
    let d: Dim = spec[i];
    if (d === 0) {
      if (i >= x.length) throw new RangeError(`0 at index ${i} but the input ${fmt(x)} has rank ${x.length}`);
      d = x[i];
    }
    shape[i] = d;
    if (d === -1) {
      if (infer >= 0) throw new RangeError(`more than one -1 in ${fmt(spec)}`);
      infer = i;
    } else if (d === null) restBatches++;
    else if (!Number.isInteger(d) || d < 0) throw new RangeError(`invalid shape ${fmt(spec)}`);
    else rest *= d;
  }
  let n = 1, batches = 0;
  for (const d of x) {
    if (d === null) batches++;
    else n *= d;
  }
  if (infer >= 0) {
    if (batches === restBatches + 1 && n === rest) shape[infer] = null;
    else if (batches !== restBatches || rest === 0 || n % rest !== 0) throw new RangeError(`cannot infer -1 in ${fmt(spec)} for input ${fmt(x)}`);
    else shape[infer] = n / rest;
  } else if (batches === 0 && restBatches === 0 && n !== rest) {
    throw new RangeError(`shape ${fmt(spec)} is invalid for input ${fmt(x)} (${n} elements)`);
  }
  return shape;
}

/** PyTorch's slice bounds on a dim of `size`: negative ones count from the end, then both clamp to [0, size]. */
export function sliceBounds(size: number, start: number, end: number): { start: number; len: number } {
  const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + size : i, 0), size);
  const s = clamp(start);
  return { start: s, len: Math.max(clamp(end), s) - s };
}

export const OPS = {
  conv2d: op({
    inputs: ['x', 'weight', 'bias?'],
    attrs: { stride: 'int', padding: 'int' },
    backward: true,
    shape: (ins, { stride, padding }) => {
      const [x, w] = [at(ins, 0), at(ins, 1)];
      if (x.length !== 4 || w.length !== 4 || x[1] !== w[1]) throw new RangeError(`input ${fmt(x)} and weight ${fmt(w)} do not fit [B, C, H, W] and [out, C, kh, kw]`);
      if (!(stride >= 1) || !(padding >= 0)) throw new RangeError(`stride ${stride} / padding ${padding}`);
      const side = (i: number) => Math.floor((known(x[i], 'a conv input side') + 2 * padding - known(w[i], 'a kernel side')) / stride) + 1;
      const [h, w2] = [side(2), side(3)];
      if (h < 1 || w2 < 1) throw new RangeError(`kernel ${w[2]}x${w[3]} is larger than the padded input ${fmt(x)}`);
      return [x[0], w[0], h, w2];
    },
  }),
  linear: op({
    inputs: ['x', 'weight', 'bias?'],   // weight [out, in]
    attrs: {},
    backward: true,
    shape: (ins) => {
      const [x, w] = [at(ins, 0), at(ins, 1)];
      if (w.length !== 2) throw new RangeError(`weight must be [out, in], got ${fmt(w)}`);
      if (x[x.length - 1] !== w[1]) throw new RangeError(`input ${fmt(x)} does not end in ${w[1]} (weight ${fmt(w)})`);
      return [...x.slice(0, -1), w[0]];
    },
  }),
  layer_norm: op({ inputs: ['x', 'weight', 'bias'], attrs: { eps: 'float' }, backward: true, shape: same }),   // over the last axis
  add: op({ inputs: ['a', 'b'], attrs: {}, backward: true, shape: (ins) => broadcast(at(ins, 0), at(ins, 1)) }),
  mul: op({ inputs: ['a', 'b'], attrs: {}, backward: true, shape: (ins) => broadcast(at(ins, 0), at(ins, 1)) }),
  quick_gelu: op({ inputs: ['x'], attrs: {}, backward: true, shape: same }),   // x * sigmoid(1.702 x)
  gelu: op({ inputs: ['x'], attrs: {}, backward: true, shape: same }),         // exact (erf)
  relu: op({ inputs: ['x'], attrs: {}, backward: true, shape: same }),
  relu6: op({ inputs: ['x'], attrs: {}, backward: true, shape: same }),
  softmax: op({ inputs: ['x'], attrs: { axis: 'int' }, backward: true, shape: same }),
  // x - max - log(sum(exp(x - max))) over axis
  log_softmax: op({ inputs: ['x'], attrs: { axis: 'int' }, backward: true, shape: same }),
  // q, k, v [B, T, C]; softmax(q k^T / sqrt(C/heads)) v
  attention: op({ inputs: ['q', 'k', 'v'], attrs: { heads: 'int' }, backward: true, shape: same }),
  reshape: op({ inputs: ['x'], attrs: { shape: 'ints' }, backward: true, shape: (ins, a) => reshape(at(ins, 0), a.shape) }),
  transpose: op({
    inputs: ['x'],
    attrs: { perm: 'ints' },
    backward: true,
    shape: (ins, { perm }) => {
      const x = at(ins, 0);
      const p = perm.map((a) => axisOf(a, x.length));
      if (p.length !== x.length || [...p].sort((a, b) => a - b).some((a, i) => a !== i)) throw new RangeError(`${fmt(perm)} is not a permutation of ${x.length} axes`);
      return p.map((a) => x[a]);
    },
  }),
  concat: op({
    inputs: ['...'],
    attrs: { axis: 'int' },
    backward: true,
    shape: (ins, { axis }) => {
      if (ins.length === 0) throw new RangeError('no inputs');
      const parts = ins.map((_, i) => at(ins, i));
      const first = parts[0];
      const a = axisOf(axis, first.length);
      if (parts.some((s) => s.length !== first.length || s.some((d, i) => i !== a && d !== first[i]))) {
        throw new RangeError(`shapes ${parts.map(fmt).join(', ')} differ off axis ${axis}`);
      }
      const out = [...first];
      out[a] = parts.reduce((sum, s) => sum + known(s[a], 'the concat axis'), 0);
      return out;
    },
  }),
  slice: op({
    inputs: ['x'],
    attrs: { axis: 'int', start: 'int', end: 'int' },
    backward: true,
    shape: (ins, { axis, start, end }) => {
      const out = [...at(ins, 0)];
      const a = axisOf(axis, out.length);
      out[a] = sliceBounds(known(out[a], 'the slice axis'), start, end).len;
      return out;
    },
  }),
  // t [1, ...], ref: t repeated to ref's batch size
  expand_batch: op({
    inputs: ['t', 'ref'],
    attrs: {},
    backward: true,
    shape: (ins) => {
      const t = at(ins, 0);
      if (t[0] !== 1) throw new RangeError(`the tensor must have a leading 1, got ${fmt(t)}`);
      return [at(ins, 1)[0], ...t.slice(1)];
    },
  }),
  // over a contiguous, ascending run of axes, which are dropped
  mean: op({
    inputs: ['x'],
    attrs: { axes: 'ints' },
    backward: true,
    check: ({ axes }) => {
      if (!axes.length || axes.some((d, i) => i > 0 && d !== axes[i - 1] + 1)) throw new Error(`graph: mean axes ${JSON.stringify(axes)} must be a contiguous ascending run`);
    },
    shape: (ins, { axes }) => {
      const x = at(ins, 0);
      const a = axes.map((d) => axisOf(d, x.length));
      return x.filter((_, i) => !a.includes(i));
    },
  }),
  // x [B, C, H, W] and C-sized weight, bias, running statistics (buffers). A train step normalises with the batch's
  // statistics and moves the running ones by `momentum` (unbiased variance, as torch); inference reads them.
  batch_norm: op({
    inputs: ['x', 'weight', 'bias', 'running_mean', 'running_var'],
    attrs: { eps: 'float', momentum: 'float' },
    backward: true,
    shape: same,
  }),
};

export type OpName = keyof typeof OPS;
type AttrTypesOf<K extends OpName> = (typeof OPS)[K]['attrs'];
export type OpAttrs = { [K in OpName]: AttrsOf<AttrTypesOf<K>> };

export const OP_NAMES = Object.keys(OPS) as OpName[];

/** The output shape of `op` on inputs of these shapes; errors name the op. */
export function outputShape<K extends OpName>(op: K, ins: (number[] | null)[], attrs: OpAttrs[K]): number[];
export function outputShape<K extends OpName>(op: K, ins: (Shape | null)[], attrs: OpAttrs[K]): Shape;
export function outputShape<K extends OpName>(op: K, ins: (Shape | null)[], attrs: OpAttrs[K]): Shape {
  try {
    return (OPS[op].shape as (ins: (Shape | null)[], attrs: OpAttrs[K]) => Shape)(ins, attrs);
  } catch (e) {
    if (e instanceof Error) e.message = `${op}: ${e.message}`;
    throw e;
  }
}
