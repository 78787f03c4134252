// Prediction (issue 12): one preprocess shared with training's eval transform, the ROI locator, loadModel over ONNX
// and checkpoints, readCoin's chain, and `penny-train predict` with its exit statuses.
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { findCircle } from '../src/backend/native.js';
import { loadConfig } from '../src/config/config.js';
import { buildIndex, type Box } from '../src/data/dataset.js';
import { preprocessRecipe } from '../src/data/images.js';
import { allBatches, evalOptions } from '../src/data/loader.js';
import { imageSpec } from '../src/data/images.js';
import { decodeModel, encodeModel } from '../src/export/onnx-proto.js';
import { findCoin, iou, learnRoiLocator, placeRoi, roiTemplate } from '../src/predict/locate.js';
import { loadModel } from '../src/predict/model.js';
import { decodeInput, preprocess } from '../src/predict/preprocess.js';
import { readCoin, readCoins } from '../src/predict/read-coin.js';
import { train, type TrainResult } from '../src/train/train.js';
import { ROOT, runCli, scratchRun } from './helpers.js';

const EDGE = path.join(ROOT, 'configs', 'edge.yaml');
const examples = (key: 'side' | 'date' | 'mint', edit: Record<string, unknown> = {}) =>
  ({ ...loadConfig(key, EDGE), data_root: path.join(ROOT, 'data_examples'), metadata_json_path: path.join(ROOT, 'metadata', 'metadata.json'), roi_json_path: path.join(ROOT, 'metadata', 'roi_coordinates.json'), ...edit });

