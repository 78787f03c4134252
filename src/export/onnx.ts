// fp32 ONNX export: lowers every node of the graph IR (src/model/graph.ts) to ONNX opset 17 ops, the parameters as
// initializers. The IR carries no shapes, so a small shape inference runs alongside (the batch is the one symbolic dim).
import type { Floats } from '../backend/types.js';
import type { Graph, GraphNode, OpAttrs, OpName, OutputName } from '../model/graph.js';
import type { PennyModel } from '../model/model.js';
import { writeFileAtomicSync } from '../util/atomic.js';
import { foldBatchNorms } from './fold.js';
import {
  attrFloat, attrInt, attrInts, DataType, encodeModel, floatTensor, int64Tensor, tensorValueInfo,
  type ModelProto, type NodeProto, type TensorProto,
} from './onnx-proto.js';

export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;
export const PRODUCER = 'penny-train';
export const INPUT_NAME = 'input';
export const OUTPUT_NAME = 'output';
export const BATCH_DIM = 'batch';

export interface EmitOptions {
  /** metadata_props, written in this order */
  metadata?: Record<string, string>;
  /** only 17 is emitted (LayerNormalization is opset 17; ReduceMean keeps its axes attribute) */
  opset?: 17;
  /** 'dynamic' (default): input [batch,3,H,W] with a symbolic batch; a number fixes it */
  batch?: 'dynamic' | number;
  /** the graph output to export as `output`; default 'logits' */
  output?: OutputName;
  producerVersion?: string;
  docString?: string;
}

/** A dim is a number, or null for the (symbolic) batch. */
type Shape = (number | null)[];

function broadcast(a: Shape, b: Shape, where: string): Shape {
  const n = Math.max(a.length, b.length);
  const out: Shape = [];
  for (let i = 0; i < n; i++) {
    const x = i - (n - a.length) >= 0 ? a[i - (n - a.length)] : 1;
    const y = i - (n - b.length) >= 0 ? b[i - (n - b.length)] : 1;
    if (x === 1) out.push(y);
    else if (y === 1 || x === y) out.push(x);
    else throw new Error(`${where}: shapes ${fmt(a)} and ${fmt(b)} do not broadcast`);
  }
  return out;
}

const fmt = (s: Shape) => `[${s.map((d) => d ?? 'batch').join(', ')}]`;
const axisOf = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

function reshapeShape(s: Shape, target: number[], where: string): Shape {
  const out: Shape = target.map((t, i) => (t === 0 ? s[i] : t));
  const inferred = out.indexOf(-1);
  if (inferred >= 0) {
    const known = (x: Shape) => x.reduce<number>((p, d) => (d === null || d === -1 ? p : p * d), 1);
    const nulls = (x: Shape) => x.filter((d) => d === null).length;
    if (nulls(s) === nulls(out)) out[inferred] = known(s) / known(out);
    else if (nulls(s) === nulls(out) + 1 && known(s) === known(out)) out[inferred] = null;
    else throw new Error(`${where}: cannot infer -1 in reshape of ${fmt(s)} to [${target.join(', ')}]`);
    if (out[inferred] !== null && !Number.isInteger(out[inferred])) {
      throw new Error(`${where}: reshape of ${fmt(s)} to [${target.join(', ')}] does not divide`);
    }
  }
  return out;
}

