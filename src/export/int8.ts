// INT8 post-training quantization as a pass on the ONNX graph.
//
// static (default): QDQ form, the layout onnxruntime's QDQ transformers fuse into integer kernels. Weights of
//   Conv / MatMul / Gemm: symmetric int8 (zero point 0), per output channel, in 7 bits by default (reduceRange, below);
//   biases of Conv / Gemm: int32 at scale x_scale * w_scale (what QLinearConv / QGemm take). Activations (the float
//   input of those ops, and the outputs of Conv, which QLinearConv needs): per-tensor asymmetric uint8, the U8S8 pair
//   onnxruntime's CPU kernels prefer; a Conv is quantized after the Relu that alone reads it (its range starts at 0,
//   so all 256 levels serve values the next layer sees; onnxruntime folds Relu -> QuantizeLinear into the Q). Ranges
//   are calibrated by running an augmented copy of the fp32 model (the tensors as extra outputs) in onnxruntime-node:
//   min-max, or percentile of a histogram (second pass over the same batches). Left float: a Conv with no Relu after
//   it keeps float activations (int8 weights through DequantizeLinear), and activation x activation MatMuls stay
//   float (quantizeStatic says why).
// dynamic: MatMul / Gemm as DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(x_scale * w_scale) (-> Add bias),
//   which onnxruntime fuses into DynamicQuantizeMatMul; int8 per-column weights. Conv weights are int8 + a
//   DequantizeLinear (weight-only). No calibration.
import ort from 'onnxruntime-node';
import {
  attrInt, cloneModel, DataType, floatTensor, getAttr, int32Tensor, int8Tensor, pruneDeadNodes, tensorFloats,
  uint8Tensor, uniqueName, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto,
} from './onnx-proto.js';
import { createSession } from './parity.js';
import { INPUT_NAME } from './onnx.js';

export type QuantizeMode = 'static' | 'dynamic';
export type CalibrationMethod = 'minmax' | 'percentile';

export interface CalibrationBatch {
  /** normalised images, float32 row-major */
  data: Float32Array;
  /** [b, 3, H, W] */
  shape: number[];
}

/** Static quantization refuses fewer calibration images than this by default. */
export const MIN_CALIBRATION_SAMPLES = 16;

export interface Int8Options {
  mode?: QuantizeMode;
  /** static: the calibration images (iterated once, or twice for 'percentile'; kept in memory meanwhile) */
  calibration?: Iterable<CalibrationBatch> | AsyncIterable<CalibrationBatch>;
  /** default 'minmax' */
  method?: CalibrationMethod;
  /** percentile of each activation's distribution kept (both tails); default 99.999 */
  percentile?: number;
  /** static quantization refuses fewer calibration images than this; default 16 */
  minCalibrationSamples?: number;
  /** per-output-channel weight scales (default true); false: one scale per weight tensor */
  perChannel?: boolean;
  /**
   * Weights in [-63, 63] instead of [-127, 127] (default true). onnxruntime's U8S8 kernels on x86 CPUs with AVX2 but
   * no VNNI multiply with vpmaddubsw, which saturates a pair of u8 x s8 products at 32767: 255 * 127 * 2 overflows,
   * 255 * 63 * 2 does not. Measured on this project's orientation model (AVX2 machine): top-1 agreement with fp32
   * 64% at 8 bits, 91% at 7. Set false only for runtimes without the problem (VNNI, ARM).
   */
  reduceRange?: boolean;
  /** static: also quantize MatMul / Gemm outputs (QLinearMatMul instead of MatMulIntegerToFloat); default false */
  quantizeMatMulOutputs?: boolean;
  /** onnxruntime threads for calibration */
  threads?: number;
  /** histogram bins for 'percentile'; default 2048 */
  bins?: number;
}

export interface Int8Stats {
  mode: QuantizeMode;
  method: CalibrationMethod | null;
  calibrationSamples: number;
  /** quantized nodes by op type */
  quantizedNodes: Record<string, number>;
  /** activation tensors with a calibrated scale */
  activations: number;
  weightBytesInt8: number;
  weightBytesFloat: number;
}

