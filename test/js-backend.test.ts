// The JS backend against the native (LibTorch) one on the same graph and seed: forward, every gradient, AdamW
// steps and state moving between backends; plus its own float64 gradient check and the GEMM's edge cases.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gemm, gemmNaive, mat } from '../src/backend/js/matmul.js';
import { buildBackbone, createModel, createModelFromGraph, GraphBuilder, type Floats, type PennyModel } from '../src/index.js';
import { numel } from '../src/model/graph.js';
import { Rng } from '../src/util/rng.js';
import { FIXTURE, gradcheck, maxAbsDiff, otherOps, randomLabels, randn, readF32 } from './helpers.js';

const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};
/** max |a - ref| relative to max |ref|, with a floor for tensors that are ~0 */
const rel = (a: ArrayLike<number>, ref: ArrayLike<number>, floor = 1e-12) => maxAbsDiff(a, ref) / Math.max(maxAbs(ref), floor);

/**
 * The key biases get an exactly-zero gradient: softmax(q (k + b)^T) = softmax(q k^T + q b) and q b is the same for
 * every key of a query. Both backends return rounding noise there (~1e-9 in float32), which AdamW's normalisation
 * turns into steps of up to lr in random directions, so after a step those biases are compared against that bound
 * rather than against each other.
 */
const zeroGrad = (name: string) => /self_attn\.k_proj\.bias$/.test(name);
const LR = 1e-4;   // the config's learning rate

const tiny = (backend: 'native' | 'js', seed = 0) =>
  createModel({ backbone: 'clip_vit_tiny', numClasses: 5, imageSize: 32, seed, backend });

const shape = [3, 3, 32, 32];
const pixels = randn(numel(shape), 21);
const labels = new Int32Array([4, 0, 2]);


/** Forward, loss and every gradient of two models agree within `tol` relative. */
async function expectSameGrads(js: PennyModel, native: PennyModel, x: Floats, s: number[], y: Int32Array, tol: number, targets?: Float32Array) {
  const [a, b] = [await js.lossAndGrads(x, s, y, targets), await native.lossAndGrads(x, s, y, targets)];
  const worst = { name: '', err: 0 };
  // the floor: 1e-4 of the largest gradient anywhere in the model (for the key biases, whose gradient is 0 + noise)
  const floor = 1e-4 * Math.max(...Object.values(b.grads).map(maxAbs));
  expect(rel(a.logits, b.logits), 'logits').toBeLessThan(tol);
  expect(Math.abs(a.loss - b.loss) / Math.abs(b.loss)).toBeLessThan(tol);
  expect(Object.keys(a.grads).sort()).toEqual(Object.keys(b.grads).sort());
  for (const k of Object.keys(b.grads)) {
    if (zeroGrad(k)) expect(Math.max(maxAbs(a.grads[k]), maxAbs(b.grads[k])), k).toBeLessThan(1e-6 * floor / 1e-4);
    const err = rel(a.grads[k], b.grads[k], floor);
    if (err > worst.err && !zeroGrad(k)) Object.assign(worst, { name: k, err });
    expect(err, k).toBeLessThan(tol);
  }
  console.log(`worst gradient: ${worst.name} ${worst.err.toExponential(2)} relative`);
}

