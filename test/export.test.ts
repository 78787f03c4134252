// ONNX export (fp32 from the graph IR), the IMX500 pass, INT8 quantization, parity in onnxruntime-node.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildBackbone, createModel, createModelFromGraph, decodeModel, emitOnnx, encodeModel, GraphBuilder, imx500Report, makeImx500Compatible,
  metadataOf, onnxParity, onnxruntimeOpTypes, opHistogram, peakActivationBytes, pennyMetadata, quantizeInt8, readModel, runOnnx, top1Agreement,
  writeOnnxAtomic, type ModelProto, type PennyModel,
} from '../src/index.js';
import { otherOps, randn, randomLabels } from './helpers.js';

const S = 32, C = 5, N = 24;
const px = 3 * S * S;
const shapeOf = (b: number) => [b, 3, S, S];
const x = randn(N * px, 11);
const y = randomLabels(N, C, 12);
let model: PennyModel;
let fp32: ModelProto;
let tmp: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-export-'));
  model = await createModel({ backbone: 'clip_vit_tiny', numClasses: C, imageSize: S, seed: 3, threads: 2 });
  // a few steps so the logits are trained-looking (separated), not the near-uniform ones of random init
  for (let i = 0; i < 25; i++) await model.trainStep(x, shapeOf(N), y, { lr: 2e-3 });
  fp32 = emitOnnx(model.graph, model.getParams());
});

