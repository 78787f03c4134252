// The JS backend: the graph IR on Float32Array (or Float64Array) kernels with hand-written backward, cross-entropy
// and AdamW as torch has them. The reference that keeps the native backend honest, and a fallback that needs no
// native build (slow: one thread, no SIMD).
import { UsageError } from '../../errors.js';
import { adamGroup, type Graph, type OutputName } from '../../model/graph.js';
import type { AdamState, Backend, DType, Floats, OptimizerOptions, Precision, StepOptions, StepResult } from '../types.js';
import { AdamW } from './adamw.js';
import { Interpreter } from './interpreter.js';
import { lossAndGrad } from './loss.js';
import { alloc, numel, shapeStr, type Tensor } from './tensor.js';

export interface JsBackendOptions {
  dtype?: DType;
  device?: string;
  /** fp32 only: the JS kernels have no lower precision */
  precision?: Precision;
}

/** The JS backend's one device: anything else is a UsageError (exit 2). */
export function checkJsDevice(device: string): void {
  if (device !== 'cpu') throw new UsageError(`the js backend runs on device 'cpu' only, not '${device}'; use backend 'native' for other devices`);
}

/** The JS backend's one precision: anything else is a UsageError (exit 2). */
export function checkJsPrecision(precision: Precision): void {
  if (precision !== 'fp32') throw new UsageError(`precision ${precision} needs backend 'native': the js backend computes in float32 (or float64) only`);
}

export class JsBackend implements Backend {
  readonly kind = 'js';
  readonly device = 'cpu';
  readonly dtype: DType;
  private readonly program: Interpreter;
  private readonly loss: Graph['loss'];
  private readonly names: string[];
  private readonly index = new Map<string, number>();
  private params: Tensor[];
  private readonly decay: boolean[];
  private readonly buffer: boolean[];
  private optimizer: AdamW | null = null;
  private disposed = false;

  constructor(graph: Graph, options: JsBackendOptions = {}) {
    const { dtype = 'float32', device = 'cpu', precision = 'fp32' } = options;
    checkJsDevice(device);
    checkJsPrecision(precision);
    if (dtype !== 'float32' && dtype !== 'float64') throw new TypeError(`options.dtype must be 'float32' or 'float64', got '${String(dtype)}'`);
    this.dtype = dtype;
    this.program = new Interpreter(graph);
    this.loss = graph.loss;
    this.names = graph.params.map((p) => p.name);
    this.names.forEach((n, i) => this.index.set(n, i));
    this.decay = graph.params.map((p) => adamGroup(p) === 'decay');
    this.buffer = graph.params.map((p) => p.buffer ?? false);
    this.params = graph.params.map((p) => ({ shape: [...p.shape], data: alloc(dtype, numel(p.shape)) }));
  }

  async forward(pixels: Floats, shape: number[], output: OutputName): Promise<Floats> {
    this.checkAlive();
    const slot = this.program.outputSlot(output);
    const { out } = this.program.run(this.params, this.input(pixels, shape), slot, false);
    return out.data.slice();
  }

  async trainStep(pixels: Floats, shape: number[], labels: Int32Array, { lr, targets, lossScale = 1 }: StepOptions): Promise<StepResult> {
    this.checkAlive();
    if (typeof lr !== 'number' || !Number.isFinite(lr)) throw new TypeError('options.lr must be a number');
    const optimizer = this.optimizer;
    if (!optimizer) throw new Error('trainStep: call setOptimizer first');
    const { loss, logits, grads } = this.backward(pixels, shape, labels, targets);
    if (lossScale !== 1) for (const g of grads) if (g) for (let i = 0; i < g.length; i++) g[i] *= lossScale;
    optimizer.step(this.params.map((p) => p.data), grads, lr);
    return { loss, logits };
  }

  async lossAndGrads(pixels: Floats, shape: number[], labels: Int32Array, targets?: Float32Array): Promise<StepResult & { grads: Record<string, Floats> }> {
    this.checkAlive();
    const { loss, logits, grads } = this.backward(pixels, shape, labels, targets);
    const out: Record<string, Floats> = {};
    this.names.forEach((n, i) => {
      if (!this.buffer[i]) out[n] = grads[i] ?? alloc(this.dtype, this.params[i].data.length);
    });
    return { loss, logits, grads: out };
  }

  getParams(names?: string[]): Record<string, Floats> {
    this.checkAlive();
    const out: Record<string, Floats> = {};
    for (const n of names ?? this.names) out[n] = this.params[this.paramIndex(n)].data.slice();
    return out;
  }