export interface Int8Result {
  model: ModelProto;
  stats: Int8Stats;
}

const QUANTIZED_OPS = new Set(['Conv', 'MatMul', 'Gemm']);

interface Range { min: number; max: number }
interface QParams { scale: number; zeroPoint: number }

/** uint8 asymmetric per-tensor parameters of a range (0 always representable), as onnxruntime's quantizer computes them. */
export function uint8Params({ min, max }: Range): QParams {
  const lo = Math.min(0, min), hi = Math.max(0, max);
  let scale = (hi - lo) / 255;
  if (!(scale > 0) || !Number.isFinite(scale)) scale = 1;
  const zeroPoint = Math.max(0, Math.min(255, Math.round(-lo / scale)));
  return { scale: Math.fround(scale), zeroPoint };
}

interface QuantizedWeight { q: Int8Array; scales: Float32Array }

/**
 * Symmetric int8 ([-qmax, qmax], zero point 0) of `w` with shape `dims`, one scale per index of `axis`
 * (or a single scale when axis is null).
 */
export function quantizeWeightInt8(w: Float32Array, dims: number[], axis: number | null, qmax = 127): QuantizedWeight {
  const channels = axis === null ? 1 : dims[axis];
  const inner = axis === null ? w.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const chanOf = (i: number) => (axis === null ? 0 : Math.floor(i / inner) % channels);
  const absmax = new Float32Array(channels);
  for (let i = 0; i < w.length; i++) { const c = chanOf(i), a = Math.abs(w[i]); if (a > absmax[c]) absmax[c] = a; }
  const scales = absmax.map((m) => (m > 0 ? m / qmax : 1));
  const q = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) q[i] = Math.max(-qmax, Math.min(qmax, Math.round(w[i] / scales[chanOf(i)])));
  return { q, scales };
}

class GraphIndex {
  readonly init = new Map<string, TensorProto>();
  readonly consumers = new Map<string, { node: NodeProto; index: number }[]>();
  readonly producer = new Map<string, NodeProto>();

  constructor(readonly model: ModelProto) {
    for (const t of model.graph.initializer) this.init.set(t.name, t);
    for (const n of model.graph.node) {
      n.output.forEach((o) => this.producer.set(o, n));
      n.input.forEach((x, index) => {
        if (!x) return;
        if (!this.consumers.has(x)) this.consumers.set(x, []);
        this.consumers.get(x)!.push({ node: n, index });
      });
    }
  }

  /** The Relu's output where a Relu is the one reader of `t`, else `t`. */
  throughRelu(t: string): string {
    const readers = this.consumers.get(t) ?? [];
    return readers.length === 1 && readers[0].node.opType === 'Relu' ? readers[0].node.output[0] : t;
  }

  isFloatInit(name: string): boolean {
    const t = this.init.get(name);
    return !!t && t.dataType === DataType.FLOAT;
  }
}


function floatOutput(name: string): ValueInfoProto {
  return { name, type: { tensorType: { elemType: DataType.FLOAT, shape: undefined as never } } };
}

async function collect(calibration: Int8Options['calibration']): Promise<CalibrationBatch[]> {
  if (!calibration) return [];
  const out: CalibrationBatch[] = [];
  for await (const b of calibration as AsyncIterable<CalibrationBatch>) {
    if (!(b?.data instanceof Float32Array) || !Array.isArray(b.shape) || b.shape.length !== 4) {
      throw new TypeError('calibration batches must be { data: Float32Array, shape: [b, 3, H, W] }');
    }
    if (b.data.length !== b.shape.reduce((x, y) => x * y, 1)) throw new TypeError(`calibration batch: ${b.data.length} values for shape ${JSON.stringify(b.shape)}`);
    out.push(b);
  }
  return out;
}

