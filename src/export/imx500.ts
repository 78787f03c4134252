// makeImx500Compatible: a pass over the exported ONNX graph (not the IR) that leaves only ops Sony's IMX500 toolchain
// (Model Compression Toolkit's IMX500 target platform + the IMX500 converter) takes.
//
// Why on ONNX rather than on the graph IR: the IR's nodes (layer_norm, attention, ...) are what the native and JS
// backends execute and differentiate; decomposing them there would need new IR ops (reduce_mean, sqrt, div, sub) in
// every backend for a concern only the exported file has. On ONNX it is a self-contained rewrite, it also applies to
// any ONNX model given to it, and its output is checked against the plain export in onnxruntime (<= 1e-4).
//
// Rewrites:
//  - LayerNormalization -> ReduceMean, Sub, Mul, ReduceMean, Add(eps), Sqrt, Div, Mul(scale), Add(bias)
//  - GELU (the Erf form, Gelu op, com.microsoft Gelu/FastGelu) -> x * Sigmoid(1.5957691 (x + 0.044715 x^3)), the tanh
//    approximation written with Sigmoid (|error| < 5e-4 against exact GELU); com.microsoft QuickGelu -> x * Sigmoid(a x).
//    penny-train's CLIP graphs use quick_gelu, already Mul/Sigmoid, so for them nothing changes numerically.
//  - fused attention ops are refused (penny-train's export never emits one: attention is MatMul/Softmax already).
//  - the batch is fixed (default 1: the sensor runs one frame at a time): the Shape/Concat/Expand that broadcast the
//    class token to the batch becomes the constant itself, and Reshapes of constants are folded.
//  - Pow(x, 2) -> Mul(x, x).
import { numel, type Graph } from '../model/graph.js';
import { lowerGraph } from '../model/lower.js';
import { inferShapes } from './onnx.js';
import {
  attrInts, cloneModel, DataType, floatTensor, getAttr, opHistogram, pruneDeadNodes, tensorFloats,
  tensorInts, uniqueName, type ModelProto, type NodeProto, type TensorProto,
} from './onnx-proto.js';

/** The IMX500's on-sensor memory for the network, bytes (8 MB). */
export const IMX500_MEMORY_BYTES = 8 * 1024 * 1024;

/**
 * Op types that the pass's output may contain: those MCT's IMX500 target platform (imx500_tpc v4) lists or maps
 * (Conv, fully connected = Gemm/MatMul, Add/Sub/Mul/Div, Relu/Clip/Sigmoid/Tanh/HardSigmoid/HardSwish, Reshape,
 * Transpose, Concat, Gather/Slice, Squeeze/Unsqueeze/Flatten, MaxPool, BatchNormalization, Min/Max, ArgMax) plus
 * Softmax, ReduceMean and Sqrt (the LayerNorm decomposition), and the QDQ nodes of an int8 model. Not LogSoftmax:
 * MCT maps it, but imx500-converter 3.18.2 refuses it ("[USOP] The network contains unsupported ops: LogSoftmax"),
 * so the factorised date head is reported here; `penny-train imx500` sends that head without its log-softmaxes
 * (src/export/torch-module.ts).
 */
export const IMX500_OPS = new Set([
  'Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'Add', 'Sub', 'Mul', 'Div', 'Relu', 'LeakyRelu', 'PRelu', 'Clip', 'Sigmoid',
  'HardSigmoid', 'HardSwish', 'Tanh', 'Softmax', 'Reshape', 'Transpose', 'Concat', 'Slice', 'Gather', 'Squeeze',
  'Unsqueeze', 'Flatten', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'BatchNormalization', 'Min', 'Max', 'ArgMax',
  'ReduceMean', 'Sqrt', 'Identity', 'QuantizeLinear', 'DequantizeLinear',
]);

const FUSED_ATTENTION = new Set(['Attention', 'MultiHeadAttention', 'GroupQueryAttention', 'PackedAttention',
  'PackedMultiHeadAttention', 'DecoderAttention', 'LongformerAttention', 'SparseAttention']);