afterAll(() => {
  model?.dispose();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const sub = (b: number, from = 0) => x.slice(from * px, (from + b) * px);

describe('fp32 export', () => {
  it('matches native predict() within 1e-4 in onnxruntime-node, at batch 1 and 3 (dynamic batch)', async () => {
    const bytes = encodeModel(fp32);
    for (const b of [1, 3]) {
      const ref = await model.predict(sub(b, 2), shapeOf(b));
      const { maxAbsDiff, logits } = await onnxParity(bytes, sub(b, 2), shapeOf(b), ref);
      expect(logits.length).toBe(b * C);
      expect(maxAbsDiff, `batch ${b}`).toBeLessThan(1e-4);
    }
  });

  it('folds batch norm into its conv (cnn_small after training steps): no BatchNormalization, same logits', async () => {
    const cnn = await createModel({ backbone: 'cnn_small', numClasses: C, imageSize: S, seed: 3, threads: 2 });
    for (let i = 0; i < 5; i++) await cnn.trainStep(x, shapeOf(N), y, { lr: 2e-3 });   // running statistics move
    const onnx = emitOnnx(cnn.graph, cnn.getParams());
    expect(opHistogram(onnx)).not.toHaveProperty('BatchNormalization');
    expect(opHistogram(onnx).Conv).toBe(6);
    const ref = await cnn.predict(sub(4), shapeOf(4));
    expect((await onnxParity(encodeModel(onnx), sub(4), shapeOf(4), ref)).maxAbsDiff).toBeLessThan(1e-4);
    cnn.dispose();
  });

  it('cnn_small_relief: the relief filter sums to zero per channel (a flat image has no relief), is a buffer training leaves alone, and ONNX agrees', async () => {
    const m = await createModel({ backbone: 'cnn_small_relief', numClasses: C, imageSize: S, seed: 3, threads: 2 });
    const w0 = Float32Array.from(m.getParams()['relief.weight']);
    // per channel: 1 at the centre, minus 1/25 everywhere (5 x 5), nothing across channels
    expect(w0.length).toBe(3 * 3 * 5 * 5);
    expect(w0[(0 * 3 + 0) * 25 + 12]).toBeCloseTo(1 - 1 / 25, 7);
    expect(w0[(1 * 3 + 0) * 25 + 12]).toBe(0);
    for (let c = 0; c < 3; c++) expect(w0.slice((c * 3 + c) * 25, (c * 3 + c + 1) * 25).reduce((a, b) => a + b, 0)).toBeCloseTo(0, 6);
    for (let i = 0; i < 3; i++) await m.trainStep(x, shapeOf(N), y, { lr: 2e-3 });
    expect(m.getParams()['relief.weight']).toEqual(w0);
    const onnx = emitOnnx(m.graph, m.getParams());
    expect(opHistogram(onnx).Conv).toBe(7);   // the relief filter, the stem, five stages
    expect((await onnxParity(encodeModel(onnx), sub(4), shapeOf(4), await m.predict(sub(4), shapeOf(4)))).maxAbsDiff).toBeLessThan(1e-4);
    // int8 would leave ~7% of the raw image in the relief (its small taps round unevenly): that conv stays float
    const { model: q } = await quantizeInt8(onnx, { calibration: [{ data: sub(12), shape: shapeOf(12) }, { data: sub(12, 12), shape: shapeOf(12) }] });
    expect(q.graph.initializer.find((t) => t.name === 'relief.weight')?.dataType).toBe(1);   // FLOAT
    expect((await onnxruntimeOpTypes(encodeModel(q))).QLinearConv).toBe(6);
    expect(top1Agreement(await runOnnx(encodeModel(q), x, shapeOf(N)), await m.predict(x, shapeOf(N)), C)).toBeGreaterThanOrEqual(0.95);
    m.dispose();
  });

  it('exports a batch norm that follows no conv as BatchNormalization', async () => {
    const g = new GraphBuilder('pixels');
    const bn = g.batchNorm(g.input, 'bn', 3);
    const pooled = g.op('mean', [bn], { axes: [2, 3] });
    const logits = g.linear(pooled, 'head', 3, 2, { weight: { kind: 'normal', std: 1 } }, 'logits');
    const m = await createModelFromGraph(g.build([3, 8, 8], { embeds: pooled, logits }), 2, { seed: 1 });
    m.setParams({ 'bn.running_mean': Float32Array.of(0.1, -0.2, 0.3), 'bn.running_var': Float32Array.of(0.5, 2, 1.5) });
    const onnx = emitOnnx(m.graph, m.getParams());
    expect(opHistogram(onnx).BatchNormalization).toBe(1);
    const input = randn(2 * 3 * 64, 4);
    expect((await onnxParity(encodeModel(onnx), input, [2, 3, 8, 8], await m.predict(input, [2, 3, 8, 8]))).maxAbsDiff).toBeLessThan(1e-5);
    m.dispose();
  });

  it('exports log_softmax as LogSoftmax with its axis (the last, and a middle one): same embeds and logits; the IMX500 report names it', async () => {
    const graph = otherOps();
    const m = await createModelFromGraph(graph, 3, { seed: 7 });
    try {
      const input = randn(3 * 3 * 64, 8), shape = [3, 3, 8, 8];
      const logits = await m.predict(input, shape);
      const onnx = emitOnnx(graph, m.getParams());
      const logSoftmaxes = onnx.graph.node.filter((n) => n.opType === 'LogSoftmax');
      expect(logSoftmaxes.map((n) => n.attribute?.find((a) => a.name === 'axis')?.i)).toEqual([-1, 1]);
      expect((await onnxParity(encodeModel(onnx), input, shape, logits)).maxAbsDiff).toBeLessThan(1e-5);
      const embeds = emitOnnx(graph, m.getParams(), { output: 'embeds' });
      expect((await onnxParity(embeds, input, shape, await m.forward(input, shape, 'embeds'))).maxAbsDiff).toBeLessThan(1e-4);
      const imx = makeImx500Compatible(onnx, { batch: 'dynamic' });
      expect(opHistogram(imx).LogSoftmax).toBe(2);
      expect(imx500Report(imx).unsupportedOps).toEqual(['LogSoftmax']);   // imx500-converter 3.18.2 refuses it
      expect((await onnxParity(imx, input, shape, logits)).maxAbsDiff).toBeLessThan(1e-3);   // exact GELU -> tanh form
    } finally {
      m.dispose();
    }
  });

  it('is opset 17 / IR 8 from penny-train, input `input` [batch,3,H,W], output `output` [batch,classes], weights as initializers', () => {
    const m = decodeModel(encodeModel(fp32));
    expect(m.irVersion).toBe(8);
    expect(m.opsetImport).toEqual([{ domain: '', version: 17 }]);
    expect(m.producerName).toBe('penny-train');
    const dims = (v: ModelProto['graph']['input'][number]) => v.type.tensorType.shape.dim.map((d) => d.dimParam || d.dimValue);
    expect(m.graph.input.map((i) => i.name)).toEqual(['input']);
    expect(dims(m.graph.input[0])).toEqual(['batch', 3, S, S]);
    expect(m.graph.output.map((o) => o.name)).toEqual(['output']);
    expect(dims(m.graph.output[0])).toEqual(['batch', C]);
    const names = new Set(m.graph.initializer.map((t) => t.name));
    expect(names).toContain('vision_model.embeddings.patch_embedding.weight');
    expect(names).toContain('head.weight');
    expect(Object.keys(opHistogram(m))).toEqual(expect.arrayContaining(['Conv', 'LayerNormalization', 'MatMul', 'Softmax', 'Gemm', 'Expand']));
  });

  it('writes metadata_props that read back equal from the file', () => {
    const labelMap = { obverse: 0, memorial: 1, shield: 2, wheat: 3, bicentennial: 4 };
    const meta = pennyMetadata({ labelMap, modelType: 'side', backbone: 'clip_vit_tiny', imgSize: S,
      mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711], pretrained: false });
    const file = path.join(tmp, 'side_fp32.onnx');
    writeOnnxAtomic(file, emitOnnx(model.graph, model.getParams(), { metadata: meta }));
    const back = metadataOf(readModel(file));
    expect(back).toEqual(meta);
    expect(Object.keys(back)).toEqual(['label_map', 'model_type', 'backbone', 'img_size', 'mean', 'std', 'pretrained']);
    expect(JSON.parse(back.label_map)).toEqual(labelMap);
    expect(JSON.parse(back.mean)).toEqual([0.48145466, 0.4578275, 0.40821073]);
  });

  it('refuses a missing or mis-sized parameter', () => {
    const params = model.getParams();
    const { ['head.weight']: _, ...missing } = params;
    expect(() => emitOnnx(model.graph, missing)).toThrow(/no value for parameter 'head.weight'/);
    expect(() => emitOnnx(model.graph, { ...params, 'head.bias': new Float32Array(2) })).toThrow(/'head.bias' has 2 values/);
  });
});

describe('writeOnnxAtomic', () => {
  it('creates a missing folder; where a file blocks the path, says which file and leaves nothing behind', () => {
    const file = path.join(tmp, 'missing', 'x.onnx');
    writeOnnxAtomic(file, encodeModel(fp32));
    expect(fs.statSync(file).size).toBe(encodeModel(fp32).length);
    const blocked = path.join(tmp, 'missing', 'x.onnx', 'y.onnx');
    expect(() => writeOnnxAtomic(blocked, encodeModel(fp32))).toThrow(/cannot write .*x\.onnx\/y\.onnx/);
    expect(fs.readdirSync(path.join(tmp, 'missing'))).toEqual(['x.onnx']);
  });

  it('removes its temporary file when the final rename fails, and never leaves a truncated .onnx', () => {
    const dir = path.join(tmp, 'rename');
    const file = path.join(dir, 'model.onnx');
    fs.mkdirSync(path.join(file, 'occupied'), { recursive: true });   // the target is a non-empty folder
    expect(() => writeOnnxAtomic(file, encodeModel(fp32))).toThrow(/cannot write .*model\.onnx/);
    expect(fs.readdirSync(dir)).toEqual(['model.onnx']);
    expect(fs.statSync(file).isDirectory()).toBe(true);
  });

  it('replaces an existing file whole', () => {
    const file = path.join(tmp, 'replace.onnx');
    fs.writeFileSync(file, 'old');
    const bytes = encodeModel(fp32);
    writeOnnxAtomic(file, bytes);
    expect(fs.statSync(file).size).toBe(bytes.length);
    expect(fs.readdirSync(tmp).filter((f) => /\.tmp/.test(f))).toEqual([]);
  });
});

describe('makeImx500Compatible', () => {
  const forbidden = /^(LayerNormalization|Gelu|FastGelu|BiasGelu|Erf|Attention|MultiHeadAttention|GroupQueryAttention)$/;

  it('decomposes LayerNorm, keeps the outputs within 1e-4, fixes batch 1 and drops the Shape/Expand broadcast', async () => {
    const imx = makeImx500Compatible(fp32);
    const ops = Object.keys(opHistogram(imx));
    expect(ops.filter((o) => forbidden.test(o) || o.includes(':'))).toEqual([]);
    expect(ops).toEqual(expect.arrayContaining(['ReduceMean', 'Sqrt', 'Div', 'Sub', 'Sigmoid', 'Softmax', 'MatMul']));
    expect(ops).not.toContain('Expand');
    expect(ops).not.toContain('Shape');
    expect(imx.graph.input[0].type.tensorType.shape.dim[0].dimValue).toBe(1);
    const ref = await model.predict(sub(1, 5), shapeOf(1));
    expect((await onnxParity(imx, sub(1, 5), shapeOf(1), ref)).maxAbsDiff).toBeLessThan(1e-4);
    expect(fp32.graph.node.some((n) => n.opType === 'LayerNormalization')).toBe(true);   // the input is untouched
  });

  it('keeps a dynamic batch on request', async () => {
    const imx = makeImx500Compatible(fp32, { batch: 'dynamic' });
    const ref = await model.predict(sub(3), shapeOf(3));
    expect((await onnxParity(imx, sub(3), shapeOf(3), ref)).maxAbsDiff).toBeLessThan(1e-4);
  });

  it('rewrites exact GELU (Erf) into Sigmoid/Mul within the tanh approximation', async () => {
    const g = new GraphBuilder('pixels');
    let h = g.op('conv2d', [g.input, g.param('c.weight', [8, 3, 4, 4], { kind: 'normal', std: 0.3 }, true),
      g.param('c.bias', [8], { kind: 'normal', std: 0.3 }, false)], { stride: 4, padding: 0 });
    h = g.op('relu6', [g.op('reshape', [g.op('gelu', [h], {})], { shape: [0, -1] })], {});
    const e = g.linear(g.op('relu', [h], {}), 'proj', 8 * 4 * 4, 6, { weight: { kind: 'normal', std: 0.2 } }, 'embeds');
    const logits = g.linear(g.op('softmax', [e], { axis: -1 }), 'head', 6, 3, { weight: { kind: 'normal', std: 0.5 } }, 'logits');
    const graph = g.build([3, 16, 16], { embeds: e, logits });
    const m = await createModelFromGraph(graph, 3, { seed: 4 });
    try {
      const px16 = randn(4 * 3 * 16 * 16, 5), shape = [4, 3, 16, 16];
      const ref = await m.predict(px16, shape);
      const onnx = emitOnnx(graph, m.getParams());
      expect(Object.keys(opHistogram(onnx))).toContain('Erf');
      expect((await onnxParity(onnx, px16, shape, ref)).maxAbsDiff).toBeLessThan(1e-5);
      const imx = makeImx500Compatible(onnx, { batch: 'dynamic' });
      expect(Object.keys(opHistogram(imx)).filter((o) => forbidden.test(o))).toEqual([]);
      expect((await onnxParity(imx, px16, shape, ref)).maxAbsDiff).toBeLessThan(1e-3);
    } finally {
      m.dispose();
    }
  });

  it('reports op types, parameters and the int8 size against the 8 MB sensor memory', () => {
    const r = imx500Report(makeImx500Compatible(fp32));
    expect(r.parameters).toBe(model.parameterCount);
    expect(r.int8WeightBytes).toBe(model.parameterCount);
    expect(r.fits).toBe(true);
    expect(r.unsupportedOps).toEqual([]);
    expect(r.opTypes.ReduceMean).toBeGreaterThan(0);
    expect(r.text).toMatch(/op types: .*MatMul/);
    // a ViT-B/32-sized weight (88M parameters) cannot fit: said plainly
    const big: ModelProto = { ...fp32, graph: { ...fp32.graph, initializer: [{ name: 'w', dims: [88_000, 1000], dataType: 1 }],
      node: [{ opType: 'MatMul', input: ['input', 'w'], output: ['output'] }] } };
    const rb = imx500Report(big);
    expect(rb.fits).toBe(false);
    expect(rb.statement).toMatch(/cannot fit on the IMX500.*83\.9 MB.*8\.0 MB/);
  });

  it('counts the activations alive at once, and weights plus activations must fit', () => {
    // input [3, 4, 4] -> relu -> relu: at each node one value is read and one written, 2 x 48 bytes
    const g = new GraphBuilder('x');
    const a = g.op('relu', [g.input], {});
    const b = g.op('relu', [a], {});
    expect(peakActivationBytes(g.build([3, 4, 4], { embeds: a, logits: b }))).toBe(96);
    // cnn_small at 128 px: the stem's conv output and its batch norm's, 16 x 128 x 128 each, are alive together
    const cnn = buildBackbone('cnn_small', 5, 128);
    const peak = peakActivationBytes(cnn);
    expect(peak).toBeGreaterThanOrEqual(2 * 16 * 128 * 128);
    expect(peak).toBeLessThan(3 * 16 * 128 * 128);
    const r = imx500Report(makeImx500Compatible(fp32), 8 * 1024 * 1024);
    expect(r.int8ActivationBytes).toBe(8 * 1024 * 1024);
    expect(r.fits).toBe(false);
    expect(r.text).toMatch(/int8 activations, most alive at once \(one image\): 8\.0 MB/);
    expect(r.statement).toMatch(/int8 weights and activations need/);
  });
});

describe('int8', () => {
  const calibration = () => [{ data: sub(12), shape: shapeOf(12) }, { data: sub(12, 12), shape: shapeOf(12) }];
  let ref: Float32Array;
  beforeAll(async () => { ref = (await model.predict(x, shapeOf(N))) as Float32Array; });

  for (const [mode, method] of [['static', 'minmax'], ['static', 'percentile'], ['dynamic', undefined]] as const) {
    it(`${mode}${method ? ` (${method})` : ''} runs on integer kernels and agrees on top-1 with fp32 on >= 95%`, async () => {
      const { model: q, stats } = await quantizeInt8(fp32, { mode, method, calibration: calibration() });
      const bytes = encodeModel(q);
      expect(bytes.length).toBeLessThan(0.4 * encodeModel(fp32).length);
      expect(stats.quantizedNodes.MatMul).toBeGreaterThanOrEqual(12);
      expect(imx500Report(q).parameters).toBe(model.parameterCount);
      const logits = await runOnnx(bytes, x, shapeOf(N));
      expect(top1Agreement(logits, ref, C)).toBeGreaterThanOrEqual(0.95);
      // what onnxruntime runs after its fusions: integer kernels, per-channel weights included
      const kernels = await onnxruntimeOpTypes(bytes);
      if (mode === 'static') {
        expect(stats.calibrationSamples).toBe(N);
        expect(Object.keys(kernels)).toEqual(expect.arrayContaining(['com.microsoft:MatMulIntegerToFloat', 'com.microsoft:QGemm']));
        // attention's activation x activation MatMuls stay float, as they were
        const floatMatMuls = (m: ModelProto) => m.graph.node.filter((n) => n.opType === 'MatMul' && !m.graph.initializer.some((t) => t.name === n.input[1]) &&
          !n.input.some((i) => i.endsWith('_dequantized'))).length;
        expect(floatMatMuls(q)).toBe(2 * 2);
        expect(floatMatMuls(q)).toBe(floatMatMuls(fp32));
        // the patch embedding (no Relu after it): int8 weights in all 8 bits, read through DequantizeLinear by a float Conv
        expect(kernels.QLinearConv ?? 0).toBe(0);
        const patch = q.graph.initializer.find((t) => t.name.startsWith('vision_model.embeddings.patch_embedding.weight') && t.dataType === 3)!;
        expect(new Int8Array(new Uint8Array(patch.rawData!).buffer).reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBe(127);
      } else {
        const integer = (kernels['com.microsoft:DynamicQuantizeMatMul'] ?? 0) + (kernels['com.microsoft:MatMulIntegerToFloat'] ?? 0);
        expect(integer).toBe(12 + 2);   // q, k, v, out, fc1, fc2 of 2 layers, projection, head
      }
    });
  }

  it('static int8 of a CNN: 7-bit weights by default (no vpmaddubsw saturation), conv ranges taken after their Relu', async () => {
    const cnn = await createModel({ backbone: 'cnn_small', numClasses: C, imageSize: S, seed: 3, threads: 2 });
    for (let i = 0; i < 3; i++) await cnn.trainStep(x, shapeOf(N), y, { lr: 2e-3 });
    const onnx = emitOnnx(cnn.graph, cnn.getParams());
    const cnnRef = await cnn.predict(x, shapeOf(N));
    cnn.dispose();
    const weightMax = (m: ModelProto) => Math.max(...m.graph.initializer.filter((t) => t.dataType === 3 && t.dims.length === 4)
      .map((t) => new Int8Array(new Uint8Array(t.rawData!).buffer).reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
    const q7 = await quantizeInt8(onnx, { calibration: calibration() });
    const q8 = await quantizeInt8(onnx, { calibration: calibration(), reduceRange: false });
    expect(weightMax(q7.model)).toBe(63);
    expect(weightMax(q8.model)).toBe(127);
    // every Conv output is read by a Relu, which is what gets quantized: a range from 0 (zero point 0)
    const quantized = q7.model.graph.node.filter((n) => n.opType === 'QuantizeLinear').map((n) => n.input[0]);
    const producers = new Map(onnx.graph.node.flatMap((n) => n.output.map((o) => [o, n.opType] as const)));
    expect(quantized.filter((t) => producers.get(t) === 'Conv')).toEqual([]);
    expect(quantized.filter((t) => producers.get(t) === 'Relu').length).toBe(6);
    // onnxruntime folds each Relu into its QuantizeLinear: six integer convs, no float Relu left
    const kernels = await onnxruntimeOpTypes(encodeModel(q7.model));
    expect(kernels.QLinearConv).toBe(6);
    expect(kernels.Relu ?? 0).toBe(0);
    expect(top1Agreement(await runOnnx(encodeModel(q7.model), x, shapeOf(N)), cnnRef, C)).toBeGreaterThanOrEqual(0.95);
  });

  it('percentile calibration clips the tails that min-max keeps', async () => {
    const scaleOf = (m: ModelProto) => {
      const t = m.graph.initializer.find((i) => i.name === 'input_scale')!;
      return new Float32Array(new Uint8Array(t.rawData!).buffer)[0];
    };
    // a CNN: its first Conv reads the input through a calibrated QuantizeLinear
    const cnn = await createModel({ backbone: 'cnn_small', numClasses: C, imageSize: S, seed: 3, threads: 2 });
    const onnx = emitOnnx(cnn.graph, cnn.getParams());
    cnn.dispose();
    const minmax = await quantizeInt8(onnx, { calibration: calibration() });
    const pct = await quantizeInt8(onnx, { calibration: calibration(), method: 'percentile', percentile: 99 });
    // the input is N(0, 1): min-max spans about +-4.5, the 1% tails about +-2.6
    expect(scaleOf(pct.model)).toBeLessThan(0.7 * scaleOf(minmax.model));
    expect(scaleOf(pct.model)).toBeGreaterThan(0.4 * scaleOf(minmax.model));
  });

  it('quantizes the IMX500 graph too (batch-1 calibration)', async () => {
    const { model: q } = await quantizeInt8(makeImx500Compatible(fp32), { calibration: calibration() });
    const r1 = await model.predict(sub(1, 3), shapeOf(1));
    const l1 = await runOnnx(q, sub(1, 3), shapeOf(1));
    expect(top1Agreement(l1, r1, C)).toBe(1);
  });

  it('refuses too few calibration images, or none', async () => {
    await expect(quantizeInt8(fp32, { calibration: [{ data: sub(4), shape: shapeOf(4) }] }))
      .rejects.toThrow(/needs at least 16 calibration images, got 4/);
    await expect(quantizeInt8(fp32, { mode: 'static' })).rejects.toThrow(/needs at least 16 calibration images, got 0/);
    await expect(quantizeInt8(fp32, { calibration: [{ data: sub(2), shape: shapeOf(2) }], minCalibrationSamples: 8 }))
      .rejects.toThrow(/at least 8 calibration images, got 2/);
  });
});