/** Output shape of each IR node, given the input [batch, ...inputShape]. */
export function inferShapes(graph: Graph, batch: number | null = null): Map<string, Shape> {
  const shapes = new Map<string, Shape>();
  for (const p of graph.params) shapes.set(p.name, [...p.shape]);
  shapes.set(graph.input, [batch, ...graph.inputShape]);
  for (const n of graph.nodes) {
    const where = `node '${n.output}' (${n.op})`;
    const ins = n.inputs.map((name) => {
      if (name === '') return null;
      const s = shapes.get(name);
      if (!s) throw new Error(`${where} reads undefined value '${name}'`);
      return s;
    });
    const x = ins[0]!;
    let out: Shape;
    switch (n.op) {
      case 'conv2d': {
        const { stride, padding } = n.attrs as OpAttrs['conv2d'];
        const w = ins[1]!;
        const dim = (d: number | null, k: number | null) => Math.floor(((d as number) + 2 * padding - (k as number)) / stride) + 1;
        out = [x[0], w[0], dim(x[2], w[2]), dim(x[3], w[3])];
        break;
      }
      case 'linear': out = [...x.slice(0, -1), ins[1]![0]]; break;
      case 'add': case 'mul': out = broadcast(x, ins[1]!, where); break;
      case 'reshape': out = reshapeShape(x, (n.attrs as OpAttrs['reshape']).shape, where); break;
      case 'transpose': out = (n.attrs as OpAttrs['transpose']).perm.map((p) => x[p]); break;
      case 'concat': {
        const axis = axisOf((n.attrs as OpAttrs['concat']).axis, x.length);
        out = [...x];
        out[axis] = ins.reduce<number>((sum, s) => sum + (s![axis] as number), 0);
        break;
      }
      case 'slice': {
        const a = n.attrs as OpAttrs['slice'];
        const axis = axisOf(a.axis, x.length);
        const len = x[axis] as number;
        const clamp = (v: number) => Math.max(0, Math.min(len, v < 0 ? v + len : v));
        out = [...x];
        out[axis] = Math.max(0, clamp(a.end) - clamp(a.start));
        break;
      }
      case 'expand_batch': out = [ins[1]![0], ...x.slice(1)]; break;
      case 'mean': {
        const axes = (n.attrs as OpAttrs['mean']).axes.map((a) => axisOf(a, x.length));
        out = x.filter((_, i) => !axes.includes(i));
        break;
      }
      default: out = [...x];   // elementwise, layer_norm, softmax, log_softmax, attention ([B,T,C] like q)
    }
    shapes.set(n.output, out);
  }
  return shapes;
}

/** Builds the node list; constants are shared initializers. */
class OnnxBuilder {
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

/**
 * Lowers `graph` with `params` to an ONNX ModelProto (opset 17, IR version 8): input `input` [batch,3,H,W] float32,
 * output `output` (logits [batch, classes]); the inference graph: batch norm reads its running statistics, folded into
 * the conv before it. Throws on a missing parameter or a shape the IR cannot have.
 */
export function emitOnnx(trained: Graph, trainedParams: Record<string, Floats>, options: EmitOptions = {}): ModelProto {
  const { graph, params } = foldBatchNorms(trained, trainedParams);
  const opset = options.opset ?? ONNX_OPSET;
  if (opset !== 17) throw new RangeError(`only ONNX opset 17 is emitted, got ${opset}`);
  const batch = options.batch ?? 'dynamic';
  if (batch !== 'dynamic' && !(Number.isInteger(batch) && batch >= 1)) throw new TypeError(`batch must be 'dynamic' or a positive integer, got ${batch}`);
  const outName = graph.outputs[options.output ?? 'logits'];
  if (!outName) throw new Error(`graph has no output '${options.output ?? 'logits'}'`);
  const shapes = inferShapes(graph, batch === 'dynamic' ? null : batch);

  // Only the nodes the output needs.
  const producer = new Map(graph.nodes.map((n) => [n.output, n]));
  const needed = new Set<string>([outName]);
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const n = graph.nodes[i];
    if (needed.has(n.output)) for (const x of n.inputs) if (x) needed.add(x);
  }
  const paramSpec = new Map(graph.params.map((p) => [p.name, p]));
  const b = new OnnxBuilder();
  const rename = (v: string) => (v === graph.input ? INPUT_NAME : v === outName ? OUTPUT_NAME : v);
  const paramValues = (name: string): Float32Array => {
    const spec = paramSpec.get(name)!;
    const v = params[name];
    if (!v) throw new Error(`emitOnnx: no value for parameter '${name}'`);
    const n = spec.shape.reduce((a, c) => a * c, 1);
    if (v.length !== n) throw new Error(`emitOnnx: parameter '${name}' has ${v.length} values, its shape [${spec.shape.join(', ')}] needs ${n}`);
    return v instanceof Float32Array ? v : Float32Array.from(v);
  };
  const value = (name: string): string => {
    if (name === '' || paramSpec.has(name)) return name;   // parameters become initializers below, if a node reads them
    if (name !== graph.input && !producer.has(name)) throw new Error(`emitOnnx: undefined value '${name}'`);
    return rename(name);
  };

  for (const n of graph.nodes) {
    if (!needed.has(n.output)) continue;
    lowerNode(n, b, value, rename(n.output), shapes, { paramSpec, paramValues });
  }
  for (const n of b.nodes) {
    for (const x of n.input) if (paramSpec.has(x) && !b.initializers.has(x)) b.floats(x, paramSpec.get(x)!.shape, paramValues(x));
  }

