// The tensor backends behind one door: the model layer names a backend and gets the contract (types.ts), nothing
// of how it runs. Both consume the graph IR (src/model/graph.ts, lower.ts).
import { UsageError } from '../errors.js';
import type { Graph } from '../model/graph.js';
import { cpuHasBf16 } from './cpu-features.js';
import { checkJsDevice, checkJsPrecision, JsBackend } from './js/backend.js';
import { checkDevice, NativeBackend, setNumThreads } from './native.js';
import type { Backend, DType, Precision } from './types.js';

export type BackendKind = Backend['kind'];

export interface BackendOptions {
  device: string;
  dtype: DType;
  /** default fp32; bf16 / fp16 autocast: native only */
  precision?: Precision;
  /** native: LibTorch's intra-op threads (process-wide); the JS backend is single-threaded */
  threads?: number;
}

/**
 * A UsageError when backend `kind` cannot run on `device`: the check each backend's constructor makes, for callers
 * that want it before any work (train() checks before reading the data).
 */
export function checkBackendDevice(kind: BackendKind, device: string): void {
  if (kind === 'js') checkJsDevice(device);
  else checkDevice(device);
}

/**
 * A UsageError when `precision` is not worth running with backend `kind` on `device`: lower precision is the native
 * backend's; on a CPU, bf16 only where it has bf16 instructions (measured on an AVX-512 BF16 CPU: ViT-B/32 train steps
 * ~2x fp32's speed; the same CPU with oneDNN held to AVX2, as on a CPU without them: 10-30x slower) and fp16 not at all
 * (its loss scaling is for CUDA's fp16 kernels). On CUDA both run.
 */
export function checkPrecision(kind: BackendKind, device: string, precision: Precision, hasBf16 = cpuHasBf16): void {
  if (kind === 'js') return checkJsPrecision(precision);
  if (precision === 'fp32' || device !== 'cpu') return;
  if (precision === 'fp16') throw new UsageError('precision fp16 is for CUDA devices; on the CPU use bf16 (where the CPU has bf16 instructions) or fp32');
  if (!hasBf16()) {
    throw new UsageError('precision bf16 on this CPU: it has no bf16 instructions (avx512_bf16, amx_bf16, Arm bf16), so LibTorch would ' +
      'emulate them, many times slower than fp32; use precision fp32 here');
  }
}

export function createBackend(kind: BackendKind, graph: Graph, options: BackendOptions): Backend {
  if (kind !== 'native' && kind !== 'js') throw new TypeError(`backend must be 'native' or 'js', got '${String(kind)}'`);
  if (options.threads !== undefined) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new TypeError(`threads must be a positive integer, got ${options.threads}`);
    if (kind === 'native') setNumThreads(options.threads);
  }
  const { device, dtype, precision } = options;
  return kind === 'js' ? new JsBackend(graph, { device, dtype, precision }) : new NativeBackend(graph, { device, dtype, precision });
}