  setParams(values: Record<string, Floats>): void {
    this.checkAlive();
    if (typeof values !== 'object' || values === null) throw new TypeError('setParams(values): values must be an object');
    const checked = Object.entries(values).map(([name, v]) => {
      const i = this.paramIndex(name);
      return [i, this.checkArray(v, this.params[i], `params['${name}']`)] as const;
    });
    for (const [i, v] of checked) this.params[i].data.set(v);
  }

  setPrecision(precision: Precision): void {
    checkJsPrecision(precision);
  }

  setOptimizer(options: OptimizerOptions): void {
    this.checkAlive();
    if (typeof options !== 'object' || options === null) throw new TypeError('setOptimizer(options): options must be an object');
    for (const k of ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'] as const) {
      if (typeof options[k] !== 'number') throw new TypeError(`optimizer option '${k}' must be a number`);
    }
    const { lr, beta1, beta2, eps, weightDecay } = options;
    this.optimizer = new AdamW({ lr, beta1, beta2, eps, weightDecay }, this.decay, this.dtype);
  }

  getOptimizerState(): Record<string, AdamState> {
    this.checkAlive();
    const out: Record<string, AdamState> = {};
    for (const [i, s] of this.optimizer?.entries() ?? []) {
      out[this.names[i]] = { step: s.step, expAvg: s.expAvg.slice(), expAvgSq: s.expAvgSq.slice() };
    }
    return out;
  }

  setOptimizerState(state: Record<string, AdamState>): void {
    this.checkAlive();
    const optimizer = this.optimizer;
    if (!optimizer) throw new Error('setOptimizerState: call setOptimizer first');
    if (typeof state !== 'object' || state === null) throw new TypeError('setOptimizerState(state): state must be an object');
    const entries: [number, AdamState][] = Object.entries(state).map(([name, e]) => {
      const i = this.paramIndex(name);
      const p = this.params[i];
      const copy = (v: Floats, what: string) => {
        const a = alloc(this.dtype, p.data.length);
        a.set(this.checkArray(v, p, `optimizer state['${name}'].${what}`));
        return a;
      };
      const step = Number(e?.step);
      if (!Number.isInteger(step) || step < 0) throw new TypeError(`optimizer state['${name}'].step must be an integer >= 0`);
      return [i, { step, expAvg: copy(e.expAvg, 'expAvg'), expAvgSq: copy(e.expAvgSq, 'expAvgSq') }];
    });
    optimizer.load(entries);
  }

  dispose(): void {
    this.params = [];
    this.optimizer = null;
    this.disposed = true;
  }

  /** Forward with a tape, the loss, backward: the loss, the logits and each parameter's gradient. */
  private backward(pixels: Floats, shape: number[], labels: Int32Array, targets?: Float32Array) {
    if (!(labels instanceof Int32Array)) throw new TypeError('labels must be an Int32Array');
    const input = this.input(pixels, shape);
    if (labels.length !== shape[0]) throw new TypeError(`labels has ${labels.length} entries for a batch of ${shape[0]}`);
    const slot = this.program.outputSlot('logits');
    const { out, tape } = this.program.run(this.params, input, slot, true);
    const { loss, dlogits } = lossAndGrad(out.data, shape[0], labels, this.loss, targets);
    const logits = out.data.slice();
    const grads = this.program.backward(tape, slot, dlogits);
    return { loss, logits, grads };
  }

  private input(pixels: Floats, shape: number[]): Tensor {
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new TypeError(`shape must be an array of positive integers, got ${JSON.stringify(shape)}`);
    }
    const want = this.dtype === 'float64' ? Float64Array : Float32Array;
    if (!(pixels instanceof want)) throw new TypeError(`pixels must be a ${want.name}`);
    if (pixels.length !== numel(shape)) throw new TypeError(`pixels has ${pixels.length} elements but its shape needs ${numel(shape)}`);
    return { shape: [...shape], data: pixels };
  }

  private checkArray(v: unknown, p: Tensor, what: string): Floats {
    const want = this.dtype === 'float64' ? Float64Array : Float32Array;
    if (!(v instanceof want)) throw new TypeError(`${what} must be a ${want.name}`);
    if (v.length !== p.data.length) {
      throw new TypeError(`${what}: expected ${p.data.length} values (shape ${shapeStr(p.shape)}), got ${v.length}`);
    }
    return v;
  }

  private paramIndex(name: string): number {
    const i = this.index.get(name);
    if (i === undefined) throw new Error(`no parameter named '${name}' in this model`);
    return i;
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('this model was disposed');
  }
}