/** Runs the model with `tensors` as extra outputs over every batch, calling `visit` with each tensor's values. */
async function runAugmented(model: ModelProto, tensors: string[], batches: CalibrationBatch[], threads: number | undefined,
  visit: (name: string, values: Float32Array) => void): Promise<void> {
  const aug = cloneModel(model);
  const outputs = new Set(aug.graph.output.map((o) => o.name));
  for (const t of tensors) if (!outputs.has(t)) aug.graph.output.push(floatOutput(t));
  // 'basic' keeps every tensor the calibration reads (no fusion may swallow one).
  const session = await createSession(aug, { threads, graphOptimizationLevel: 'basic' });
  try {
    const inputName = session.inputNames[0] ?? INPUT_NAME;
    const fixed = model.graph.input[0]?.type?.tensorType?.shape?.dim?.[0]?.dimValue;
    for (const b of fixed ? rebatch(batches, fixed) : batches) {
      const res = await session.run({ [inputName]: new ort.Tensor('float32', b.data, b.shape) });
      for (const t of tensors) visit(t, res[t].data as Float32Array);
    }
  } finally {
    await session.release();
  }
}

/** The same images in batches of exactly `n` (a model with a fixed batch, e.g. after makeImx500Compatible); a remainder is dropped. */
function rebatch(batches: CalibrationBatch[], n: number): CalibrationBatch[] {
  if (batches.every((b) => b.shape[0] === n)) return batches;
  const per = batches[0].data.length / batches[0].shape[0];
  const all = batches.flatMap((b) => Array.from({ length: b.shape[0] }, (_, i) => b.data.subarray(i * per, (i + 1) * per)));
  const out: CalibrationBatch[] = [];
  for (let i = 0; i + n <= all.length; i += n) {
    const data = new Float32Array(n * per);
    for (let j = 0; j < n; j++) data.set(all[i + j], j * per);
    out.push({ data, shape: [n, ...batches[0].shape.slice(1)] });
  }
  return out;
}

async function calibrate(model: ModelProto, tensors: string[], batches: CalibrationBatch[], options: Int8Options): Promise<Map<string, Range>> {
  const ranges = new Map<string, Range>(tensors.map((t) => [t, { min: Infinity, max: -Infinity }]));
  await runAugmented(model, tensors, batches, options.threads, (t, v) => {
    const r = ranges.get(t)!;
    let { min, max } = r;
    for (let i = 0; i < v.length; i++) { const x = v[i]; if (x < min) min = x; if (x > max) max = x; }
    r.min = min; r.max = max;
  });
  for (const [t, r] of ranges) {
    if (!Number.isFinite(r.min) || !Number.isFinite(r.max)) throw new Error(`calibration: tensor '${t}' has non-finite values (range ${r.min}..${r.max})`);
  }
  if ((options.method ?? 'minmax') === 'minmax') return ranges;

  const p = options.percentile ?? 99.999;
  if (!(p > 50 && p <= 100)) throw new RangeError(`percentile must be in (50, 100], got ${p}`);
  const bins = options.bins ?? 2048;
  const hist = new Map<string, Float64Array>(tensors.map((t) => [t, new Float64Array(bins)]));
  await runAugmented(model, tensors, batches, options.threads, (t, v) => {
    const { min, max } = ranges.get(t)!, h = hist.get(t)!;
    const k = max > min ? bins / (max - min) : 0;
    for (let i = 0; i < v.length; i++) h[Math.min(bins - 1, Math.floor((v[i] - min) * k))]++;
  });
  const out = new Map<string, Range>();
  for (const [t, { min, max }] of ranges) {
    const h = hist.get(t)!;
    const total = h.reduce((a, b) => a + b, 0);
    const tail = total * (1 - p / 100);
    const width = (max - min) / bins;
    let lo = 0, acc = 0;
    while (lo < bins - 1 && acc + h[lo] <= tail) acc += h[lo++];
    let hi = bins - 1; acc = 0;
    while (hi > lo && acc + h[hi] <= tail) acc += h[hi--];
    out.set(t, { min: min + lo * width, max: min + (hi + 1) * width });
  }
  return out;
}

