// createModel(): a backbone + head as a graph, its parameters initialised from a seed or loaded from pretrained
// weights, running on a backend. The same object serves training (trainStep), inference (predict, embed) and state.
import { createBackend } from '../backend/index.js';
import type { GroupOptions, NativeGroup } from '../backend/native.js';
import type { AdamState, Backend, DType, Floats, OptimizerOptions, Precision, StepOptions, StepResult } from '../backend/types.js';
import { UsageError } from '../errors.js';
import { buildBackbone, type ImageSize } from './backbones.js';
import { numel, parameterCount, type Graph, type HeadSpec, type OutputName } from './graph.js';
import { initParams } from './init.js';
import { loadPretrained } from './weights.js';

export interface CreateModelOptions {
  backbone: string;
  numClasses: number;
  /** Hugging Face CLIP checkpoint: a folder or a .safetensors / .bin file */
  weights?: string;
  device?: string;
  backend?: 'native' | 'js';
  seed?: number;
  /** input size, [height, width] or a number for a square; default the backbone's own (224 for ViT-B/32) */
  imageSize?: ImageSize;
  /** the classifier: flat (default), or year_digits for the date model */
  head?: HeadSpec;
  /** float64 is for gradient checks */
  dtype?: DType;
  /** fp32 (default), or bf16 / fp16 autocast (native backend; see Precision) */
  precision?: Precision;
  /** intra-op threads of the native backend (process-wide); default the machine's cores */
  threads?: number;
  /** AdamW settings; lr is given per step */
  optimizer?: Partial<Omit<OptimizerOptions, 'lr'>>;
}

/** torch.optim.AdamW's defaults */
export const DEFAULT_OPTIMIZER: Omit<OptimizerOptions, 'lr'> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

export interface ModelState {
  params: Record<string, Floats>;
  optimizer: Record<string, AdamState>;
}

export class PennyModel {
  readonly inputShape: [number, number, number];
  readonly paramNames: string[];
  private optimizer: Omit<OptimizerOptions, 'lr'>;
  private lastLr = 0;
  /** joined a distributed group: a train step may bring an empty part of a batch */
  private grouped = false;

  constructor(
    readonly backbone: string,
    readonly graph: Graph,
    readonly numClasses: number,
    private readonly impl: Backend,
    readonly dtype: DType,
    /** where the weights came from: a path, or null for random init */
    readonly pretrained: string | null,
    optimizer: Omit<OptimizerOptions, 'lr'>,
  ) {
    this.inputShape = graph.inputShape;
    this.paramNames = graph.params.map((p) => p.name);
    this.optimizer = optimizer;
    impl.setOptimizer({ ...optimizer, lr: 0 });
  }

  get backend(): 'native' | 'js' {
    return this.impl.kind;
  }

  get device(): string {
    return this.impl.device;
  }

  get parameterCount(): number {
    return parameterCount(this.graph);
  }

  /** CLIP image_embeds (projected, not normalised): [b, projection] */
  embed(pixels: Floats, shape: number[]): Promise<Floats> {
    return this.impl.forward(this.checkPixels(pixels, shape), shape, 'embeds');
  }

  /** logits [b, numClasses] */
  predict(pixels: Floats, shape: number[]): Promise<Floats> {
    return this.impl.forward(this.checkPixels(pixels, shape), shape, 'logits');
  }

  forward(pixels: Floats, shape: number[], output: OutputName): Promise<Floats> {
    return this.impl.forward(this.checkPixels(pixels, shape), shape, output);
  }