describe('JS backend against native', () => {
  it('clip_vit_tiny: logits, loss and every gradient within 1e-4 relative', async () => {
    const [js, native] = [await tiny('js'), await tiny('native')];
    expect(js.backend).toBe('js');
    expect(rel(await js.predict(pixels, shape), await native.predict(pixels, shape))).toBeLessThan(1e-4);
    expect(rel(await js.embed(pixels, shape), await native.embed(pixels, shape))).toBeLessThan(1e-4);
    await expectSameGrads(js, native, pixels, shape, labels, 1e-4);
  });

  it('clip_vit_tiny: weights agree within 1e-5 after 3 AdamW steps', async () => {
    const [js, native] = [await tiny('js'), await tiny('native')];
    const p0 = js.getParams();
    for (let i = 0; i < 3; i++) {
      const [a, b] = [await js.trainStep(pixels, shape, labels, { lr: LR }), await native.trainStep(pixels, shape, labels, { lr: LR })];
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5);
    }
    const [pa, pb] = [js.getParams(), native.getParams()];
    let worst = 0;
    for (const k of Object.keys(pb)) {
      if (zeroGrad(k)) {
        expect(Math.max(maxAbsDiff(pa[k], p0[k]), maxAbsDiff(pb[k], p0[k])), k).toBeLessThan(3 * LR * 1.01);
        continue;
      }
      worst = Math.max(worst, maxAbsDiff(pa[k], pb[k]));
      expect(maxAbsDiff(pa[k], pb[k]), k).toBeLessThan(1e-5);
    }
    const [sa, sb] = [js.getOptimizerState(), native.getOptimizerState()];
    for (const k of Object.keys(sb)) {
      expect(sa[k].step, k).toBe(3);
      if (!zeroGrad(k)) expect(rel(sa[k].expAvg, sb[k].expAvg), k).toBeLessThan(1e-4);
    }
    console.log(`worst weight difference after 3 steps: ${worst.toExponential(2)}`);
  });

  it('moves state between backends: the next step agrees', async () => {
    for (const [from, to] of [['native', 'js'], ['js', 'native']] as const) {
      const a = await tiny(from, 1);
      for (let i = 0; i < 2; i++) await a.trainStep(pixels, shape, labels, { lr: LR });
      const b = await tiny(to, 2);
      b.setState(a.getState());
      const p0 = a.getParams();
      const [ra, rb] = [await a.trainStep(pixels, shape, labels, { lr: LR }), await b.trainStep(pixels, shape, labels, { lr: LR })];
      expect(Math.abs(ra.loss - rb.loss), `${from} -> ${to}`).toBeLessThan(1e-5);
      const [pa, pb] = [a.getParams(), b.getParams()];
      for (const k of Object.keys(pa)) {
        if (zeroGrad(k)) expect(maxAbsDiff(pa[k], p0[k]) + maxAbsDiff(pb[k], p0[k]), k).toBeLessThan(2 * LR * 1.01);
        else expect(maxAbsDiff(pa[k], pb[k]), `${from} -> ${to}: ${k}`).toBeLessThan(1e-6);
      }
      expect(b.getOptimizerState()['head.weight'].step).toBe(3);
    }
  });

  it('gelu, relu, relu6, mul, softmax, log_softmax and a padded conv: forward and gradients', async () => {
    const graph = otherOps();
    const [js, native] = [await createModelFromGraph(graph, 3, { backend: 'js', seed: 3 }), await createModelFromGraph(graph, 3, { seed: 3 })];
    const s = [4, 3, 8, 8];
    const x = randn(numel(s), 11);
    expect(rel(await js.forward(x, s, 'embeds'), await native.forward(x, s, 'embeds'))).toBeLessThan(1e-4);
    await expectSameGrads(js, native, x, s, randomLabels(4, 3, 12), 1e-4);
  });

  it('the native shortcuts: a patch-tiling conv with a bias (one GEMM) and attention past 128 tokens (flash)', async () => {
    // 192 px in 16-px patches: 144 + the class token = 145 tokens, past the explicit-attention limit (native/graph.cc)
    const vit = buildBackbone('clip_vit_tiny', 3, 192);
    const g = new GraphBuilder();
    const w = g.param('conv.weight', [4, 3, 4, 4], { kind: 'normal', std: 0.3 }, true);
    const bias = g.param('conv.bias', [4], { kind: 'normal', std: 0.1 }, false);
    const x = g.op('reshape', [g.op('conv2d', [g.input, w, bias], { stride: 4, padding: 0 })], { shape: [0, 16] });
    const logits = g.linear(x, 'head', 16, 3, { weight: { kind: 'normal', std: 0.5 } }, 'logits');
    const conv = g.build([3, 8, 8], { embeds: x, logits });
    for (const [graph, s] of [[vit, [2, 3, 192, 192]], [conv, [2, 3, 8, 8]]] as const) {
      const [js, native] = [await createModelFromGraph(graph, 3, { backend: 'js', seed: 6 }), await createModelFromGraph(graph, 3, { seed: 6 })];
      const px = randn(numel([...s]), 15);
      expect(rel(await js.predict(px, [...s]), await native.predict(px, [...s]))).toBeLessThan(1e-4);
      await expectSameGrads(js, native, px, [...s], randomLabels(2, 3, 16), 1e-4);
    }
  });

  it('cnn_small (strided padded convs, batch norm, relu, mean pooling): forward, gradients, running statistics', async () => {
    const graph = buildBackbone('cnn_small', 4, 16);
    const [js, native] = [await createModelFromGraph(graph, 4, { backend: 'js', seed: 5 }), await createModelFromGraph(graph, 4, { seed: 5 })];
    const s = [3, 3, 16, 16];
    const x = randn(numel(s), 13);
    expect(rel(await js.predict(x, s), await native.predict(x, s))).toBeLessThan(1e-4);
    await expectSameGrads(js, native, x, s, randomLabels(3, 4, 14), 1e-4);
    // the training forward moved batch norm's running statistics alike; inference reads them
    const buffers = graph.params.filter((p) => p.buffer).map((p) => p.name);
    const [a, b] = [js.getParams(buffers), native.getParams(buffers)];
    for (const name of buffers) expect(rel(a[name], b[name]), name).toBeLessThan(1e-5);
    expect(Math.max(...a['stem.bn.running_mean'].map(Math.abs))).toBeGreaterThan(1e-3);
    expect(rel(await js.predict(x, s), await native.predict(x, s))).toBeLessThan(1e-4);
  });

  it('cnn_small on one image whose last map is 1 x 1 (one value per channel): running statistics finite and alike', async () => {
    const graph = buildBackbone('cnn_small', 4, 32);
    const [js, native] = [await createModelFromGraph(graph, 4, { backend: 'js', seed: 5 }), await createModelFromGraph(graph, 4, { seed: 5 })];
    const s = [1, 3, 32, 32];
    await expectSameGrads(js, native, randn(numel(s), 15), s, new Int32Array([2]), 1e-4);
    // the unbiased variance of one value is 0/0: both keep the biased one (0) instead of NaN
    const buffers = graph.params.filter((p) => p.buffer).map((p) => p.name);
    const [a, b] = [js.getParams(buffers), native.getParams(buffers)];
    for (const name of buffers) {
      expect(b[name].every(Number.isFinite), name).toBe(true);
      expect(rel(a[name], b[name]), name).toBeLessThan(1e-5);
    }
  });

  it('date\'s year_digits head at a non-square size: log-probabilities, NLL and soft targets agree with native', async () => {
    const graph = buildBackbone('cnn_small', 116, [16, 40], { kind: 'year_digits', first: 1909, last: 2024 });
    expect(graph.loss).toBe('nll');
    expect(graph.inputShape).toEqual([3, 16, 40]);
    const [js, native] = [await createModelFromGraph(graph, 116, { backend: 'js', seed: 4 }), await createModelFromGraph(graph, 116, { seed: 4 })];
    const s = [3, 3, 16, 40], x = randn(numel(s), 8), y = new Int32Array([0, 57, 115]);   // 1909, 1966, 2024
    await expectSameGrads(js, native, x, s, y, 1e-4);
    const soft = new Float32Array(3 * 116);
    y.forEach((l, b) => { soft[b * 116 + l] = 0.6; soft[b * 116 + Math.min(115, l + 1)] += 0.4; });
    await expectSameGrads(js, native, x, s, y, 1e-4, soft);
    // each output is log P(decade) + log P(unit): the 116 valid years hold part of the 130 combinations' mass,
    // and the loss is the parts' cross-entropy, -logits[y]
    const { loss, logits } = await native.lossAndGrads(x, s, y);
    for (let b = 0; b < 3; b++) {
      const mass = [...logits.subarray(b * 116, (b + 1) * 116)].reduce((a, v) => a + Math.exp(v), 0);
      expect(mass).toBeGreaterThan(0.5);
      expect(mass).toBeLessThan(1);
    }
    expect(loss).toBeCloseTo(-(logits[0] + logits[116 + 57] + logits[232 + 115]) / 3, 5);
    expect(await gradcheck(graph, 116, 'js')).toBeLessThan(1e-5);
  });

  it('agrees with native to ~1e-10 in float64', async () => {
    const graph = otherOps();
    const opts = { seed: 4, dtype: 'float64' } as const;
    const [js, native] = [await createModelFromGraph(graph, 3, { ...opts, backend: 'js' }), await createModelFromGraph(graph, 3, opts)];
    const s = [2, 3, 8, 8];
    await expectSameGrads(js, native, Float64Array.from(randn(numel(s), 13)), s, randomLabels(2, 3, 14), 1e-10);
  });

  it('embed() matches transformers\' image_embeds from the HF fixture within 1e-4', async () => {
    const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: FIXTURE, backend: 'js' });
    const emb = await m.embed(readF32(path.join(FIXTURE, 'input.f32')), [2, 3, 64, 64]);
    expect(maxAbsDiff(emb, readF32(path.join(FIXTURE, 'image_embeds.f32')))).toBeLessThan(1e-4);
  });

  it('refuses a device other than cpu, and a disposed model', async () => {
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 5, backend: 'js', device: 'cuda' }))
      .rejects.toThrow(/js backend runs on device 'cpu' only, not 'cuda'/);
    const m = await tiny('js');
    expect(() => m.getParams(['nope'])).toThrow(/no parameter named 'nope'/);
    expect(() => m.setParams({ 'head.bias': new Float32Array(2) })).toThrow(/params\['head\.bias'\]: expected 5 values/);
    m.dispose();
    await expect(m.predict(pixels, shape)).rejects.toThrow(/disposed/);
  });
});


