// Native autograd against central finite differences, in float64, on graphs that use every op of the IR.
import { describe, expect, it } from 'vitest';
import { buildBackbone, createModelFromGraph, GraphBuilder, type Graph } from '../src/index.js';
import { numel } from '../src/model/graph.js';
import { randomLabels, randn } from './helpers.js';
import { Rng } from '../src/util/rng.js';

/** The ops CLIP does not use: gelu, relu, relu6, mul, softmax, conv with bias and padding. */
function otherOps(): Graph {
  const g = new GraphBuilder();
  const n = (std: number) => ({ kind: 'normal', std }) as const;
  const w = g.param('conv.weight', [4, 3, 3, 3], n(0.3), true);
  const b = g.param('conv.bias', [4], n(0.1), false);
  let x = g.op('conv2d', [g.input, w, b], { stride: 2, padding: 1 });          // [B, 4, 4, 4]
  x = g.op('transpose', [g.op('reshape', [x], { shape: [0, 4, -1] })], { perm: [0, 2, 1] });   // [B, 16, 4]
  const a = g.op('gelu', [g.linear(x, 'fc1', 4, 8, { weight: n(0.5), bias: n(0.1) })], {});
  const r = g.op('relu', [g.linear(x, 'fc2', 4, 8, { weight: n(0.5), bias: n(0.1) })], {});
  const r6 = g.op('relu6', [g.op('mul', [g.linear(x, 'fc3', 4, 8, { weight: n(2), bias: n(1) }), g.param('scale', [8], n(3), false)], {})], {});
  x = g.op('softmax', [g.op('add', [g.op('mul', [a, r], {}), r6], {})], { axis: -1 });
  x = g.op('reshape', [g.op('slice', [x], { axis: 1, start: 2, end: 3 })], { shape: [0, 8] });
  const embeds = g.layerNorm(x, 'ln', 8, 1e-5);
  const logits = g.linear(embeds, 'head', 8, 3, { weight: n(0.5), bias: n(0.1) }, 'logits');
  return g.build([3, 8, 8], { embeds, logits });
}

async function gradcheck(graph: Graph, classes: number) {
  const m = await createModelFromGraph(graph, classes, { dtype: 'float64', seed: 3 });
  const [c, h, w] = graph.inputShape;
  const shape = [2, c, h, w];
  const pixels = Float64Array.from(randn(numel(shape), 11));
  const labels = randomLabels(2, classes, 12);
  const { grads } = await m.lossAndGrads(pixels, shape, labels);
  const params = m.getParams();
  const rng = new Rng(5);
  const eps = 1e-6;
  let worst = 0;
  for (const p of graph.params) {
    const values = params[p.name] as Float64Array;
    for (let t = 0; t < 3; t++) {
      const i = Math.floor(rng.next() * values.length);
      const orig = values[i];
      const at = async (v: number) => {
        values[i] = v;
        m.setParams({ [p.name]: values });
        return (await m.lossAndGrads(pixels, shape, labels)).loss;
      };
      const numeric = ((await at(orig + eps)) - (await at(orig - eps))) / (2 * eps);
      await at(orig);
      const analytic = grads[p.name][i];
      // relative, with a floor for gradients that are ~0 (finite differences carry ~1e-10 of rounding)
      worst = Math.max(worst, Math.abs(numeric - analytic) / Math.max(1e-4, Math.abs(numeric) + Math.abs(analytic)));
    }
  }
  m.dispose();
  console.log(`gradcheck worst relative error ${worst.toExponential(2)}`);
  return worst;
}

describe('native autograd', () => {
  it('matches finite differences on clip_vit_tiny (conv, attention, layer_norm, quick_gelu, ...)', async () => {
    expect(await gradcheck(buildBackbone('clip_vit_tiny', 4, 32), 4)).toBeLessThan(1e-5);
  });

  it('matches finite differences on cnn_small (strided padded convs, relu, mean pooling)', async () => {
    expect(await gradcheck(buildBackbone('cnn_small', 3, 16), 3)).toBeLessThan(1e-5);
  });

  it('matches finite differences on gelu, relu, relu6, mul, softmax and a padded conv', async () => {
    expect(await gradcheck(otherOps(), 3)).toBeLessThan(1e-5);
  });
});