export interface Imx500Options {
  /** fixed batch size of the result (default 1), or 'dynamic' to keep a symbolic batch */
  batch?: number | 'dynamic';
}

class Rewriter {
  readonly init = new Map<string, TensorProto>();
  readonly out: NodeProto[] = [];
  private readonly taken: Set<string>;

  constructor(readonly model: ModelProto) {
    for (const t of model.graph.initializer) this.init.set(t.name, t);
    this.taken = new Set([...model.graph.node.flatMap((n) => [...n.input, ...n.output, n.name ?? '']), ...this.init.keys()]);
  }

  name(base: string): string {
    return uniqueName(base, this.taken);
  }

  node(opType: string, input: string[], output: string | null, base: string, attribute: NodeProto['attribute'] = []): string {
    const o = output ?? this.name(`${base}/${opType}`);
    this.out.push({ opType, input, output: [o], name: this.name(`${base}/${opType}_node`), attribute });
    return o;
  }

  scalar(v: number): string {
    const n = this.name(`imx500_const(${v})`);
    const t = floatTensor(n, [], Float32Array.of(v));
    this.init.set(n, t);
    this.model.graph.initializer.push(t);
    return n;
  }

  constFloat(name: string): number | undefined {
    const t = this.init.get(name);
    if (!t || t.dataType !== DataType.FLOAT || numel(t.dims) !== 1) return undefined;
    return tensorFloats(t)[0];
  }
}

const near = (a: number | undefined, b: number, tol = 1e-4) => a !== undefined && Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