  const [c, h, w] = graph.inputShape;
  const batchDim = batch === 'dynamic' ? BATCH_DIM : batch;
  const outShape = shapes.get(outName)!;
  if (outName === graph.input || paramSpec.has(outName)) throw new Error('emitOnnx: the output must be computed by a node');
  return {
    irVersion: ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: opset }],
    producerName: PRODUCER,
    producerVersion: options.producerVersion ?? '',
    docString: options.docString ?? '',
    graph: {
      name: 'penny_train',
      node: b.nodes,
      initializer: [...b.initializers.values()],
      input: [tensorValueInfo(INPUT_NAME, DataType.FLOAT, [batchDim, c, h, w])],
      output: [tensorValueInfo(OUTPUT_NAME, DataType.FLOAT, [batchDim, ...outShape.slice(1).map((d) => d as number)])],
    },
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, v]) => {
      if (typeof v !== 'string') throw new TypeError(`metadata '${key}' must be a string, got ${typeof v}`);
      return { key, value: v };
    }),
  };
}

interface ParamAccess {
  paramSpec: Map<string, { shape: number[] }>;
  paramValues: (name: string) => Float32Array;
}

function lowerNode(n: GraphNode, b: OnnxBuilder, value: (v: string) => string, out: string, shapes: Map<string, Shape>,
  pa: ParamAccess): void {
  const ins = n.inputs.map(value);
  const x = ins[0];
  const xShape = shapes.get(n.inputs[0])!;
  const op: OpName = n.op;
  switch (op) {
    case 'conv2d': {
      const { stride, padding } = n.attrs as OpAttrs['conv2d'];
      const wShape = pa.paramSpec.get(n.inputs[1])?.shape ?? (shapes.get(n.inputs[1]) as number[]);
      b.node('Conv', ins[2] ? [x, ins[1], ins[2]] : [x, ins[1]], [out], [
        attrInts('kernel_shape', wShape.slice(2)), attrInts('strides', [stride, stride]),
        attrInts('pads', [padding, padding, padding, padding]), attrInt('group', 1),
      ]);
      return;
    }
    case 'linear': {
      const [, wName, bias] = n.inputs;
      const bArg = ins[2];
      if (xShape.length === 2) {
        b.node('Gemm', bArg ? [x, ins[1], bArg] : [x, ins[1]], [out], [attrInt('transB', 1)]);
        return;
      }
      // MatMul with the weight transposed once, here, to [in, out]; then the bias.
      let wt: string;
      const spec = pa.paramSpec.get(wName);
      if (spec) {
        wt = `${wName}.T`;
        if (!b.initializers.has(wt)) b.floats(wt, [spec.shape[1], spec.shape[0]], transpose2d(pa.paramValues(wName), spec.shape[0], spec.shape[1]));
      } else {
        wt = b.node('Transpose', [ins[1]], [b.tmp(out, 'weight_t')], [attrInts('perm', [1, 0])]);
      }
      if (!bias) { b.node('MatMul', [x, wt], [out]); return; }
      const mm = b.node('MatMul', [x, wt], [b.tmp(out, 'matmul')]);
      b.node('Add', [mm, bArg], [out]);
      return;
    }
    case 'layer_norm':
      b.node('LayerNormalization', [x, ins[1], ins[2]], [out], [attrInt('axis', -1), attrFloat('epsilon', (n.attrs as OpAttrs['layer_norm']).eps)]);
      return;
    case 'add': b.node('Add', [x, ins[1]], [out]); return;
    case 'mul': b.node('Mul', [x, ins[1]], [out]); return;
    case 'quick_gelu': {
      const s = b.node('Sigmoid', [b.node('Mul', [x, b.scalar(1.702)], [b.tmp(out, 'scaled')])], [b.tmp(out, 'sigmoid')]);
      b.node('Mul', [x, s], [out]);
      return;
    }
    case 'gelu': {
      // exact GELU, 0.5 x (1 + erf(x / sqrt 2)); opset 17 has no Gelu op
      const e = b.node('Erf', [b.node('Div', [x, b.scalar(Math.SQRT2)], [b.tmp(out, 'div')])], [b.tmp(out, 'erf')]);
      const p = b.node('Add', [e, b.scalar(1)], [b.tmp(out, 'add')]);
      const m = b.node('Mul', [x, p], [b.tmp(out, 'mul')]);
      b.node('Mul', [m, b.scalar(0.5)], [out]);
      return;
    }
    case 'relu': b.node('Relu', [x], [out]); return;
    case 'relu6': b.node('Clip', [x, b.scalar(0), b.scalar(6)], [out]); return;
    case 'softmax': b.node('Softmax', [x], [out], [attrInt('axis', (n.attrs as OpAttrs['softmax']).axis)]); return;
    case 'log_softmax': b.node('LogSoftmax', [x], [out], [attrInt('axis', (n.attrs as OpAttrs['log_softmax']).axis)]); return;
    case 'attention': {
      // softmax(q k^T / sqrt(d)) v over heads, as MatMul/Softmax (opset 17 has no attention op)
      const heads = (n.attrs as OpAttrs['attention']).heads;
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
      return;
    }
    case 'reshape':
      b.node('Reshape', [x, b.ints((n.attrs as OpAttrs['reshape']).shape)], [out], [attrInt('allowzero', 0)]);
      return;
    case 'transpose': b.node('Transpose', [x], [out], [attrInts('perm', (n.attrs as OpAttrs['transpose']).perm)]); return;
    case 'concat': b.node('Concat', ins, [out], [attrInt('axis', (n.attrs as OpAttrs['concat']).axis)]); return;
    case 'slice': {
      const a = n.attrs as OpAttrs['slice'];
      b.node('Slice', [x, b.ints([a.start]), b.ints([a.end]), b.ints([a.axis])], [out]);
      return;
    }
    case 'expand_batch': {
      // t [1, ...] to [batch(ref), ...]: Expand to [batch, 1, ...] (broadcast keeps t's other dims)
      const batchOf = b.node('Shape', [ins[1]], [b.tmp(out, 'batch')], [attrInt('start', 0), attrInt('end', 1)]);
      const target = b.node('Concat', [batchOf, b.ints(new Array(xShape.length - 1).fill(1))], [b.tmp(out, 'shape')], [attrInt('axis', 0)]);
      b.node('Expand', [x, target], [out]);
      return;
    }
    case 'mean':
      b.node('ReduceMean', [x], [out], [attrInts('axes', (n.attrs as OpAttrs['mean']).axes), attrInt('keepdims', 0)]);
      return;
    case 'batch_norm':   // inference: the running statistics (foldBatchNorms has merged those that follow a conv)
      b.node('BatchNormalization', ins, [out], [attrFloat('epsilon', (n.attrs as OpAttrs['batch_norm']).eps)]);
      return;
    default: {
      const never: never = op;
      throw new Error(`emitOnnx: op '${String(never)}' has no ONNX lowering`);
    }
  }
}

