// Each op of the op table (src/model/ops.ts) as ONNX opset 17 nodes; the mapped type makes an op without a lowering a
// compile error.
import type { GraphNode } from '../model/graph.js';
import type { OpName, Shape } from '../model/ops.js';
import { attrFloat, attrInt, attrInts, floatTensor, int64Tensor, type NodeProto, type TensorProto } from './onnx-proto.js';

/** Builds the node list; constants are shared initializers. */
export class OnnxBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers = new Map<string, TensorProto>();
  private counter = 0;

  node(opType: string, input: string[], output: string[], attribute: NodeProto['attribute'] = []): string {
    this.nodes.push({ opType, input, output, name: `${opType}_${this.counter++}`, attribute });
    return output[0];
  }

  tmp(base: string, suffix: string): string {
    return `${base}/${suffix}`;
  }

  ints(values: number[]): string {
    const name = `const_i64[${values.join(',')}]`;
    if (!this.initializers.has(name)) this.initializers.set(name, int64Tensor(name, [values.length], values));
    return name;
  }

  scalar(v: number): string {
    const name = `const_f32(${v})`;
    if (!this.initializers.has(name)) this.initializers.set(name, floatTensor(name, [], Float32Array.of(v)));
    return name;
  }

  floats(name: string, dims: number[], data: Float32Array): string {
    this.initializers.set(name, floatTensor(name, dims, data));
    return name;
  }
}

function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

export interface ParamAccess {
  paramSpec: Map<string, { shape: number[] }>;
  paramValues: (name: string) => Float32Array;
}

/** What a lowering gets: the builder, the node's ONNX input names ('' for an absent one), its output's, the shapes. */
interface LowerContext {
  b: OnnxBuilder;
  ins: string[];
  out: string;
  shapes: Map<string, Shape>;
  params: ParamAccess;
}

type Lowering<K extends OpName> = (n: GraphNode<K>, c: LowerContext) => void;

