// The tensor backends behind one door: the model layer names a backend and gets the contract (types.ts), nothing
// of how it runs. Both consume the graph IR (src/model/graph.ts, lower.ts).
import type { Graph } from '../model/graph.js';
import { checkJsDevice, JsBackend } from './js/backend.js';
import { checkDevice, NativeBackend, setNumThreads } from './native.js';
import type { Backend, DType } from './types.js';

export type BackendKind = Backend['kind'];

export interface BackendOptions {
  device: string;
  dtype: DType;
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

export function createBackend(kind: BackendKind, graph: Graph, options: BackendOptions): Backend {
  if (kind !== 'native' && kind !== 'js') throw new TypeError(`backend must be 'native' or 'js', got '${String(kind)}'`);
  if (options.threads !== undefined) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new TypeError(`threads must be a positive integer, got ${options.threads}`);
    if (kind === 'native') setNumThreads(options.threads);
  }
  const { device, dtype } = options;
  return kind === 'js' ? new JsBackend(graph, { device, dtype }) : new NativeBackend(graph, { device, dtype });
}