/** The metadata_props every exported model carries (README, Export), as strings. */
export interface PennyMetadata {
  labelMap: Record<string, number> | string[] | Record<string, string>;
  modelType: string;
  backbone: string;
  /** [height, width] (a number: a square) */
  imgSize: number | readonly [number, number];
  mean: readonly number[];
  std: readonly number[];
  /** where the weights came from, or false/'false' for random init */
  pretrained: string | boolean;
  extra?: Record<string, string>;
}

export function pennyMetadata(m: PennyMetadata): Record<string, string> {
  return {
    label_map: JSON.stringify(m.labelMap),
    model_type: m.modelType,
    backbone: m.backbone,
    img_size: JSON.stringify(typeof m.imgSize === 'number' ? [m.imgSize, m.imgSize] : [...m.imgSize]),
    mean: JSON.stringify([...m.mean]),
    std: JSON.stringify([...m.std]),
    pretrained: String(m.pretrained),
    ...m.extra,
  };
}

/** emitOnnx over a live model's current weights. */
export function modelToOnnx(model: PennyModel, options: EmitOptions = {}): ModelProto {
  return emitOnnx(model.graph, model.getParams(), options);
}

/** Writes the model to `file` atomically (src/util/atomic.ts: whole or not at all, the error names the file). */
export function writeOnnxAtomic(file: string, bytes: Uint8Array | ModelProto): void {
  writeFileAtomicSync(file, bytes instanceof Uint8Array ? bytes : encodeModel(bytes));
}
