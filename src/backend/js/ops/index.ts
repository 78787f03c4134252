// Every op of the op table (model/ops.ts) with its JS kernel; the mapped type makes a missing op a compile error.
import type { OpName } from '../../../model/ops.js';
import { attention } from './attention.js';
import { add, gelu, mul, quickGelu, relu, relu6 } from './elementwise.js';
import type { Kernel } from './kernel.js';
import { conv2d, linear } from './linear.js';
import { batchNorm, layerNorm } from './norm.js';
import { concat, expandBatch, reshape, slice, transpose } from './shape.js';
import { mean } from './mean.js';
import { logSoftmax, softmax } from './softmax.js';

export const KERNELS: { [K in OpName]: Kernel<K> } = {
  conv2d,
  linear,
  layer_norm: layerNorm,
  add,
  mul,
  quick_gelu: quickGelu,
  gelu,
  relu,
  relu6,
  softmax,
  log_softmax: logSoftmax,
  attention,
  reshape,
  transpose,
  concat,
  slice,
  expand_batch: expandBatch,
  mean,
  batch_norm: batchNorm,
};

export type { Kernel } from './kernel.js';