/** A copy of `model` that the IMX500 toolchain takes; outputs equal the input model's (see the header). */
export function makeImx500Compatible(input: ModelProto, options: Imx500Options = {}): ModelProto {
  const batch = options.batch ?? 1;
  if (batch !== 'dynamic' && !(Number.isInteger(batch) && batch >= 1)) throw new TypeError(`batch must be 'dynamic' or a positive integer, got ${batch}`);
  const model = cloneModel(input);
  const g = model.graph;
  const fused = g.node.find((n) => FUSED_ATTENTION.has(n.opType));
  if (fused) {
    throw new Error(`makeImx500Compatible: fused attention op '${fused.opType}' (${fused.name}) cannot be decomposed here; ` +
      "export from penny-train's graph IR, which writes attention as MatMul/Softmax");
  }
  if (batch !== 'dynamic') fixBatch(model, batch);

  const rw = new Rewriter(model);
  const consumers = new Map<string, NodeProto[]>();
  const producer = new Map<string, NodeProto>();
  for (const n of g.node) {
    n.output.forEach((o) => producer.set(o, n));
    for (const x of n.input) if (x) consumers.set(x, [...(consumers.get(x) ?? []), n]);
  }
  const dropped = new Set<NodeProto>();
  const only = (t: string) => { const c = consumers.get(t) ?? []; return c.length === 1 ? c[0] : undefined; };
  const other = (n: NodeProto, x: string) => (n.input[0] === x ? n.input[1] : n.input[1] === x ? n.input[0] : undefined);

  /** 0.5 x (1 + erf(x / sqrt2)) as emitOnnx (and torch.onnx) write it: Div|Mul -> Erf -> Add 1 -> Mul x -> Mul 0.5, or Mul 0.5 -> Mul x */
  const matchErfGelu = (erf: NodeProto) => {
    const pre = producer.get(erf.input[0]);
    if (!pre || (consumers.get(pre.output[0]) ?? []).length !== 1 || rw.out[rw.out.length - 1] !== pre) return undefined;
    let x: string;
    if (pre.opType === 'Div' && near(rw.constFloat(pre.input[1]), Math.SQRT2)) x = pre.input[0];
    else if (pre.opType === 'Mul' && near(rw.constFloat(pre.input[1]), Math.SQRT1_2)) x = pre.input[0];
    else if (pre.opType === 'Mul' && near(rw.constFloat(pre.input[0]), Math.SQRT1_2)) x = pre.input[1];
    else return undefined;
    const add = only(erf.output[0]);
    if (!add || add.opType !== 'Add' || !near(rw.constFloat(other(add, erf.output[0]) ?? ''), 1)) return undefined;
    const m1 = only(add.output[0]);
    if (!m1 || m1.opType !== 'Mul') return undefined;
    const o = other(m1, add.output[0]);
    const last = only(m1.output[0]);
    if (!last || last.opType !== 'Mul' || o === undefined) return undefined;
    const lastOther = other(last, m1.output[0]);
    const ok = (o === x && near(rw.constFloat(lastOther ?? ''), 0.5)) || (near(rw.constFloat(o), 0.5) && lastOther === x);
    return ok ? { x, pre, drop: [add, m1, last], out: last.output[0] } : undefined;
  };

  /** x * sigmoid(1.5957691 (x + 0.044715 x^3)) into `out` */
  const geluTanh = (x: string, out: string, base: string) => {
    const x2 = rw.node('Mul', [x, x], null, base);
    const x3 = rw.node('Mul', [x2, x], null, base);
    const inner = rw.node('Add', [x, rw.node('Mul', [x3, rw.scalar(0.044715)], null, base)], null, base);
    const s = rw.node('Sigmoid', [rw.node('Mul', [inner, rw.scalar(2 * Math.sqrt(2 / Math.PI))], null, base)], null, base);
    rw.node('Mul', [x, s], out, base);
  };

  for (const n of g.node) {
    if (dropped.has(n)) continue;
    const base = n.name || n.output[0];
    switch (n.opType) {
      case 'LayerNormalization': {
        const axis = getAttr(n, 'axis')?.i ?? -1;
        if (axis !== -1) throw new Error(`makeImx500Compatible: LayerNormalization '${base}' over axis ${axis}; only the last axis (-1) is decomposed`);
        if (n.output.length > 1 && n.output.slice(1).some((o) => o)) throw new Error(`makeImx500Compatible: LayerNormalization '${base}' has Mean/InvStdDev outputs`);
        const eps = getAttr(n, 'epsilon')?.f ?? 1e-5;
        const [x, scale, bias] = n.input;
        const mean = rw.node('ReduceMean', [x], null, base, [attrInts('axes', [-1]), { name: 'keepdims', type: 2, i: 1 }]);
        const d = rw.node('Sub', [x, mean], null, base);
        const v = rw.node('ReduceMean', [rw.node('Mul', [d, d], null, base)], null, base, [attrInts('axes', [-1]), { name: 'keepdims', type: 2, i: 1 }]);
        const std = rw.node('Sqrt', [rw.node('Add', [v, rw.scalar(eps)], null, base)], null, base);
        const y = rw.node('Mul', [rw.node('Div', [d, std], null, base), scale], bias ? null : n.output[0], base);
        if (bias) rw.node('Add', [y, bias], n.output[0], base);
        continue;
      }
      case 'Gelu': case 'FastGelu': case 'BiasGelu': {
        let x = n.input[0];
        if (n.input[1]) x = rw.node('Add', [x, n.input[1]], null, base);   // BiasGelu / FastGelu bias
        geluTanh(x, n.output[0], base);
        continue;
      }
      case 'QuickGelu': {
        const alpha = getAttr(n, 'alpha')?.f ?? 1.702;
        const s = rw.node('Sigmoid', [rw.node('Mul', [n.input[0], rw.scalar(alpha)], null, base)], null, base);
        rw.node('Mul', [n.input[0], s], n.output[0], base);
        continue;
      }
      case 'Pow': {
        const e = rw.constFloat(n.input[1]);
        if (e === 2) { rw.node('Mul', [n.input[0], n.input[0]], n.output[0], base); continue; }
        break;
      }
      case 'Erf': {
        const m = matchErfGelu(n);
        if (!m) throw new Error(`makeImx500Compatible: Erf '${base}' is not part of a GELU; the IMX500 converter takes no Erf`);
        rw.out.splice(rw.out.indexOf(m.pre), 1);   // x / sqrt2, emitted just before
        for (const d of m.drop) dropped.add(d);
        geluTanh(m.x, m.out, base);
        continue;
      }
    }
    rw.out.push(n);
  }
  g.node = rw.out;
  foldConstants(model);
  pruneDeadNodes(g);
  const left = g.node.find((nd) => nd.opType === 'LayerNormalization' || nd.opType === 'Erf' || /Gelu$/.test(nd.opType));
  if (left) throw new Error(`makeImx500Compatible: '${left.opType}' left after the pass`);
  model.metadataProps = [...model.metadataProps.filter((p) => p.key !== 'imx500_compatible'), { key: 'imx500_compatible', value: 'true' }];
  return model;
}