describe('JS backend, on its own', () => {
  it('matches finite differences in float64 (clip_vit_tiny and the other ops)', async () => {
    const { buildBackbone } = await import('../src/index.js');
    expect(await gradcheck(buildBackbone('clip_vit_tiny', 4, 32), 4, 'js')).toBeLessThan(1e-5);
    expect(await gradcheck(otherOps(), 3, 'js')).toBeLessThan(1e-5);
  });

  it('GEMM: every transpose, offsets, leading dimensions, edge tiles, K blocks, accumulate and alpha', () => {
    const rng = new Rng(9);
    for (const [M, N, K] of [[1, 1, 1], [5, 7, 3], [37, 29, 300], [130, 9, 513]]) {
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          const lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
          const A = Float64Array.from({ length: 3 + lda * (ta ? K : M) }, () => rng.normal());
          const B = Float64Array.from({ length: 1 + ldb * (tb ? N : K) }, () => rng.normal());
          const C1 = Float64Array.from({ length: 2 + ldc * M }, () => rng.normal());
          const C2 = C1.slice();
          gemm(M, N, K, mat(A, 3, lda, ta), mat(B, 1, ldb, tb), C1, 2, ldc, true, 0.5);
          gemmNaive(M, N, K, mat(A, 3, lda, ta), mat(B, 1, ldb, tb), C2, 2, ldc, true, 0.5);
          expect(maxAbsDiff(C1, C2), `${M}x${N}x${K} ${ta} ${tb}`).toBeLessThan(1e-10);
        }
      }
    }
  });
});