/** The weight's output-channel axis for per-channel scales. */
/**
 * Whether a Conv's int8 weights still give a flat input (nearly) the response its float weights give: each output
 * channel's kernel sum within 1% of the kernel's absolute sum. A high-pass filter (cnn_small_relief's: 0.96 at the
 * centre, -0.04 around, summing to 0) fails: rounding the small taps leaves ~7% of the raw image in what should be
 * relief alone, and the int8 side model fell to 12% accuracy. Such a Conv stays float.
 */
function keepsFlatResponse(n: NodeProto, idx: GraphIndex, perChannel: boolean, qmax: number): boolean {
  const t = idx.init.get(n.input[1]);
  if (!t || t.dataType !== DataType.FLOAT) return true;
  const w = tensorFloats(t);
  const { q, scales } = quantizeWeightInt8(w, t.dims, perChannel ? 0 : null, qmax);
  const channels = t.dims[0], inner = w.length / channels;
  for (let c = 0; c < channels; c++) {
    let sum = 0, qsum = 0, l1 = 0;
    for (let i = c * inner; i < (c + 1) * inner; i++) {
      sum += w[i];
      qsum += q[i] * scales[perChannel ? c : 0];
      l1 += Math.abs(w[i]);
    }
    if (Math.abs(qsum - sum) > 0.01 * l1) return false;
  }
  return true;
}

function weightAxis(node: NodeProto): number {
  if (node.opType === 'Conv') return 0;
  if (node.opType === 'Gemm') return (getAttr(node, 'transB')?.i ?? 0) ? 0 : 1;
  return 1;   // MatMul B [K, N]: per column
}

/** Quantizes an fp32 ONNX model (from emitOnnx / makeImx500Compatible) to int8. The input model is not modified. */
export async function quantizeInt8(fp32: ModelProto, options: Int8Options = {}): Promise<Int8Result> {
  const mode = options.mode ?? 'static';
  if (mode !== 'static' && mode !== 'dynamic') throw new TypeError(`mode must be 'static' or 'dynamic', got '${mode as string}'`);
  const method = options.method ?? 'minmax';
  if (method !== 'minmax' && method !== 'percentile') throw new TypeError(`method must be 'minmax' or 'percentile', got '${method as string}'`);
  const model = cloneModel(fp32);
  if (model.graph.node.some((n) => n.opType === 'QuantizeLinear' || n.opType === 'DynamicQuantizeLinear')) {
    throw new Error('quantizeInt8: the model is already quantized');
  }
  return mode === 'static' ? quantizeStatic(model, method, options) : quantizeDynamic(model, options);
}

/** Installs the rewritten node list and new initializers, drops what no longer feeds an output, and sums up. */
function finish(model: ModelProto, order: NodeProto[], newInit: TensorProto[],
  stats: Omit<Int8Stats, 'weightBytesInt8' | 'weightBytesFloat'>): Int8Result {
  const g = model.graph;
  g.node = order;
  g.initializer.push(...newInit);
  pruneDeadNodes(g);
  const ws = weightStats(model);
  return { model, stats: { ...stats, weightBytesInt8: ws.int8, weightBytesFloat: ws.float } };
}

function weightStats(model: ModelProto): { int8: number; float: number } {
  let int8 = 0, float = 0;
  for (const t of model.graph.initializer) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (t.dataType === DataType.INT8 || t.dataType === DataType.UINT8) int8 += n;
    else if (t.dataType === DataType.FLOAT && n > 1) float += 4 * n;
  }
  return { int8, float };
}