/** Sets the input and output batch dims, and drops the class-token broadcast (Shape -> Concat -> Expand) at batch 1. */
function fixBatch(model: ModelProto, batch: number): void {
  const g = model.graph;
  for (const vi of [...g.input, ...g.output]) {
    const dim = vi.type?.tensorType?.shape?.dim;
    if (dim?.length && dim[0].dimParam) dim[0] = { dimValue: batch };
  }
  if (batch !== 1) return;
  const init = new Map(g.initializer.map((t) => [t.name, t]));
  const producer = new Map<string, NodeProto>();
  for (const n of g.node) n.output.forEach((o) => producer.set(o, n));
  const rename = new Map<string, string>();
  g.node = g.node.filter((n) => {
    if (n.opType !== 'Expand') return true;
    // Expand(t, Concat(Shape(ref)[0:1], ones)) at batch 1 is t when t's leading dim is 1 and the rest are ones
    const cat = producer.get(n.input[1]);
    if (!cat || cat.opType !== 'Concat') return true;
    const shape = producer.get(cat.input[0]);
    if (!shape || shape.opType !== 'Shape' || (getAttr(shape, 'end')?.i ?? 0) !== 1 || !g.input.some((i) => i.name === shape.input[0])) return true;
    if (!cat.input.slice(1).every((c) => init.has(c) && tensorInts(init.get(c)!).every((v) => v === 1))) return true;
    rename.set(n.output[0], n.input[0]);
    return false;
  });
  const resolve = (x: string): string => (rename.has(x) ? resolve(rename.get(x)!) : x);
  for (const n of g.node) n.input = n.input.map(resolve);
}

/** Folds Reshape / Identity of initializers into initializers. */
function foldConstants(model: ModelProto): void {
  const g = model.graph;
  const init = new Map(g.initializer.map((t) => [t.name, t]));
  const outputs = new Set(g.output.map((o) => o.name));
  g.node = g.node.filter((n) => {
    if ((n.opType !== 'Reshape' && n.opType !== 'Identity') || outputs.has(n.output[0])) return true;
    const t = init.get(n.input[0]);
    if (!t || t.dataType !== DataType.FLOAT) return true;
    let dims = t.dims;
    if (n.opType === 'Reshape') {
      const s = init.get(n.input[1]);
      if (!s) return true;
      const target = tensorInts(s);
      const out = target.map((d, i) => (d === 0 ? t.dims[i] : d));
      const k = out.indexOf(-1);
      if (k >= 0) out[k] = numel(t.dims) / numel(out.filter((d) => d !== -1));
      dims = out;
    }
    const folded = floatTensor(n.output[0], dims, tensorFloats(t));
    g.initializer.push(folded);
    init.set(folded.name, folded);
    return false;
  });
}

/**
 * The most activation memory the graph holds at once for one image at int8 (one byte a value): walking the nodes in
 * order, each value lives from the node that makes it to its last reader (as the interpreters free them); the input
 * counts. An estimate of what the sensor's working memory must hold beside the weights.
 */
export function peakActivationBytes(graph: Graph): number {
  const shapes = inferShapes(graph, 1);
  const lowered = lowerGraph(graph);
  const size = (name: string) => (shapes.get(name) ?? []).reduce<number>((a, d) => a * (d ?? 1), 1);
  const bySlot = new Map<number, number>([[lowered.inputSlot, size(graph.input)]]);
  let live = bySlot.get(lowered.inputSlot)!, peak = live;
  graph.nodes.forEach((n, i) => {
    const out = size(n.output);
    bySlot.set(lowered.nodes[i].output, out);
    live += out;
    peak = Math.max(peak, live);
    for (const r of lowered.nodes[i].release) live -= bySlot.get(r) ?? 0;
  });
  return peak;
}