  /**
   * The graph's loss (cross-entropy, or NLL for a factorised head) on `labels`, backward, one AdamW step at `lr`.
   * `targets` [batch, classes] (soft labels, rows summing to 1) replace the labels' one-hot rows in the loss.
   */
  trainStep(pixels: Floats, shape: number[], labels: Int32Array, { lr, targets, lossScale }: StepOptions): Promise<StepResult> {
    if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) throw new TypeError(`lr must be a finite number >= 0, got ${lr}`);
    this.lastLr = lr;
    const step: StepOptions = { lr, targets: this.checkTargets(targets, shape) };
    if (lossScale !== undefined) step.lossScale = lossScale;
    return this.impl.trainStep(this.checkPixels(pixels, shape, this.grouped), shape, this.checkLabels(labels, shape), step);
  }

  /**
   * Distributed training (src/train/distributed.ts): takes rank 0's weights, then averages this model's gradients
   * over the group in every trainStep. The native backend only.
   */
  joinGroup(group: NativeGroup, options: GroupOptions): Promise<number> {
    if (!this.impl.joinGroup) throw new UsageError(`distributed training runs on the native backend, not on ${this.impl.kind}`);
    this.grouped = true;
    return this.impl.joinGroup(group, options);
  }

  /** The loss and every parameter's gradient, without a step. */
  lossAndGrads(pixels: Floats, shape: number[], labels: Int32Array, targets?: Float32Array) {
    return this.impl.lossAndGrads(this.checkPixels(pixels, shape), shape, this.checkLabels(labels, shape), this.checkTargets(targets, shape));
  }

  getParams(names?: string[]): Record<string, Floats> {
    return this.impl.getParams(names);
  }

  setParams(values: Record<string, Floats>): void {
    this.impl.setParams(values);
  }

  get optimizerOptions(): OptimizerOptions & { lr: number } {
    return { ...this.optimizer, lr: this.lastLr };
  }

  /** fp32, or bf16 / fp16 autocast (native backend) for the passes from now on */
  setPrecision(precision: Precision): void {
    this.impl.setPrecision(precision);
  }

  /** Replaces the AdamW settings; the optimizer state starts afresh. */
  setOptimizer(options: Partial<Omit<OptimizerOptions, 'lr'>>): void {
    this.optimizer = { ...this.optimizer, ...options };
    this.impl.setOptimizer({ ...this.optimizer, lr: 0 });
  }

  /** Parameters and AdamW state, by parameter name. */
  getOptimizerState() {
    return this.impl.getOptimizerState();
  }

  getState(): ModelState {
    return { params: this.impl.getParams(), optimizer: this.impl.getOptimizerState() };
  }

  setState(state: ModelState): void {
    this.impl.setParams(state.params);
    this.impl.setOptimizerState(state.optimizer);
  }

  /** Frees the backend's memory now; the model cannot be used afterwards. */
  dispose(): void {
    this.impl.dispose();
  }

  /** `empty`: a batch of 0 (a rank's part of a last batch smaller than the group, which still joins the step) */
  private checkPixels(pixels: Floats, shape: number[], empty = false): Floats {
    const [c, h, w] = this.inputShape;
    if (!Array.isArray(shape) || shape.length !== 4 || shape[1] !== c || shape[2] !== h || shape[3] !== w ||
        !Number.isInteger(shape[0]) || shape[0] < (empty ? 0 : 1)) {
      throw new TypeError(`shape must be [batch, ${c}, ${h}, ${w}], got ${JSON.stringify(shape)}`);
    }
    const want = this.dtype === 'float64' ? Float64Array : Float32Array;
    if (!(pixels instanceof want)) throw new TypeError(`pixels must be a ${want.name}, got ${pixels?.constructor?.name ?? typeof pixels}`);
    if (pixels.length !== numel(shape)) {
      throw new TypeError(`pixels has ${pixels.length} values but shape ${JSON.stringify(shape)} needs ${numel(shape)}`);
    }
    return pixels;
  }

  private checkTargets(targets: Float32Array | undefined, shape: number[]): Float32Array | undefined {
    if (targets === undefined) return undefined;
    if (!(targets instanceof Float32Array)) throw new TypeError(`targets must be a Float32Array, got ${(targets as object)?.constructor?.name ?? typeof targets}`);
    if (targets.length !== shape[0] * this.numClasses) {
      throw new TypeError(`targets has ${targets.length} values; a batch of ${shape[0]} x ${this.numClasses} classes needs ${shape[0] * this.numClasses}`);
    }
    return targets;
  }

  private checkLabels(labels: Int32Array, shape: number[]): Int32Array {
    if (!(labels instanceof Int32Array)) throw new TypeError(`labels must be an Int32Array, got ${(labels as object)?.constructor?.name ?? typeof labels}`);
    if (labels.length !== shape[0]) throw new TypeError(`labels has ${labels.length} entries for a batch of ${shape[0]}`);
    for (const l of labels) {
      if (l < 0 || l >= this.numClasses) throw new RangeError(`labels: ${l} is not a class of this ${this.numClasses}-class model`);
    }
    return labels;
  }
}

export interface GraphModelOptions {
  device?: string;
  backend?: 'native' | 'js';
  seed?: number;
  dtype?: DType;
  precision?: Precision;
  threads?: number;
  optimizer?: Partial<Omit<OptimizerOptions, 'lr'>>;
  /** values that replace the seeded init (pretrained weights) */
  values?: Record<string, Float32Array>;
  /** a label for the model's architecture and where its weights came from */
  backbone?: string;
  pretrained?: string | null;
}

/** A model over any graph whose outputs are `embeds` and `logits` [batch, classes]. */
export async function createModelFromGraph(graph: Graph, numClasses: number, options: GraphModelOptions = {}): Promise<PennyModel> {
  const { device = 'cpu', backend = 'native', seed = 0, dtype = 'float32' } = options;
  const impl = createBackend(backend, graph, { device, dtype, precision: options.precision, threads: options.threads });
  try {
    const values: Record<string, Floats> = { ...initParams(graph, seed), ...options.values };
    if (dtype === 'float64') for (const k of Object.keys(values)) values[k] = Float64Array.from(values[k]);
    impl.setParams(values);
  } catch (e) {
    impl.dispose();
    throw e;
  }
  return new PennyModel(options.backbone ?? 'custom', graph, numClasses, impl, dtype, options.pretrained ?? null,
    { ...DEFAULT_OPTIMIZER, ...options.optimizer });
}

export async function createModel(options: CreateModelOptions): Promise<PennyModel> {
  const { backbone, numClasses, weights } = options;
  const graph = buildBackbone(backbone, numClasses, options.imageSize, options.head);
  const values = weights ? await loadPretrained(graph, weights, backbone) : undefined;
  return createModelFromGraph(graph, numClasses, { ...options, values, pretrained: weights ?? null });
}