async function quantizeStatic(model: ModelProto, method: CalibrationMethod, options: Int8Options): Promise<Int8Result> {
  const batches = await collect(options.calibration);
  const samples = batches.reduce((n, b) => n + b.shape[0], 0);
  const minSamples = options.minCalibrationSamples ?? MIN_CALIBRATION_SAMPLES;
  if (samples < minSamples) {
    throw new Error(`static int8 quantization needs at least ${minSamples} calibration images, got ${samples}; ` +
      'give more (calibration_samples) or use quantize_mode: dynamic');
  }
  const g = model.graph;
  const idx = new GraphIndex(model);
  const perChannel = options.perChannel ?? true;
  const qmax = options.reduceRange ?? true ? 63 : 127;
  // An activation x activation MatMul (attention's scores, and their product with V) stays float: it has no weights to
  // shrink, is ~1% of ViT-B/32's work, and per-tensor scales on its inputs (Q and K outliers, softmax peaks) moved a
  // trained clip_vit_tiny's top-1 most after the patch embedding's (held-out agreement 98.2% -> 99.6% without them).
  const targets = g.node.filter((n) => QUANTIZED_OPS.has(n.opType) && (n.opType !== 'Gemm' || !getAttr(n, 'transA')?.i) &&
    (n.opType !== 'MatMul' || idx.isFloatInit(n.input[1])) && (n.opType !== 'Conv' || keepsFlatResponse(n, idx, perChannel, qmax)));
  const graphOutputs = new Set(g.output.map((o) => o.name));
  // A Conv whose output no Relu alone reads (a ViT's patch embedding: signed, with outliers, LayerNorm next) reads its
  // int8 weights through DequantizeLinear, its activations float: a per-tensor uint8 scale on that output moved the
  // tiny's logits most (agreement 96.4% -> 98.2% without it); it is ~3% of ViT-B/32's work.
  const weightOnly = (n: NodeProto) => n.opType === 'Conv' && idx.throughRelu(n.output[0]) === n.output[0];

  // Activations to calibrate: the data input of each target but a weight-only Conv, Conv outputs (QLinearConv; after
  // the Relu that alone reads one), and optionally MatMul/Gemm outputs; never a graph output (the logits stay float).
  const acts = new Set<string>();
  for (const n of targets) {
    if (weightOnly(n)) continue;
    if (n.input[0] && !idx.init.has(n.input[0])) acts.add(n.input[0]);
    if (n.opType === 'Conv' || options.quantizeMatMulOutputs) {
      const out = idx.throughRelu(n.output[0]);
      if (!graphOutputs.has(out)) acts.add(out);
    }
  }
  const ranges = await calibrate(model, [...acts], batches, options);

  const taken = new Set<string>([...g.node.flatMap((n) => [...n.input, ...n.output]), ...g.initializer.map((t) => t.name), INPUT_NAME]);
  const newInit: TensorProto[] = [];
  const qparams = new Map<string, QParams>();
  const dqName = new Map<string, string>();
  const qdqAfter = new Map<string, NodeProto[]>();   // tensor -> its Q/DQ nodes (placed after its producer)
  for (const t of acts) {
    const qp = uint8Params(ranges.get(t)!);
    qparams.set(t, qp);
    const s = uniqueName(`${t}_scale`, taken), z = uniqueName(`${t}_zero_point`, taken);
    newInit.push(floatTensor(s, [], Float32Array.of(qp.scale)), uint8Tensor(z, [], Uint8Array.of(qp.zeroPoint)));
    const q = uniqueName(`${t}_quantized`, taken), dq = uniqueName(`${t}_dequantized`, taken);
    qdqAfter.set(t, [
      { opType: 'QuantizeLinear', input: [t, s, z], output: [q], name: uniqueName(`${t}_QuantizeLinear`, taken), attribute: [] },
      { opType: 'DequantizeLinear', input: [q, s, z], output: [dq], name: uniqueName(`${t}_DequantizeLinear`, taken), attribute: [] },
    ]);
    dqName.set(t, dq);
  }

  // Weights (and biases) of the targets.
  const weightDQ: NodeProto[] = [];
  const counts: Record<string, number> = {};
  const weightDone = new Map<string, { dq: string; scales: Float32Array }>();
  for (const n of targets) {
    const w = n.input[1];
    if (!w || !idx.isFloatInit(w)) continue;
    const axis = weightAxis(n);
    // weight-only: dequantized to float before the Conv, so no integer kernel to saturate: all 8 bits
    const levels = weightOnly(n) ? 127 : qmax;
    const key = `${w}@${axis}@${levels}`;
    let done = weightDone.get(key);
    if (!done) {
      const t = idx.init.get(w)!;
      const { q, scales } = quantizeWeightInt8(tensorFloats(t), t.dims, perChannel ? axis : null, levels);
      const qn = uniqueName(`${w}_quantized`, taken), sn = uniqueName(`${w}_scale`, taken), zn = uniqueName(`${w}_zero_point`, taken);
      const dq = uniqueName(`${w}_dequantized`, taken);
      const sc = perChannel ? scales : Float32Array.of(scales[0]);
      newInit.push(int8Tensor(qn, t.dims, q), floatTensor(sn, perChannel ? [sc.length] : [], sc), int8Tensor(zn, perChannel ? [sc.length] : [], new Int8Array(sc.length)));
      weightDQ.push({ opType: 'DequantizeLinear', input: [qn, sn, zn], output: [dq], name: uniqueName(`${w}_DequantizeLinear`, taken),
        attribute: perChannel ? [attrInt('axis', axis)] : [] });
      done = { dq, scales: sc };
      weightDone.set(key, done);
    }
    n.input[1] = done.dq;
    const bias = n.input[2];
    const xq = qparams.get(n.input[0]);
    if (bias && idx.isFloatInit(bias) && xq && (n.opType === 'Conv' || n.opType === 'Gemm')) {
      const b = tensorFloats(idx.init.get(bias)!);
      const bs = new Float32Array(b.length), bq = new Int32Array(b.length);
      for (let c = 0; c < b.length; c++) {
        bs[c] = Math.fround(xq.scale * done.scales[done.scales.length === 1 ? 0 : c]);
        bq[c] = Math.max(-2147483647, Math.min(2147483647, Math.round(b[c] / bs[c])));
      }
      const qn = uniqueName(`${bias}_quantized`, taken), sn = uniqueName(`${bias}_scale`, taken), zn = uniqueName(`${bias}_zero_point`, taken);
      const dq = uniqueName(`${bias}_dequantized`, taken);
      newInit.push(int32Tensor(qn, [b.length], bq), floatTensor(sn, [b.length], bs), int32Tensor(zn, [b.length], new Int32Array(b.length)));
      weightDQ.push({ opType: 'DequantizeLinear', input: [qn, sn, zn], output: [dq], name: uniqueName(`${bias}_DequantizeLinear`, taken), attribute: [attrInt('axis', 0)] });
      n.input[2] = dq;
    }
    counts[n.opType] = (counts[n.opType] ?? 0) + 1;
  }

  // Every reader of a quantized activation reads its DequantizeLinear (as onnxruntime's QDQ quantizer does).
  const qdqNodes = new Set([...qdqAfter.values()].flat());
  for (const n of g.node) n.input = n.input.map((x) => dqName.get(x) ?? x);
  const order: NodeProto[] = [...weightDQ];
  for (const [t, nodes] of qdqAfter) if (!idx.producer.has(t)) order.push(...nodes);   // graph inputs
  for (const n of g.node) {
    if (qdqNodes.has(n)) continue;
    order.push(n);
    for (const o of n.output) if (qdqAfter.has(o)) order.push(...qdqAfter.get(o)!);
  }
  return finish(model, order, newInit, { mode: 'static', method, calibrationSamples: samples, quantizedNodes: counts, activations: acts.size });
}

