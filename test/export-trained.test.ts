// The exported files of a trained clip_vit_tiny compute what the native model computes.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { buildIndex } from '../src/data/dataset.js';
import { imageSpec } from '../src/data/images.js';
import { batches, evalOptions } from '../src/data/loader.js';
import { metadataOf, readModel, runOnnx, top1Agreement } from '../src/export/index.js';
import { createModel } from '../src/model/model.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { train } from '../src/train/train.js';
import { argmax, maxAbsDiff, scratchRun } from './helpers.js';

const home = process.cwd();
afterAll(() => process.chdir(home));

describe('exported models of a trained clip_vit_tiny', () => {
  for (const mode of ['static', 'dynamic'] as const) {
    it(`fp32 matches native within 1e-4, carries the label map, and ${mode} int8 agrees on >= 95% of test images`, async () => {
      const { cwd, config } = scratchRun((y) => y.replace(/num_epochs: \d+/g, 'num_epochs: 4').replaceAll('quantize_mode: static', `quantize_mode: ${mode}`));
      process.chdir(cwd);
      const r = await train('side', { configFile: config, dataExamples: true, batchSize: 16, quiet: true });
      expect(r.onnx.fp32).toMatch(/^models\/side\/side_\d{8}-\d{6}_fp32\.onnx$/);
      const meta = metadataOf(readModel(r.onnx.fp32!));
      expect(JSON.parse(meta.label_map)).toEqual(r.labelMap);
      expect(meta).toMatchObject({ model_type: 'side', backbone: 'clip_vit_tiny', img_size: '[32,32]', pretrained: 'none (random init)' });
      expect(Number(meta.parity_max_abs_diff)).toBeLessThan(1e-4);
      // the file says how to feed it, and which penny-train wrote it
      expect(JSON.parse(meta.preprocess)).toEqual({
        size: [32, 32], layout: 'NCHW', channels: 'RGB', scale: 255, mean: [0.48145466, 0.4578275, 0.40821073],
        std: [0.26862954, 0.26130258, 0.27577711], region: 'image', fit: 'cover', alignRoi: false, resample: 'exif-upright, triangle to 2x, bilinear 2x2 supersampled',
      });
      expect(readModel(r.onnx.fp32!).producerVersion).toBe(JSON.parse(fs.readFileSync(path.join(home, 'package.json'), 'utf8')).version);

      const cfg = { ...loadConfig('side', config), data_root: 'data_examples/' };
      const test = (await buildIndex(cfg)).test;
      const model = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, imageSize: 32 });
      model.setParams((await loadCheckpoint(r.checkpoints.best)).params);
      const native: number[] = [], fp32: number[] = [], int8: number[] = [];
      for await (const b of batches(test, evalOptions({ batchSize: 8, spec: { ...imageSpec(cfg), height: 32, width: 32 }, workers: 1 }))) {
        native.push(...await model.predict(b.pixels, b.shape));
        fp32.push(...await runOnnx(r.onnx.fp32!, b.pixels, b.shape));
        int8.push(...await runOnnx(r.onnx.int8!, b.pixels, b.shape));
      }
      expect(maxAbsDiff(fp32, native)).toBeLessThan(1e-4);
      expect(top1Agreement(int8, fp32, 5)).toBeGreaterThanOrEqual(0.95);
      // what train() reports is what these files do on the test split
      const labels = test.map((t) => t.label);
      const accOf = (logits: number[]) => labels.filter((l, i) => argmax(logits, i * 5, 5) === l).length / labels.length;
      expect(r.int8VsFp32).toMatchObject({ images: labels.length, top1Agreement: top1Agreement(int8, fp32, 5) });
      expect(r.int8VsFp32!.fp32.acc).toBeCloseTo(accOf(fp32), 10);
      expect(r.int8VsFp32!.int8.acc).toBeCloseTo(accOf(int8), 10);
      expect(fs.statSync(r.onnx.int8!).size).toBeLessThan(0.5 * fs.statSync(r.onnx.fp32!).size);
      expect(path.basename(r.onnx.int8!)).toBe(path.basename(r.onnx.fp32!).replace('_fp32', '_int8'));
    });
  }

  it("orientation: the int8 comparison carries each model's angle MAE and within-1-bin accuracy", async () => {
    const { cwd, config } = scratchRun((y) => y.replace(/num_epochs: \d+/g, 'num_epochs: 1'));
    process.chdir(cwd);
    const r = await train('orientation', { configFile: config, dataExamples: true, batchSize: 16, quiet: true });
    for (const m of [r.int8VsFp32!.fp32, r.int8VsFp32!.int8]) {
      expect(m.angleMae).toBeGreaterThanOrEqual(0);
      expect(m.angleMae).toBeLessThanOrEqual(180);
      expect(m.accWithin1).toBeGreaterThanOrEqual(m.acc);
    }
    expect(r.int8VsFp32!.fp32.angleMae).toBeCloseTo(r.test.angleMae!, 10);   // fp32 ONNX = the native model tested
    expect(fs.readFileSync(r.log, 'utf8')).toMatch(/INT8 vs fp32 on \d+ test images: acc [\d.]+ vs [\d.]+, F1 \(Macro\) [\d.]+ vs [\d.]+, Angle MAE [\d.]+ vs [\d.]+ deg, Acc \+-1 [\d.]+ vs [\d.]+, top-1 agreement/);
  });
});