export interface Imx500Report {
  /** op type -> count in the graph */
  opTypes: Record<string, number>;
  /** weights and biases (initializers that are not shapes, scalars or quantization parameters) */
  parameters: number;
  /** the parameters at one byte each */
  int8WeightBytes: number;
  /** peakActivationBytes of the model's graph, when given */
  int8ActivationBytes?: number;
  memoryBytes: number;
  fits: boolean;
  /** op types outside IMX500_OPS */
  unsupportedOps: string[];
  /** one plain sentence on whether it fits */
  statement: string;
  /** the printable report */
  text: string;
}

const mb = (b: number) => `${(b / (1024 * 1024)).toFixed(1)} MB`;

/** The report; with `activationBytes` (peakActivationBytes), weights and activations together must fit. */
export function imx500Report(model: ModelProto, activationBytes?: number): Imx500Report {
  const g = model.graph;
  const qdq = new Set(['QuantizeLinear', 'DequantizeLinear']);
  const init = new Map(g.initializer.map((t) => [t.name, t]));
  // Weights: float initializers that compute nodes read, and the integer data of quantized ones (DequantizeLinear's
  // input 0, MatMulInteger / ConvInteger's B); never scales or zero points (by position, and by the _scale /
  // _zero_point names quantizers give those), shapes (int64) or scalars.
  const intData: Record<string, number> = { DequantizeLinear: 0, MatMulInteger: 1, ConvInteger: 1 };
  const params = new Set<string>();
  for (const n of g.node) {
    n.input.forEach((x, i) => {
      const t = init.get(x);
      if (!t || t.dims.length === 0 || t.dataType === DataType.INT64 || /_(scale|zero_point)$/.test(x)) return;
      if (t.dataType === DataType.FLOAT ? !qdq.has(n.opType) : intData[n.opType] === i) params.add(x);
    });
  }
  let parameters = 0;
  for (const p of params) parameters += numel(init.get(p)!.dims);
  const opTypes = opHistogram(model);
  const unsupportedOps = Object.keys(opTypes).filter((k) => !IMX500_OPS.has(k));
  const int8WeightBytes = parameters;
  const total = int8WeightBytes + (activationBytes ?? 0);
  const what = activationBytes === undefined ? 'int8 weights' : 'int8 weights and activations';
  const fits = total <= IMX500_MEMORY_BYTES;
  const statement = fits
    ? `The ${what} (${mb(total)}) fit the IMX500's ${mb(IMX500_MEMORY_BYTES)} on-sensor memory.`
    : `This model cannot fit on the IMX500: its ${what} need ${mb(total)}, the sensor holds ${mb(IMX500_MEMORY_BYTES)} ` +
      `(${(total / IMX500_MEMORY_BYTES).toFixed(1)}x too large); a smaller backbone is needed.`;
  const text = [
    'IMX500 report',
    `  op types: ${Object.entries(opTypes).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  parameters: ${parameters.toLocaleString('en-US')}`,
    `  int8 weight size: ${mb(int8WeightBytes)} of ${mb(IMX500_MEMORY_BYTES)} on-sensor memory`,
    ...(activationBytes === undefined ? [] : [`  int8 activations, most alive at once (one image): ${mb(activationBytes)}`]),
    unsupportedOps.length ? `  ops the IMX500 toolchain does not take: ${unsupportedOps.join(', ')}` : '  every op is one the IMX500 toolchain takes',
    `  ${statement}`,
  ].join('\n');
  return { opTypes, parameters, int8WeightBytes, ...(activationBytes !== undefined && { int8ActivationBytes: activationBytes }), memoryBytes: IMX500_MEMORY_BYTES, fits, unsupportedOps, statement, text };
}
