// fp32 ONNX export: lowers every node of the graph IR (src/model/graph.ts) to ONNX opset 17 ops (onnx-ops.ts), the
// parameters as initializers. The IR carries no shapes, so the op table's shape rules run alongside (the batch is the
// one symbolic dim).
import type { Floats } from '../backend/types.js';
import type { Graph, OutputName } from '../model/graph.js';
import type { PennyModel } from '../model/model.js';
import { writeFileAtomicSync } from '../util/atomic.js';
import { foldBatchNorms } from './fold.js';
import { outputShape, type Shape } from '../model/ops.js';
import { lowerNode, OnnxBuilder } from './onnx-ops.js';
import { DataType, encodeModel, tensorValueInfo, type ModelProto } from './onnx-proto.js';

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
    try {
      shapes.set(n.output, outputShape(n.op, ins, n.attrs));
    } catch (e) {
      if (e instanceof Error) e.message = `node '${n.output}': ${e.message}`;
      throw e;
    }
  }
  return shapes;
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
