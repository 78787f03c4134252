// Runs an exported model in onnxruntime-node and compares it with reference logits (the native model's predict()).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { Floats } from '../backend/types.js';
import { argmaxRow } from '../train/metrics.js';
import { encodeModel, opHistogram, readModel, type ModelProto } from './onnx-proto.js';
import { INPUT_NAME, OUTPUT_NAME } from './onnx.js';

export type OnnxSource = string | Uint8Array | ModelProto | ort.InferenceSession;

export interface SessionOptions {
  /** intra-op threads; default onnxruntime's (the machine's cores) */
  threads?: number;
  /** default 'all' */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /** onnxruntime writes the optimized graph here (which kernels it fused into), for inspection */
  optimizedModelFilePath?: string;
  /**
   * false: idle intra-op threads sleep instead of spinning (onnxruntime's default is to spin), for sessions that share
   * the CPU with other work, as prediction's do with its image decoding
   */
  spin?: boolean;
}

function isSession(x: OnnxSource): x is ort.InferenceSession {
  return typeof (x as ort.InferenceSession).run === 'function';
}

/** An onnxruntime-node CPU session over a path, serialised bytes or an in-memory ModelProto. */
export async function createSession(model: Exclude<OnnxSource, ort.InferenceSession>, options: SessionOptions = {}): Promise<ort.InferenceSession> {
  const opts: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
    ...(options.threads ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
    ...(options.optimizedModelFilePath ? { optimizedModelFilePath: options.optimizedModelFilePath } : {}),
    ...(options.spin === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
  };
  try {
    if (typeof model === 'string') return await ort.InferenceSession.create(model, opts);
    const bytes = model instanceof Uint8Array ? model : encodeModel(model);
    return await ort.InferenceSession.create(bytes, opts);
  } catch (e) {
    throw new Error(`onnxruntime could not load the model${typeof model === 'string' ? ` ${model}` : ''}: ${(e as Error).message}`, { cause: e });
  }
}

/** Logits of `pixels` [b, 3, H, W] (float32 row-major) from the model's `output`. */
export async function runOnnx(model: OnnxSource, pixels: Floats, shape: number[], options: SessionOptions = {}): Promise<Float32Array> {
  const session = isSession(model) ? model : await createSession(model, options);
  const data = pixels instanceof Float32Array ? pixels : Float32Array.from(pixels);
  const expected = shape.reduce((a, b) => a * b, 1);
  if (data.length !== expected) throw new TypeError(`pixels has ${data.length} values but shape ${JSON.stringify(shape)} needs ${expected}`);
  try {
    const out = await session.run({ [INPUT_NAME]: new ort.Tensor('float32', data, shape) });
    const t = out[OUTPUT_NAME] ?? out[session.outputNames[0]];
    return t.data as Float32Array;
  } finally {
    if (!isSession(model)) await session.release();
  }
}

export interface ParityResult {
  maxAbsDiff: number;
  /** onnxruntime's logits */
  logits: Float32Array;
}

/** Runs the .onnx on a batch and returns the largest absolute difference from `reference` (same layout). */
export async function onnxParity(model: OnnxSource, pixels: Floats, shape: number[], reference: Floats, options: SessionOptions = {}): Promise<ParityResult> {
  const logits = await runOnnx(model, pixels, shape, options);
  if (logits.length !== reference.length) {
    throw new Error(`onnx parity: onnxruntime gave ${logits.length} logits, the reference has ${reference.length}`);
  }
  let maxAbsDiff = 0;
  for (let i = 0; i < logits.length; i++) {
    const d = Math.abs(logits[i] - reference[i]);
    if (!(d <= maxAbsDiff)) maxAbsDiff = Number.isNaN(d) ? Infinity : d;
  }
  return { maxAbsDiff, logits };
}

/** Top-1 agreement of two logit sets [n, classes]: the fraction of rows whose argmax is the same. */
export function top1Agreement(a: ArrayLike<number>, b: ArrayLike<number>, classes: number): number {
  if (a.length !== b.length || a.length % classes !== 0) throw new Error(`top1Agreement: lengths ${a.length} and ${b.length} for ${classes} classes`);
  const rows = a.length / classes;
  let same = 0;
  for (let r = 0; r < rows; r++) if (argmaxRow(a, r * classes, classes) === argmaxRow(b, r * classes, classes)) same++;
  return rows ? same / rows : 1;
}

/**
 * Op types of the graph onnxruntime actually runs (after its graph optimizations, e.g. QDQ -> QLinearConv /
 * MatMulIntegerToFloat / QGemm): shows whether a quantized model runs integer kernels or falls back to float.
 */
export async function onnxruntimeOpTypes(model: Exclude<OnnxSource, ort.InferenceSession>, level: 'basic' | 'extended' = 'extended'): Promise<Record<string, number>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-ort-'));
  try {
    const file = path.join(dir, 'optimized.onnx');
    const session = await createSession(model, { graphOptimizationLevel: level, optimizedModelFilePath: file });
    await session.release();
    return opHistogram(readModel(file));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