describe('preprocess()', () => {
  // The exact eval tensor: prediction must feed a model what validation fed it in training, bit for bit.
  for (const [key, edit] of [['side', {}], ['date', {}], ['date', { align_roi: false, roi_pad: 0.2 }], ['mint', { roi_fit: 'stretch' }], ['mint', { roi_pad: 0.3 }]] as const) {
    it(`gives training's eval tensor exactly: ${key} ${JSON.stringify(edit)}`, async () => {
      const cfg = examples(key, edit);
      const index = await buildIndex(cfg);
      const samples = index.val.slice(0, 4);
      const [batch] = await allBatches(samples, evalOptions({ batchSize: 4, spec: imageSpec(cfg), workers: 0 }));
      const recipe = JSON.parse(JSON.stringify(preprocessRecipe(cfg, index.roiAspect)));   // as read back from metadata
      const n = 3 * cfg.img_size[0] * cfg.img_size[1];
      for (const [i, s] of samples.entries()) {
        const theirs = Buffer.from(batch.pixels.buffer, i * n * 4, n * 4);
        // from the file's bytes, and from its pixels decoded once (as readCoins feeds every model)
        for (const image of [fs.readFileSync(s.file), await decodeInput(s.file)]) {
          const mine = await preprocess(image, recipe, { roi: s.roi, angle: s.angle });
          expect(Buffer.from(mine.buffer).equals(theirs), s.uid).toBe(true);
        }
      }
    });
  }

  it('asks for what an ROI model needs, naming the image', async () => {
    const cfg = examples('date');
    const recipe = preprocessRecipe(cfg, 2);
    const img = path.join(ROOT, 'data_examples', 'UID000001.jpg');
    await expect(preprocess(img, recipe)).rejects.toThrow(/reads the date_roi; no ROI was given or located for .*UID000001\.jpg/);
    await expect(preprocess(img, recipe, { roi: { x: 10, y: 10, width: 20, height: 10 } })).rejects.toThrow(/needs the coin's angle/);
    await expect(preprocess(img, recipe, { roi: { x: 250, y: 10, width: 20, height: 10 }, angle: 0 })).rejects.toThrow(/does not lie inside the 256x256 image/);
    await expect(preprocess(Buffer.from('not an image'), recipe, { angle: 0, roi: { x: 0, y: 0, width: 1, height: 1 } })).rejects.toThrow(/cannot read an image of 12 bytes/);
  });
});

describe('ROI locator', () => {
  /** a disc of radius r at (cx, cy) on a noisy background, 2x2 supersampled edges */
  const disc = (w: number, h: number, cx: number, cy: number, r: number, inside: number, outside: number) => {
    const g = new Uint8Array(w * h);
    let seed = 1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let cover = 0;
        for (const [dx, dy] of [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]) cover += Number((x + dx - cx) ** 2 + (y + dy - cy) ** 2 < r * r) / 4;
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        g[y * w + x] = Math.round(cover * inside + (1 - cover) * outside + ((seed / 2 ** 31) - 0.5) * 20);
      }
    }
    return g;
  };

  it('finds a disc lighter or darker than its background to within a pixel', async () => {
    for (const [cx, cy, r, a, b] of [[60.3, 70.8, 41.2, 190, 60], [70, 52.5, 30.6, 40, 170], [64, 64, 55, 200, 90]]) {
      const c = await findCircle(disc(128, 128, cx, cy, r, a, b), 128, 128);
      expect(Math.hypot(c.cx - cx, c.cy - cy)).toBeLessThan(1);
      expect(Math.abs(c.r - r)).toBeLessThan(1);
    }
    await expect(findCircle(new Uint8Array(64 * 64).fill(7), 64, 64)).rejects.toThrow(/no edges/);
  });

  it('learns back a template from the boxes it places, at any angle', () => {
    const t = { u: 0.55, v: 0.34, width: 0.47, height: 0.21, boxes: 0 };
    const boxes = [0, 12, 95, 170, 183, 260, 275, 350].map((angle, i) => {
      const coin = { cx: 120 + i, cy: 130 - i, r: 100 + 2 * i };
      return { roi: placeRoi(t, coin, angle, 512, 512), coin, angle };
    });
    const back = roiTemplate(boxes);
    for (const k of ['u', 'v', 'width', 'height'] as const) expect(back[k]).toBeCloseTo(t[k], 9);
    expect(back.boxes).toBe(8);
    expect(iou({ x: 0, y: 0, width: 10, height: 10 }, { x: 5, y: 0, width: 10, height: 10 })).toBeCloseTo(1 / 3, 12);
  });

  it('places the date and mint boxes of held-out example photos (mean IoU >= 0.8 against the ROI file)', async () => {
    for (const key of ['date', 'mint'] as const) {
      const index = await buildIndex(examples(key));
      const learned = await learnRoiLocator(index.train, [...index.val, ...index.test]);
      expect(learned!.valIou, key).toBeGreaterThanOrEqual(key === 'date' ? 0.85 : 0.75);
    }
  });

  it('says so when an image holds nothing to find', async () => {
    const flat = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } }).png().toBuffer();
    await expect(findCoin(flat)).rejects.toThrow(/no coin found/);
    const strip = await sharp({ create: { width: 2000, height: 8, channels: 3, background: '#808080' } }).png().toBuffer();
    await expect(findCoin(strip)).rejects.toThrow(/no coin found: a 2000 x 8 px picture is too narrow to hold one/);
  });
});

