// What a tensor backend does for a model. Native (LibTorch) and JS implement the same contract over the same graph.
import type { GroupOptions, NativeGroup } from './native.js';
import type { OutputName } from '../model/graph.js';

export type Floats = Float32Array | Float64Array;
export type DType = 'float32' | 'float64';
/**
 * What the forward passes compute in: fp32, or autocast to bf16 / fp16 (matrix products and convolutions in the
 * lower precision, reductions and the loss in float32; weights, gradients and AdamW state stay float32). fp16 adds a
 * dynamic loss scale. Native backend only.
 */
export const PRECISIONS = ['fp32', 'bf16', 'fp16'] as const;
export type Precision = (typeof PRECISIONS)[number];

export interface OptimizerOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** AdamW state of one parameter, as torch keeps it. */
export interface AdamState {
  step: number;
  expAvg: Floats;
  expAvgSq: Floats;
}

export interface StepResult {
  loss: number;
  /** [batch, classes], row-major */
  logits: Floats;
  /** precision fp16: the step was skipped, a gradient being inf/NaN at the loss scale (which then halved) */
  skipped?: boolean;
}

export interface StepOptions {
  lr: number;
  /** soft labels [batch, classes] in place of the labels' one-hot rows */
  targets?: Float32Array;
  /** the mean loss is multiplied by this before backward (a rank's share of a distributed batch; default 1) */
  lossScale?: number;
}

export interface Backend {
  readonly kind: 'native' | 'js';
  readonly device: string;
  forward(pixels: Floats, shape: number[], output: OutputName): Promise<Floats>;
  /** the graph's loss (against soft `targets` [batch, classes] when given), backward, one AdamW step at `lr` */
  trainStep(pixels: Floats, shape: number[], labels: Int32Array, step: StepOptions): Promise<StepResult>;
  /** distributed training: rank 0's weights, then gradients averaged over the group (native only; see PennyModel.joinGroup) */
  joinGroup?(group: NativeGroup, options: GroupOptions): Promise<number>;
  /** the loss and the gradient of every parameter; no step */
  lossAndGrads(pixels: Floats, shape: number[], labels: Int32Array, targets?: Float32Array): Promise<StepResult & { grads: Record<string, Floats> }>;
  getParams(names?: string[]): Record<string, Floats>;
  setParams(values: Record<string, Floats>): void;
  setOptimizer(options: OptimizerOptions): void;
  /** the precision of the passes from now on (the js backend has fp32 only) */
  setPrecision(precision: Precision): void;
  getOptimizerState(): Record<string, AdamState>;
  setOptimizerState(state: Record<string, AdamState>): void;
  dispose(): void;
}
