// The op table (src/model/ops.ts) against its consumers: every op through the native backend, the JS backend and the
// ONNX emitter in onnxruntime-node on small inputs (same outputs, of the size the table's shape rule gives; the same
// gradients on both backends where the op has a backward), and the generated native header is current.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HEADER, nativeOpsHeader } from '../scripts/gen-native-ops.js';
import { createModelFromGraph, emitOnnx, GraphBuilder, inferShapes, onnxParity } from '../src/index.js';
import { numel } from '../src/model/graph.js';
import { OP_NAMES, OPS, type OpName } from '../src/model/ops.js';
import { maxAbsDiff, randn, randomLabels } from './helpers.js';

const normal = (std: number) => ({ kind: 'normal', std }) as const;
/** x [B, 3, 4, 4] as 3 tokens of 16 */
const tokens = (g: GraphBuilder, x: string) => g.op('reshape', [x], { shape: [0, 3, 16] });

/** Each op on x [B, 3, 4, 4] (already through a parameter, so its backward reaches one): the op's output. */
const CASES: { [K in OpName]: (g: GraphBuilder, x: string) => string } = {
  conv2d: (g, x) => g.op('conv2d', [x, g.param('conv.weight', [4, 3, 3, 3], normal(0.3), true), g.param('conv.bias', [4], normal(0.1), false)], { stride: 2, padding: 1 }),
  linear: (g, x) => g.linear(tokens(g, x), 'fc', 16, 5, { weight: normal(0.5), bias: normal(0.1) }),
  layer_norm: (g, x) => g.layerNorm(tokens(g, x), 'ln', 16, 1e-5),
  add: (g, x) => g.op('add', [x, g.param('shift', [3, 1, 1], normal(1), false)], {}),
  mul: (g, x) => g.op('mul', [g.param('scale', [4], normal(1), false), x], {}),
  quick_gelu: (g, x) => g.op('quick_gelu', [x], {}),
  gelu: (g, x) => g.op('gelu', [x], {}),
  relu: (g, x) => g.op('relu', [x], {}),
  relu6: (g, x) => g.op('relu6', [g.op('mul', [x, g.param('gain', [1], { kind: 'uniform', bound: 8 }, false)], {})], {}),
  softmax: (g, x) => g.op('softmax', [x], { axis: 1 }),
  log_softmax: (g, x) => g.op('log_softmax', [x], { axis: -1 }),
  attention: (g, x) => {
    const t = tokens(g, x);
    return g.op('attention', [t, g.op('gelu', [t], {}), g.op('mul', [t, t], {})], { heads: 2 });
  },
  reshape: (g, x) => g.op('reshape', [x], { shape: [0, -1, 8] }),
  transpose: (g, x) => g.op('transpose', [x], { perm: [0, 2, 3, 1] }),
  concat: (g, x) => g.op('concat', [x, g.op('relu', [x], {}), x], { axis: 2 }),
  slice: (g, x) => g.op('slice', [x], { axis: 3, start: -3, end: 3 }),
  expand_batch: (g, x) => g.op('add', [g.op('expand_batch', [g.param('cls', [1, 3, 1, 4], normal(1), false), x], {}), x], {}),
  mean: (g, x) => g.op('mean', [x], { axes: [2, 3] }),
  batch_norm: (g, x) => g.batchNorm(x, 'bn', 3),
};

const B = 2;
const shape = [B, 3, 4, 4];
const pixels = randn(numel(shape), 31);

/** The op's case between an input parameter and a Linear head, its output flattened as the embeds. */
function graphOf(op: OpName) {
  const g = new GraphBuilder();
  const x = g.op('mul', [g.input, g.param('in.scale', [4, 4], normal(1), false)], {});
  const embeds = g.op('reshape', [CASES[op](g, x)], { shape: [0, -1] });
  const width = inferShapes(g.build([3, 4, 4], { embeds, logits: embeds }), B).get(embeds)![1] as number;
  const logits = g.linear(embeds, 'head', width, 3, { weight: normal(0.5) }, 'logits');
  return { graph: g.build([3, 4, 4], { embeds, logits }), width };
}

const maxAbs = (a: ArrayLike<number>) => Math.max(...Array.from(a, Math.abs));
const rel = (a: ArrayLike<number>, ref: ArrayLike<number>) => maxAbsDiff(a, ref) / Math.max(maxAbs(ref), 1e-6);

describe('the op table', () => {
  it('native/ops.generated.h is what scripts/gen-native-ops.ts makes of the table now (else: npm run gen:ops)', () => {
    expect(fs.readFileSync(HEADER, 'utf8')).toBe(nativeOpsHeader());
  });

  it.each(OP_NAMES)('%s: native, JS and ONNX (onnxruntime) agree', async (op) => {
    const { graph, width } = graphOf(op);
    const [native, js] = [await createModelFromGraph(graph, 3, { seed: 4 }), await createModelFromGraph(graph, 3, { seed: 4, backend: 'js' })];
    try {
      const ref = await native.forward(pixels, shape, 'embeds');
      expect(ref.length).toBe(B * width);
      expect(rel(await js.forward(pixels, shape, 'embeds'), ref), 'JS').toBeLessThan(1e-4);
      const onnx = emitOnnx(graph, native.getParams(), { output: 'embeds' });
      expect((await onnxParity(onnx, pixels, shape, ref)).maxAbsDiff / maxAbs(ref), 'ONNX').toBeLessThan(1e-5);
      if (!OPS[op].backward) return;
      const labels = randomLabels(B, 3, 5);
      const [a, b] = [await js.lossAndGrads(pixels, shape, labels), await native.lossAndGrads(pixels, shape, labels)];
      expect(Object.keys(a.grads).sort()).toEqual(Object.keys(b.grads).sort());
      for (const k of Object.keys(b.grads)) expect(rel(a.grads[k], b.grads[k]), k).toBeLessThan(1e-4);
    } finally {
      native.dispose();
      js.dispose();
    }
  });
});