describe('trained models', () => {
  let cwd: string, config: string;
  const runs: Partial<Record<'side' | 'orientation' | 'date', TrainResult>> = {};
  const obverse = path.join(ROOT, 'data_examples', 'UID000003.jpg');   // obverse, angle 6.93
  const rois = JSON.parse(fs.readFileSync(path.join(ROOT, 'metadata', 'roi_coordinates.json'), 'utf8')) as Record<string, { date_roi: Box }>;
  const meta = JSON.parse(fs.readFileSync(path.join(ROOT, 'metadata', 'metadata.json'), 'utf8')) as { uid: string; side: string; angle?: number }[];
  const angle = meta.find((e) => e.uid === 'UID000003.jpg')!.angle!;

  beforeAll(async () => {
    ({ cwd, config } = scratchRun((y) => y.replace(/num_epochs: \d+/g, 'num_epochs: 1').replace('model_type: date', 'model_type: date\n  align_roi: true')));
    const home = process.cwd();
    process.chdir(cwd);
    try {
      for (const key of ['side', 'orientation', 'date'] as const) runs[key] = await train(key, { configFile: config, dataExamples: true, quiet: true, threads: 2 });
    } finally {
      process.chdir(home);
    }
  }, 300_000);

  it('loads fp32, int8 and the checkpoint with their recipe, labels and locator; fp32 and the checkpoint agree', async () => {
    const at = (f: string) => path.join(cwd, f);
    const fp32 = await loadModel(at(runs.date!.onnx.fp32!));
    const int8 = await loadModel(at(runs.date!.onnx.int8!));
    const ckpt = await loadModel(at('output/checkpoints/date_best.pt'));
    try {
      for (const m of [fp32, int8, ckpt]) {
        expect(m.modelType).toBe('date');
        expect(m.labels).toHaveLength(116);
        expect(m.recipe).toMatchObject({ region: 'date_roi', alignRoi: true, size: [32, 32] });
        expect(m.roiLocator!.boxes).toBeGreaterThan(50);
      }
      expect(int8.quantization).toMatch(/static QDQ/);
      const where = { roi: rois.UID000003.date_roi, angle: angle, topK: 3 };
      const [a, b] = [await fp32.classify(obverse, where), await ckpt.classify(obverse, where)];
      expect(a.topK).toHaveLength(3);
      expect(a.label).toBe(b.label);
      for (let i = 0; i < 3; i++) expect(Math.abs(a.topK[i].probability - b.topK[i].probability)).toBeLessThan(1e-4);
      expect(a.topK[0].probability).toBeGreaterThanOrEqual(a.topK[1].probability);
    } finally {
      await Promise.all([fp32, int8, ckpt].map((m) => m.close()));
    }
  });

  it('readCoin: side, then the angle, then the date read from a located ROI; a reverse stops after side', async () => {
    const models = {
      side: await loadModel(path.join(cwd, runs.side!.onnx.fp32!)),
      orientation: await loadModel(path.join(cwd, runs.orientation!.onnx.fp32!)),
      date: await loadModel(path.join(cwd, runs.date!.onnx.fp32!)),
    };
    try {
      const r = await readCoin(obverse, models, { angle: angle });
      expect(r.angleSource).toBe('given');
      expect(r.date!.roiSource).toBe('located');
      expect(iou(r.date!.roi, rois.UID000003.date_roi)).toBeGreaterThan(0.6);
      const chained = await readCoin(fs.readFileSync(obverse), models);
      if (chained.side!.label === 'obverse') {
        expect(chained.angleSource).toBe('orientation');
        expect(chained.angle).toBe(chained.orientation!.angle);
        expect(chained.date).toBeDefined();
      }
      const reverse = meta.find((e) => e.side === 'reverse')!;
      const onReverse = await readCoin(path.join(ROOT, 'data_examples', reverse.uid), models, { angle: 0 });
      if (onReverse.side!.label !== 'obverse') expect(onReverse.date).toBeUndefined();
    } finally {
      await Promise.all(Object.values(models).map((m) => m.close()));
    }
  });

  it('readCoins: chunk by chunk (4 batches each), every reading its own image\'s, per-image ROIs too, past a broken image', async () => {
    const models = { side: await loadModel(path.join(cwd, runs.side!.onnx.fp32!)), date: await loadModel(path.join(cwd, runs.date!.onnx.fp32!)) };
    try {
      const files = meta.filter((e) => e.side === 'obverse').slice(0, 9).map((e) => path.join(ROOT, 'data_examples', e.uid));
      const images = [...files.slice(0, 5), Buffer.from('not an image'), ...files.slice(5)];
      const roi = images.map((im) => (typeof im === 'string' ? { date: rois[path.basename(im, '.jpg')].date_roi } : undefined));
      const all = await readCoins(images, models, { batchSize: 2, roi, angle: 0 });   // chunks of 8: the broken one in the first
      expect(all).toHaveLength(10);
      expect(all[5].error).toMatch(/cannot read an image of 12 bytes/);
      for (const [i, im] of images.entries()) {
        if (i === 5) continue;
        const one = await readCoin(im, models, { roi: roi[i], angle: 0 });
        expect(all[i].error, all[i].image).toBeUndefined();
        expect([all[i].image, all[i].side?.label, all[i].date?.label, all[i].date?.roi]).toEqual([one.image, one.side?.label, one.date?.label, one.date?.roi]);
      }
    } finally {
      await Promise.all(Object.values(models).map((m) => m.close()));
    }
  });

  it('penny-train predict: a table, JSON lines, and exit statuses for bad images and models', async () => {
    const folder = path.join(cwd, 'photos');
    fs.mkdirSync(folder);
    for (const uid of ['UID000003.jpg', 'UID000004.jpg']) fs.copyFileSync(path.join(ROOT, 'data_examples', uid), path.join(folder, uid));
    fs.writeFileSync(path.join(folder, 'broken.jpg'), fs.readFileSync(obverse).subarray(0, 300));
    const table = await runCli(['predict', folder, '--models', 'models'], cwd);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^image\s+side\s+angle\s+date\s+mint$/);
    expect(table.stdout).toMatch(/UID000003\.jpg\s+(obverse|memorial|shield|wheat|bicentennial) \(\d+\.\d%\)/);
    expect(table.stdout).toMatch(/broken\.jpg .*error: /);
    expect(table.stderr).toMatch(/2 of 3 images read in .* s \(.* images\/s\); 1 could not be: .*broken\.jpg/);

    const json = await runCli(['predict', obverse, '--models', 'models', '--json', '--top-k', '2', '--angle', String(angle)], cwd);
    expect(json.code, json.stderr).toBe(0);
    const line = JSON.parse(json.stdout.trim());
    expect(line.side.topK).toHaveLength(2);
    expect(line.angleSource).toBe('given');

    const named = await runCli(['predict', path.join(folder, 'broken.jpg'), '--models', 'models'], cwd);
    expect(named.code).toBe(2);
    expect(named.stderr).toMatch(/could not read .*broken\.jpg/);

    const notOnnx = path.join(cwd, 'fake.onnx');
    fs.writeFileSync(notOnnx, 'hello');
    const bad = await runCli(['predict', obverse, '--models', notOnnx], cwd);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/fake\.onnx is not a readable ONNX model/);

    const bare = decodeModel(fs.readFileSync(path.join(cwd, runs.side!.onnx.fp32!)));
    bare.metadataProps = bare.metadataProps.filter((p) => p.key !== 'preprocess');
    fs.writeFileSync(path.join(cwd, 'old.onnx'), encodeModel(bare));
    const old = await runCli(['predict', obverse, '--models', 'old.onnx'], cwd);
    expect(old.code).toBe(2);
    expect(old.stderr).toMatch(/old\.onnx: its metadata has no valid 'preprocess'.*export the checkpoint again/);

    // a model trained on pixels resampled another way (penny-train before 0.2.0) still reads, with a warning
    const lanczos = decodeModel(fs.readFileSync(path.join(cwd, runs.side!.onnx.fp32!)));
    const recipe = lanczos.metadataProps.find((p) => p.key === 'preprocess')!;
    recipe.value = JSON.stringify({ ...JSON.parse(recipe.value), resample: 'exif-upright, bilinear 2x2 supersampled' });
    fs.writeFileSync(path.join(cwd, 'lanczos.onnx'), encodeModel(lanczos));
    const warned = await runCli(['predict', obverse, '--models', 'lanczos.onnx'], cwd);
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.stderr).toMatch(/lanczos\.onnx learned from pixels resampled as 'exif-upright, bilinear 2x2 supersampled'.*train it again/);

    const both = await runCli(['predict', obverse, '--models', runs.date!.onnx.fp32!, '--roi', '1,2,3'], cwd);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/an ROI is x,y,width,height/);

    const help = await runCli(['help', 'predict'], cwd);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: penny-train predict \[options\] <images\.\.\.>/);
  });
});