function quantizeDynamic(model: ModelProto, options: Int8Options): Int8Result {
  const g = model.graph;
  const idx = new GraphIndex(model);
  const perChannel = options.perChannel ?? true;
  const qmax = options.reduceRange ?? true ? 63 : 127;
  const taken = new Set<string>([...g.node.flatMap((n) => [...n.input, ...n.output]), ...g.initializer.map((t) => t.name), INPUT_NAME]);
  const newInit: TensorProto[] = [];
  const counts: Record<string, number> = {};
  const dynQ = new Map<string, { q: string; scale: string; zp: string }>();
  const order: NodeProto[] = [];
  const node = (opType: string, input: string[], output: string[], attribute: NodeProto['attribute'] = []) => {
    order.push({ opType, input, output, name: uniqueName(`${output[0]}_${opType}`, taken), attribute });
    return output[0];
  };
  const quantWeight = (w: string, dims: number[], values: Float32Array, axis: number) => {
    const { q, scales } = quantizeWeightInt8(values, dims, perChannel ? axis : null, qmax);
    const qn = uniqueName(`${w}_quantized`, taken), sn = uniqueName(`${w}_scale`, taken), zn = uniqueName(`${w}_zero_point`, taken);
    const n = perChannel ? scales.length : 1;
    newInit.push(int8Tensor(qn, dims, q), floatTensor(sn, perChannel ? [n] : [], perChannel ? scales : Float32Array.of(scales[0])),
      int8Tensor(zn, perChannel ? [n] : [], new Int8Array(n)));
    return { qn, sn, zn };
  };

  for (const n of g.node) {
    const w = n.input[1];
    const isGemm = n.opType === 'Gemm' && !getAttr(n, 'transA')?.i && (getAttr(n, 'alpha')?.f ?? 1) === 1 && (getAttr(n, 'beta')?.f ?? 1) === 1;
    if ((n.opType === 'MatMul' || isGemm) && w && idx.isFloatInit(w)) {
      // MatMulInteger needs B as [K, N]: Gemm's transB weight is transposed here.
      const t = idx.init.get(w)!;
      let dims = t.dims, values = tensorFloats(t);
      if (isGemm && getAttr(n, 'transB')?.i) {
        const [N, K] = dims, tr = new Float32Array(values.length);
        for (let r = 0; r < N; r++) for (let c = 0; c < K; c++) tr[c * N + r] = values[r * K + c];
        dims = [K, N]; values = tr;
      }
      const wq = quantWeight(w, dims, values, 1);
      const x = n.input[0];
      let dq = dynQ.get(x);
      if (!dq) {
        dq = { q: uniqueName(`${x}_quantized`, taken), scale: uniqueName(`${x}_scale`, taken), zp: uniqueName(`${x}_zero_point`, taken) };
        node('DynamicQuantizeLinear', [x], [dq.q, dq.scale, dq.zp]);
        dynQ.set(x, dq);
      }
      const out = n.output[0];
      const mmi = node('MatMulInteger', [dq.q, wq.qn, dq.zp, wq.zn], [uniqueName(`${out}_int32`, taken)]);
      const f = node('Cast', [mmi], [uniqueName(`${out}_cast`, taken)], [attrInt('to', DataType.FLOAT)]);
      const scale = node('Mul', [dq.scale, wq.sn], [uniqueName(`${out}_scale_product`, taken)]);
      const bias = isGemm ? n.input[2] : '';
      if (bias) node('Add', [node('Mul', [f, scale], [uniqueName(`${out}_unbiased`, taken)]), bias], [out]);
      else node('Mul', [f, scale], [out]);
      counts[n.opType] = (counts[n.opType] ?? 0) + 1;
      continue;
    }
    if (n.opType === 'Conv' && w && idx.isFloatInit(w) && keepsFlatResponse(n, idx, perChannel, qmax)) {
      const t = idx.init.get(w)!;
      const wq = quantWeight(w, t.dims, tensorFloats(t), 0);
      n.input[1] = node('DequantizeLinear', [wq.qn, wq.sn, wq.zn], [uniqueName(`${w}_dequantized`, taken)], perChannel ? [attrInt('axis', 0)] : []);
      counts.Conv = (counts.Conv ?? 0) + 1;
    }
    order.push(n);
  }
  return finish(model, order, newInit, { mode: 'dynamic', method: null, calibrationSamples: 0, quantizedNodes: counts, activations: 0 });
}
