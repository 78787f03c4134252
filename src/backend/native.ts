// The native backend: a thin wrapper over the LibTorch addon (native/). Loading it finds the addon that
// `npm install` built, and says what to do when there is none.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { adamGroup, type Graph, type OutputName } from '../model/graph.js';
import { UsageError } from '../errors.js';
import { lowerGraph } from '../model/lower.js';
import type { AdamState, Backend, DType, Floats, OptimizerOptions, Precision, StepOptions } from './types.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ADDON = path.join(ROOT, 'build', 'Release', 'penny_native.node');

/** The addon's model: the Backend contract, with trainStep's options as an object. */
type NativeModel = Omit<Backend, 'kind'>;

/** How a model joins a group: its gradient buckets' sizes, and sync_bn. */
export interface GroupOptions {
  bucketBytes: number;
  firstBucketBytes: number;
  syncBn?: boolean;
}

/** The addon's c10d process group (native/distributed.cc): one per rank. */
export interface NativeGroup {
  connect(): Promise<void>;
  allreduce(values: Float64Array, op: 'sum' | 'max'): Promise<Float64Array>;
  barrier(): Promise<void>;
  broadcast(model: NativeModel): Promise<void>;
  attach(model: NativeModel, options: GroupOptions): number;
  publish(key: string, text: string): Promise<void>;
  fetch(key: string, timeoutMs: number): Promise<string>;
  close(): void;
}

export interface TorchValueTensor {
  kind: 'tensor';
  dtype: string;
  shape: number[];
  data: Floats;
}

interface Addon {
  NativeModel: new (graph: object, params: object[], options: { device: string; dtype: DType; precision?: Precision }) => NativeModel;
  /** absent where the addon was built against a LibTorch without c10d/Gloo */
  NativeGroup?: new (options: { rank: number; size: number; masterAddr: string; masterPort: number; timeoutMs: number; ifname?: string }) => NativeGroup;
  info(): { torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; numThreads: number };
  setNumThreads(n: number): void;
  shutdown(): void;
  readTorchFile(file: string): Promise<unknown>;
  writeTorchFile(file: string, value: unknown): Promise<void>;
  resample(src: Uint8Array, width: number, height: number, box: Float64Array, outWidth: number, outHeight: number): Promise<Uint8Array>;
  render(src: Uint8Array, width: number, height: number, params: Float64Array, outWidth: number, outHeight: number, out: Float32Array, offset: number): Promise<void>;
  circle(grey: Uint8Array, width: number, height: number): Promise<{ cx: number; cy: number; r: number }>;
}

/** What build/libtorch.json says about the LibTorch the addon was built against. */
export interface LibtorchBuild {
  source: string;
  root: string;
  version: string;
  cuda: boolean;
}

let addon: Addon | undefined;

/**
 * How long LibTorch's OpenMP workers spin, waiting for the next parallel region, before they sleep (libgomp reads it
 * once, when the addon loads it). libgomp's default, ~300k spins, keeps a worker busy through every serial stretch of
 * a step, so on a 2-core machine it took the core the loader's augmentation needed: cnn_small's side epochs at 128 px
 * ran ~8.6-10.0 s instead of ~7.7-8.4 s with 3000, while the tiny ViT's train step (1.8-1.9 ms at batch 8) and
 * ViT-B/32's (4.5-4.7 s at batch 32) were the same with either; with no spinning at all (0) the tiny step took 10 ms.
 * Set GOMP_SPINCOUNT or OMP_WAIT_POLICY yourself to choose otherwise.
 */
const GOMP_SPINCOUNT = '3000';

export function loadAddon(): Addon {
  if (addon) return addon;
  if (!fs.existsSync(ADDON)) {
    throw new Error(`penny-train's native addon is not built (${ADDON} is missing). Run \`npm run build\` ` +
      'in the penny-train folder; it finds or fetches LibTorch and builds the addon.');
  }
  if (process.env.GOMP_SPINCOUNT === undefined && process.env.OMP_WAIT_POLICY === undefined) process.env.GOMP_SPINCOUNT = GOMP_SPINCOUNT;
  const require = createRequire(import.meta.url);
  addon = require(ADDON) as Addon;
  addon.setNumThreads(os.availableParallelism());
  // The step running at exit must end before LibTorch's static destructors run; 'exit' comes before them, also on
  // process.exit(). A worker's own 'exit' must not stop the compute thread that every thread shares.
  if (isMainThread) process.once('exit', addon.shutdown);
  return addon;
}

export function libtorchBuild(): LibtorchBuild | undefined {
  const f = path.join(ROOT, 'build', 'libtorch.json');
  return fs.existsSync(f) ? (JSON.parse(fs.readFileSync(f, 'utf8')) as LibtorchBuild) : undefined;
}

export function nativeInfo() {
  return loadAddon().info();
}

