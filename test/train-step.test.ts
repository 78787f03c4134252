// One AdamW step, learning, determinism and state round trips on the native backend.
import { describe, expect, it } from 'vitest';
import { createModel, type Floats } from '../src/index.js';
import { argmax, maxAbsDiff, randomLabels, randn } from './helpers.js';

const shape = [4, 3, 32, 32];
const pixels = randn(4 * 3 * 32 * 32, 1);
const labels = new Int32Array([0, 2, 1, 2]);
const tiny = (seed = 0, extra = {}) => createModel({ backbone: 'clip_vit_tiny', numClasses: 3, imageSize: 32, seed, ...extra });

describe('AdamW', () => {
  it('takes one step exactly as the written-out formula says, with no decay on biases, norms and embeddings', async () => {
    const [lr, b1, b2, eps, wd] = [1e-2, 0.8, 0.95, 1e-6, 0.3];
    const m = await tiny(0, { optimizer: { beta1: b1, beta2: b2, eps, weightDecay: wd } });
    const before = m.getParams();
    const { grads } = await m.lossAndGrads(pixels, shape, labels);
    await m.trainStep(pixels, shape, labels, { lr });
    const after = m.getParams();
    const state = m.getOptimizerState();
    const noDecay = m.graph.params.filter((p) => !p.decay).map((p) => p.name);
    expect(noDecay).toEqual(expect.arrayContaining([
      'vision_model.embeddings.class_embedding', 'vision_model.embeddings.position_embedding.weight',
      'vision_model.pre_layrnorm.weight', 'vision_model.encoder.layers.0.self_attn.q_proj.bias', 'head.bias']));
    expect(noDecay).not.toContain('vision_model.encoder.layers.0.self_attn.q_proj.weight');
    for (const p of m.graph.params) {
      const g = grads[p.name], p0 = before[p.name];
      const decay = p.decay ? wd : 0;
      const expected = p0.map((x, i) => {
        const mHat = ((1 - b1) * g[i]) / (1 - b1);
        const vHat = ((1 - b2) * g[i] * g[i]) / (1 - b2);
        return x * (1 - lr * decay) - (lr * mHat) / (Math.sqrt(vHat) + eps);
      });
      expect(maxAbsDiff(after[p.name], expected), p.name).toBeLessThan(2e-6);
      expect(state[p.name].step).toBe(1);
      expect(maxAbsDiff(state[p.name].expAvg, g.map((x) => (1 - b1) * x))).toBeLessThan(1e-7);
    }
  });
});

describe('training', () => {
  it('memorises 16 fixed samples: loss under 5% of its start and 100% accuracy within 150 steps', async () => {
    const n = 16, s = [n, 3, 32, 32];
    const x = randn(n * 3 * 32 * 32, 7);
    const y = randomLabels(n, 5, 8);
    const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, imageSize: 32, seed: 1, optimizer: { weightDecay: 0 } });
    const first = (await m.trainStep(x, s, y, { lr: 2e-3 })).loss;
    let step = 1, loss = first;
    for (; step < 150 && loss >= 0.05 * first; step++) loss = (await m.trainStep(x, s, y, { lr: 2e-3 })).loss;
    const logits = await m.predict(x, s);
    const correct = [...y].filter((label, i) => argmax(logits, i * 5, 5) === label).length;
    expect(loss, `loss ${loss} after ${step} steps, first ${first}`).toBeLessThan(0.05 * first);
    expect(correct).toBe(n);
  });

  it('is deterministic: the same seed gives identical weights after 5 steps', async () => {
    const run = async () => {
      const m = await tiny(42);
      for (let i = 0; i < 5; i++) await m.trainStep(pixels, shape, labels, { lr: 1e-3 });
      return m.getParams();
    };
    const [a, b] = [await run(), await run()];
    for (const k of Object.keys(a)) expect(maxAbsDiff(a[k], b[k]), k).toBe(0);
    const other = await tiny(43);
    expect(maxAbsDiff(other.getParams(['head.weight'])['head.weight'], a['head.weight'])).toBeGreaterThan(0);
  });

  it('round-trips state by parameter name: the next step is identical', async () => {
    const a = await tiny(1);
    for (let i = 0; i < 3; i++) await a.trainStep(pixels, shape, labels, { lr: 1e-3 });
    const b = await tiny(2);
    b.setState(a.getState());
    const [ra, rb] = [await a.trainStep(pixels, shape, labels, { lr: 1e-3 }), await b.trainStep(pixels, shape, labels, { lr: 1e-3 })];
    expect(rb.loss).toBe(ra.loss);
    const [pa, pb] = [a.getParams(), b.getParams()];
    for (const k of Object.keys(pa)) expect(maxAbsDiff(pa[k] as Floats, pb[k] as Floats), k).toBe(0);
  });
});
