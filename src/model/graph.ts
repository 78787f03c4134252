// The graph IR: the one description of a model that the native backend, the JS backend and the ONNX emitter consume.
// A graph is a list of nodes over named values; a value is a parameter, the input batch, or a node's output. The ops
// and their attributes are those of the op table (ops.ts).
import type { OpAttrs, OpName } from './ops.js';

export type Init =
  | { kind: 'normal'; std: number }
  | { kind: 'uniform'; bound: number }
  | { kind: 'zeros' }
  | { kind: 'ones' }
  /** a conv weight [C, C, k, k] that keeps each channel minus its k x k mean (a fixed high-pass) */
  | { kind: 'highpass' };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
  /** AdamW weight decay applies (timm's convention: not biases, norm weights, position/class embeddings). */
  decay: boolean;
  /** a buffer (batch norm's running statistics): saved and loaded like a parameter, never trained */
  buffer?: boolean;
}

export interface GraphNode<K extends OpName = OpName> {
  op: K;
  /** value names; '' for an absent optional input (a bias) */
  inputs: string[];
  output: string;
  attrs: OpAttrs[K];
}

export type OutputName = 'embeds' | 'logits';

/**
 * What the `logits` output holds, and so which loss trains it: scores to be log-softmaxed (cross-entropy), or
 * log-probabilities already (a factorised head): the loss is then their negative at the label (NLL), which for a
 * factorised head is the sum of its parts' cross-entropies.
 */
export type LossKind = 'cross_entropy' | 'nll';

/**
 * The classifier on top of the embedding. `flat`: one Linear to the classes. `year_digits`: the years
 * first..last read as decade + unit digit, two Linear heads whose log-softmaxes are summed into one log-probability
 * per year, so the output keeps the flat head's shape and label map.
 */
export type HeadSpec = { kind: 'flat' } | { kind: 'year_digits'; first: number; last: number };

export interface Graph {
  /** name of the input value: a normalised image batch [B, 3, H, W] */
  input: string;
  inputShape: [number, number, number];
  params: ParamSpec[];
  nodes: GraphNode[];
  outputs: Record<OutputName, string>;
  loss: LossKind;
}

/**
 * AdamW's group of a parameter — weight decay, none, or not optimized at all (batch norm's running statistics) — the
 * one rule both backends' optimizers and the checkpoints' param_groups follow.
 */
export function adamGroup(p: Pick<ParamSpec, 'decay' | 'buffer'>): 'decay' | 'no_decay' | null {
  return p.buffer ? null : p.decay ? 'decay' : 'no_decay';
}

/** Weights and buffers of a graph, counted. */
export function parameterCount(graph: Graph): number {
  return graph.params.reduce((n, p) => n + numel(p.shape), 0);
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Appends nodes with generated value names; each method returns the name of its output. */
export class GraphBuilder {
  readonly params: ParamSpec[] = [];
  readonly nodes: GraphNode[] = [];
  private counter = 0;

  constructor(readonly input = 'pixels') {}

  param(name: string, shape: number[], init: Init, decay: boolean, buffer = false): string {
    if (this.params.some((p) => p.name === name)) throw new Error(`duplicate parameter '${name}'`);
    this.params.push(buffer ? { name, shape, init, decay: false, buffer } : { name, shape, init, decay });
    return name;
  }

  op<K extends OpName>(op: K, inputs: string[], attrs: OpAttrs[K], output = `%${this.counter++}`): string {
    this.nodes.push({ op, inputs, output, attrs } as GraphNode);
    return output;
  }

  /** A Linear layer `prefix.weight` [out, in] (+ `prefix.bias`), PyTorch layout. */
  linear(x: string, prefix: string, inFeatures: number, outFeatures: number, init: { weight: Init; bias?: Init | null }, output?: string): string {
    const w = this.param(`${prefix}.weight`, [outFeatures, inFeatures], init.weight, true);
    const b = init.bias === null ? '' : this.param(`${prefix}.bias`, [outFeatures], init.bias ?? { kind: 'zeros' }, false);
    return this.op('linear', [x, w, b], {}, output);
  }

  layerNorm(x: string, prefix: string, width: number, eps: number): string {
    const w = this.param(`${prefix}.weight`, [width], { kind: 'ones' }, false);
    const b = this.param(`${prefix}.bias`, [width], { kind: 'zeros' }, false);
    return this.op('layer_norm', [x, w, b], { eps });
  }

  /** BatchNorm2d `prefix.{weight,bias,running_mean,running_var}`, PyTorch's names and defaults. */
  batchNorm(x: string, prefix: string, channels: number, eps = 1e-5, momentum = 0.1): string {
    const w = this.param(`${prefix}.weight`, [channels], { kind: 'ones' }, false);
    const b = this.param(`${prefix}.bias`, [channels], { kind: 'zeros' }, false);
    const mean = this.param(`${prefix}.running_mean`, [channels], { kind: 'zeros' }, false, true);
    const variance = this.param(`${prefix}.running_var`, [channels], { kind: 'ones' }, false, true);
    return this.op('batch_norm', [x, w, b, mean, variance], { eps, momentum });
  }

  /**
   * The classifier `head` on `embeds` [B, dim]: the logits value [B, classes] and the loss that trains it. For
   * year_digits, year y is decade floor(y / 10) and unit y % 10; logits[y] = logsoftmax(decade)[d] +
   * logsoftmax(unit)[u], built as the [B, decades, 10] grid of sums, flattened, and sliced to first..last.
   */
  head(embeds: string, dim: number, classes: number, spec: HeadSpec = { kind: 'flat' }): { logits: string; loss: LossKind } {
    const bound = 1 / Math.sqrt(dim);
    const init = { weight: { kind: 'uniform', bound }, bias: { kind: 'uniform', bound } } as const;
    if (spec.kind === 'flat') return { logits: this.linear(embeds, 'head', dim, classes, init, 'logits'), loss: 'cross_entropy' };
    const d0 = Math.floor(spec.first / 10), decades = Math.floor(spec.last / 10) - d0 + 1;
    if (spec.last - spec.first + 1 !== classes) throw new RangeError(`year_digits head: ${spec.first}-${spec.last} is not ${classes} classes`);
    const part = (name: string, n: number, shape: number[]) =>
      this.op('reshape', [this.op('log_softmax', [this.linear(embeds, `head.${name}`, dim, n, init)], { axis: 1 })], { shape });
    const grid = this.op('add', [part('decade', decades, [0, decades, 1]), part('unit', 10, [0, 1, 10])], {});
    const start = spec.first - 10 * d0;
    const flat = this.op('reshape', [grid], { shape: [0, decades * 10] });
    return { logits: this.op('slice', [flat], { axis: 1, start, end: start + classes }, 'logits'), loss: 'nll' };
  }

  build(inputShape: [number, number, number], outputs: Record<OutputName, string>, loss: LossKind = 'cross_entropy'): Graph {
    return { input: this.input, inputShape, params: this.params, nodes: this.nodes, outputs, loss };
  }
}