/** Intra-op threads for every native model in this process (default: the machine's cores). */
export function setNumThreads(n: number): void {
  loadAddon().setNumThreads(n);
}

/** Reads a file written by Python's torch.save: dicts, lists, numbers, strings and tensors. */
export function readTorchFile(file: string): Promise<unknown> {
  return loadAddon().readTorchFile(file);
}

/**
 * Writes `value` as Python's torch.save would (readable with weights_only=True): objects become str-keyed dicts, a
 * Map with number keys an int-keyed dict, integers ints, `{ kind: 'tensor', shape, data }` tensors.
 */
export function writeTorchFile(file: string, value: unknown): Promise<void> {
  return loadAddon().writeTorchFile(file, value);
}

/**
 * A box (x, y, width, height, in pixels) of an RGB image (HWC, 8 bits) resampled to outWidth x outHeight with an
 * antialiased triangle filter, on libuv's thread pool (native/pixels.cc).
 */
export function resamplePixels(src: Uint8Array, width: number, height: number, box: Float64Array, outWidth: number, outHeight: number): Promise<Uint8Array> {
  return loadAddon().resample(src, width, height, box, outWidth, outHeight);
}

/** One model input drawn from an RGB image into out[offset ...] by the parameters data/images.ts packs, on the pool. */
export function renderPixels(src: Uint8Array, width: number, height: number, params: Float64Array, outWidth: number, outHeight: number,
  out: Float32Array, offset: number): Promise<void> {
  return loadAddon().render(src, width, height, params, outWidth, outHeight, out, offset);
}

/** The strongest circle in a greyscale raster (native/pixels.cc; what for: predict/locate.ts), on the pool. */
export function findCircle(grey: Uint8Array, width: number, height: number): Promise<{ cx: number; cy: number; r: number }> {
  return loadAddon().circle(grey, width, height);
}

/** Throws a UsageError (exit 2) when `device` cannot be had from this build of LibTorch. */
export function checkDevice(device: string): void {
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) {
    throw new UsageError(`device must be 'cpu', 'cuda' or 'cuda:N', got '${device}'`);
  }
  if (device === 'cpu') return;
  const info = loadAddon().info();
  const build = libtorchBuild();
  if (build && !build.cuda) {
    throw new UsageError(`device '${device}' asked for, but penny-train was built against a CPU-only LibTorch ` +
      `(${build.version} from ${build.source}). Rebuild against a CUDA LibTorch: LIBTORCH=/path/to/libtorch npm run build`);
  }
  if (!info.cudaAvailable) throw new UsageError(`device '${device}' asked for, but LibTorch ${info.torchVersion} sees no CUDA device`);
  const index = Number(device.split(':')[1] ?? 0);
  if (index >= info.cudaDeviceCount) {
    throw new UsageError(`device '${device}' asked for, but only ${info.cudaDeviceCount} CUDA device(s) are visible`);
  }
}

export class NativeBackend implements Backend {
  readonly kind = 'native';
  private readonly m: NativeModel;

  constructor(graph: Graph, options: { device: string; dtype: DType; precision?: Precision }) {
    const a = loadAddon();
    checkDevice(options.device);
    this.m = new a.NativeModel(lowerGraph(graph), graph.params.map((p) => ({ name: p.name, shape: p.shape, decay: adamGroup(p) === 'decay', buffer: adamGroup(p) === null })),
      { ...options, precision: options.precision ?? 'fp32' });
  }

  get device(): string {
    return this.m.device;
  }

  forward(pixels: Floats, shape: number[], output: OutputName) {
    return this.m.forward(pixels, shape, output);
  }

  trainStep(pixels: Floats, shape: number[], labels: Int32Array, step: StepOptions) {
    return this.m.trainStep(pixels, shape, labels, step);
  }

  /** rank 0's weights to this rank, then this model's gradients averaged over the group's ranks in every trainStep */
  async joinGroup(group: NativeGroup, options: GroupOptions): Promise<number> {
    await group.broadcast(this.m);
    return group.attach(this.m, options);
  }

  lossAndGrads(pixels: Floats, shape: number[], labels: Int32Array, targets?: Float32Array) {
    return this.m.lossAndGrads(pixels, shape, labels, targets);
  }

  getParams(names?: string[]) {
    return this.m.getParams(names);
  }

  setParams(values: Record<string, Floats>) {
    this.m.setParams(values);
  }

  setPrecision(precision: Precision) {
    this.m.setPrecision(precision);
  }

  setOptimizer(options: OptimizerOptions) {
    this.m.setOptimizer(options);
  }

  getOptimizerState() {
    return this.m.getOptimizerState();
  }

  setOptimizerState(state: Record<string, AdamState>) {
    this.m.setOptimizerState(state);
  }

  dispose() {
    this.m.dispose();
  }
}