const LOWERINGS: { [K in OpName]: Lowering<K> } = {
  conv2d: (n, { b, ins, out, shapes, params }) => {
    const { stride, padding } = n.attrs;
    const wShape = params.paramSpec.get(n.inputs[1])?.shape ?? (shapes.get(n.inputs[1]) as number[]);
    b.node('Conv', ins[2] ? ins : ins.slice(0, 2), [out], [
      attrInts('kernel_shape', wShape.slice(2)), attrInts('strides', [stride, stride]),
      attrInts('pads', [padding, padding, padding, padding]), attrInt('group', 1),
    ]);
  },
  linear: (n, { b, ins, out, shapes, params }) => {
    const [x, w, bias] = ins;
    if (shapes.get(n.inputs[0])!.length === 2) {
      b.node('Gemm', bias ? [x, w, bias] : [x, w], [out], [attrInt('transB', 1)]);
      return;
    }
    // MatMul with the weight transposed once, here, to [in, out]; then the bias.
    let wt: string;
    const wName = n.inputs[1];
    const spec = params.paramSpec.get(wName);
    if (spec) {
      wt = `${wName}.T`;
      if (!b.initializers.has(wt)) b.floats(wt, [spec.shape[1], spec.shape[0]], transpose2d(params.paramValues(wName), spec.shape[0], spec.shape[1]));
    } else {
      wt = b.node('Transpose', [w], [b.tmp(out, 'weight_t')], [attrInts('perm', [1, 0])]);
    }
    if (!bias) {
      b.node('MatMul', [x, wt], [out]);
      return;
    }
    b.node('Add', [b.node('MatMul', [x, wt], [b.tmp(out, 'matmul')]), bias], [out]);
  },
  layer_norm: (n, { b, ins, out }) => {
    b.node('LayerNormalization', ins, [out], [attrInt('axis', -1), attrFloat('epsilon', n.attrs.eps)]);
  },
  add: (_n, { b, ins, out }) => { b.node('Add', ins, [out]); },
  mul: (_n, { b, ins, out }) => { b.node('Mul', ins, [out]); },
  quick_gelu: (_n, { b, ins: [x], out }) => {
    const s = b.node('Sigmoid', [b.node('Mul', [x, b.scalar(1.702)], [b.tmp(out, 'scaled')])], [b.tmp(out, 'sigmoid')]);
    b.node('Mul', [x, s], [out]);
  },
  gelu: (_n, { b, ins: [x], out }) => {
    // exact GELU, 0.5 x (1 + erf(x / sqrt 2)); opset 17 has no Gelu op
    const e = b.node('Erf', [b.node('Div', [x, b.scalar(Math.SQRT2)], [b.tmp(out, 'div')])], [b.tmp(out, 'erf')]);
    const p = b.node('Add', [e, b.scalar(1)], [b.tmp(out, 'add')]);
    const m = b.node('Mul', [x, p], [b.tmp(out, 'mul')]);
    b.node('Mul', [m, b.scalar(0.5)], [out]);
  },
  relu: (_n, { b, ins, out }) => { b.node('Relu', ins, [out]); },
  relu6: (_n, { b, ins: [x], out }) => { b.node('Clip', [x, b.scalar(0), b.scalar(6)], [out]); },
  softmax: (n, { b, ins, out }) => { b.node('Softmax', ins, [out], [attrInt('axis', n.attrs.axis)]); },
  log_softmax: (n, { b, ins, out }) => { b.node('LogSoftmax', ins, [out], [attrInt('axis', n.attrs.axis)]); },
  attention: (n, { b, ins, out, shapes }) => {
    // softmax(q k^T / sqrt(d)) v over heads, as MatMul/Softmax (opset 17 has no attention op)
    const { heads } = n.attrs;
    const xShape = shapes.get(n.inputs[0])!;
    const C = xShape[2];
    if (xShape.length !== 3 || typeof C !== 'number') throw new Error(`attention '${n.output}': q must be [B, T, C], got rank ${xShape.length}`);
    if (C % heads !== 0) throw new Error(`attention '${n.output}': width ${C} is not divisible by ${heads} heads`);
    const d = C / heads;
    const split = b.ints([0, 0, heads, d]);
    const q = b.node('Transpose', [b.node('Reshape', [ins[0], split], [b.tmp(out, 'q_heads')])], [b.tmp(out, 'q')], [attrInts('perm', [0, 2, 1, 3])]);
    const k = b.node('Transpose', [b.node('Reshape', [ins[1], split], [b.tmp(out, 'k_heads')])], [b.tmp(out, 'k_t')], [attrInts('perm', [0, 2, 3, 1])]);
    const v = b.node('Transpose', [b.node('Reshape', [ins[2], split], [b.tmp(out, 'v_heads')])], [b.tmp(out, 'v')], [attrInts('perm', [0, 2, 1, 3])]);
    const scores = b.node('Mul', [b.node('MatMul', [q, k], [b.tmp(out, 'qk')]), b.scalar(1 / Math.sqrt(d))], [b.tmp(out, 'scores')]);
    const probs = b.node('Softmax', [scores], [b.tmp(out, 'probs')], [attrInt('axis', -1)]);
    const o = b.node('MatMul', [probs, v], [b.tmp(out, 'context')]);
    const merged = b.node('Transpose', [o], [b.tmp(out, 'context_t')], [attrInts('perm', [0, 2, 1, 3])]);
    b.node('Reshape', [merged, b.ints([0, 0, C])], [out], [attrInt('allowzero', 0)]);
  },
  reshape: (n, { b, ins: [x], out }) => { b.node('Reshape', [x, b.ints(n.attrs.shape)], [out], [attrInt('allowzero', 0)]); },
  transpose: (n, { b, ins, out }) => { b.node('Transpose', ins, [out], [attrInts('perm', n.attrs.perm)]); },
  concat: (n, { b, ins, out }) => { b.node('Concat', ins, [out], [attrInt('axis', n.attrs.axis)]); },
  slice: (n, { b, ins: [x], out }) => {
    const { axis, start, end } = n.attrs;
    b.node('Slice', [x, b.ints([start]), b.ints([end]), b.ints([axis])], [out]);
  },
  expand_batch: (n, { b, ins: [x, ref], out, shapes }) => {
    // t [1, ...] to [batch(ref), ...]: Expand to [batch, 1, ...] (broadcast keeps t's other dims)
    const batchOf = b.node('Shape', [ref], [b.tmp(out, 'batch')], [attrInt('start', 0), attrInt('end', 1)]);
    const ones = new Array(shapes.get(n.inputs[0])!.length - 1).fill(1);
    const target = b.node('Concat', [batchOf, b.ints(ones)], [b.tmp(out, 'shape')], [attrInt('axis', 0)]);
    b.node('Expand', [x, target], [out]);
  },
  mean: (n, { b, ins, out }) => { b.node('ReduceMean', ins, [out], [attrInts('axes', n.attrs.axes), attrInt('keepdims', 0)]); },
  // inference: the running statistics (foldBatchNorms has merged those that follow a conv)
  batch_norm: (n, { b, ins, out }) => { b.node('BatchNormalization', ins, [out], [attrFloat('epsilon', n.attrs.eps)]); },
};

/** Appends the ONNX nodes of IR node `n`, reading its inputs as `value` names them and writing `out`. */
export function lowerNode(n: GraphNode, b: OnnxBuilder, value: (v: string) => string, out: string, shapes: Map<string, Shape>,
  params: ParamAccess): void {
  (LOWERINGS[n.op] as Lowering<OpName>)(n, { b, ins: n.inputs.map(value), out, shapes, params });
}
