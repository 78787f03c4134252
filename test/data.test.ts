// Dataset index: the UID-hash split, labels per model, ROI padding, and validation that reports every problem.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderPixels, resamplePixels } from '../src/backend/native.js';
import { loadConfig, type TrainingConfig } from '../src/config/config.js';
import { buildIndex, parseMetadata } from '../src/data/dataset.js';
import { padRoi } from '../src/data/roi.js';
import sharp from 'sharp';
import type { Augment } from '../src/config/config.js';
import { allBatches, batches } from '../src/data/loader.js';
import { augmentRng, decode, ImageCache, render, type Decoded } from '../src/data/images.js';
import { labelMap, labelOf } from '../src/data/labels.js';
import { splitOf } from '../src/data/split.js';
import { DataError } from '../src/errors.js';
import { ROOT } from './helpers.js';

describe('split', () => {
  it('is 80/10/10 within 2 points on 10,000 uids, deterministic and independent of order', () => {
    const uids = Array.from({ length: 10_000 }, (_, i) => `UID${String(i).padStart(6, '0')}.jpg`);
    const counts = { train: 0, val: 0, test: 0 };
    for (const u of uids) counts[splitOf(u)]++;
    expect(Math.abs(counts.train / 100 - 80)).toBeLessThan(2);
    expect(Math.abs(counts.val / 100 - 10)).toBeLessThan(2);
    expect(Math.abs(counts.test / 100 - 10)).toBeLessThan(2);
    const reversed = [...uids].reverse().map(splitOf).reverse();
    expect(reversed).toEqual(uids.map(splitOf));
  });

  it('follows the original formula', () => {
    const n = (s: string) => BigInt('0x' + createHash('sha256').update(s).digest('hex'));
    for (const uid of ['a.jpg', 'UID0001.jpg', 'x']) {
      const expected = n(uid) % 100n < 80n ? 'train' : n(uid + '_val_test_split_salt') % 2n === 0n ? 'val' : 'test';
      expect(splitOf(uid)).toBe(expected);
    }
  });
});

describe('labels', () => {
  it('derives each model\'s label as the original does', () => {
    const obv = { uid: 'a', side: 'obverse', angle: 359.9, year: 1909, mint_mark: 'nomint' } as const;
    const rev = { uid: 'b', side: 'reverse', type: 'bicentennial' } as const;
    expect([labelOf('side', obv), labelOf('side', rev)]).toEqual([0, 4]);
    expect([labelOf('orientation', obv), labelOf('orientation', { ...obv, angle: 3 }), labelOf('orientation', rev)]).toEqual([119, 1, null]);
    expect([labelOf('date', obv), labelOf('date', { ...obv, year: 2024 }), labelOf('date', rev)]).toEqual([0, 115, null]);
    expect([labelOf('mint', obv), labelOf('mint', { ...obv, mint_mark: 'D' }), labelOf('mint', rev)]).toEqual([3, 0, null]);
    expect(Object.keys(labelMap('orientation'))).toHaveLength(120);
    expect(labelMap('orientation')['1']).toBe('3-5');
    expect(labelMap('date')['115']).toBe('2024');
    expect(labelMap('side')).toEqual({ 0: 'obverse', 1: 'memorial', 2: 'shield', 3: 'wheat', 4: 'bicentennial' });
  });

  it('reads metadata as a list or a dict, accepting no_mint', () => {
    const problems: string[] = [];
    const fromDict = parseMetadata({ 'a.jpg': { side: 'obverse', year: 1950, mint_mark: 'no_mint' } }, 'm.json', 'mint', problems);
    expect(fromDict).toEqual([{ uid: 'a.jpg', side: 'obverse', year: 1950, mint_mark: 'nomint' }]);
    expect(parseMetadata([{ uid: 'a.jpg', side: 'reverse', type: 'wheat' }], 'm.json', 'side', problems)).toHaveLength(1);
    expect(problems).toEqual([]);
  });
});

describe('ROI crops', () => {
  it('pads 5% of the ROI on each side and clips at the image edges', () => {
    expect(padRoi({ x: 100, y: 50, width: 40, height: 20 }, 256, 256)).toEqual({ x: 98, y: 49, width: 44, height: 22 });
    expect(padRoi({ x: 0, y: 0, width: 40, height: 20 }, 256, 256)).toEqual({ x: 0, y: 0, width: 42, height: 21 });
    expect(padRoi({ x: 216, y: 236, width: 40, height: 20 }, 256, 256)).toEqual({ x: 214, y: 235, width: 42, height: 21 });
    expect(padRoi({ x: 1, y: 1, width: 254, height: 254 }, 256, 256)).toEqual({ x: 0, y: 0, width: 256, height: 256 });
  });
});

describe('validation', () => {
  function broken(model: 'side' | 'date' | 'mint', metadata: unknown, rois: unknown = {}, images: Record<string, string> = {}): TrainingConfig {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-data-'));
    fs.writeFileSync(path.join(dir, 'metadata.json'), typeof metadata === 'string' ? metadata : JSON.stringify(metadata));
    fs.writeFileSync(path.join(dir, 'rois.json'), JSON.stringify(rois));
    for (const [name, from] of Object.entries(images)) {
      if (from === 'garbage') fs.writeFileSync(path.join(dir, name), 'not an image');
      else fs.copyFileSync(path.join(ROOT, 'data_examples', from), path.join(dir, name));
    }
    return { ...loadConfig(model, path.join(ROOT, 'configs', 'training_config.yaml')), data_root: dir, metadata_json_path: path.join(dir, 'metadata.json'), roi_json_path: path.join(dir, 'rois.json') };
  }
  const errorOf = async (cfg: TrainingConfig) => {
    try {
      await buildIndex(cfg);
    } catch (e) {
      expect(e).toBeInstanceOf(DataError);
      return (e as Error).message;
    }
    throw new Error('no error');
  };

  it('reports every bad field, naming file, UID, field and value', async () => {
    const msg = await errorOf(broken('side', [
      { uid: 'a.jpg', side: 'sideways' },
      { uid: 'b.jpg', side: 'reverse', type: 'lincoln' },
      { side: 'obverse' },
      { uid: 'c.jpg', side: 'obverse', year: 1850, angle: 360, mint_mark: 'X' },
      { uid: 'd.jpg', side: 'obverse' },
    ]));
    expect(msg).toMatch(/\(7 problems\)/);
    expect(msg).toMatch(/UID d\.jpg: image .*d\.jpg not found/);
    expect(msg).toMatch(/metadata\.json: UID a\.jpg: side "sideways" is not obverse or reverse/);
    expect(msg).toMatch(/UID b\.jpg: type "lincoln" is not one of memorial, shield, wheat, bicentennial/);
    expect(msg).toMatch(/entry #2: missing uid/);
    expect(msg).toMatch(/UID c\.jpg: angle 360 is not in \[0, 360\)/);
    expect(msg).toMatch(/UID c\.jpg: year 1850 is not a year in 1909-2024/);
    expect(msg).toMatch(/UID c\.jpg: mint_mark "X" is not one of D, S, P, nomint/);
  });

  it('reports missing and undecodable images, missing and outside ROIs, and lists at most 20', async () => {
    const meta = [
      { uid: 'ok.jpg', side: 'obverse', year: 1990, mint_mark: 'D' },
      { uid: 'gone.jpg', side: 'obverse', year: 1990, mint_mark: 'D' },
      { uid: 'bad.jpg', side: 'obverse', year: 1990, mint_mark: 'D' },
      { uid: 'noroi.jpg', side: 'obverse', year: 1990, mint_mark: 'D' },
      { uid: 'out.jpg', side: 'obverse', year: 1990, mint_mark: 'D' },
    ];
    const rois = { ok: { date_roi: { x: 1, y: 1, width: 10, height: 10 } }, out: { date_roi: { x: 250, y: 10, width: 20, height: 10 } } };
    const msg = await errorOf(broken('date', meta, rois, { 'ok.jpg': 'UID000001.jpg', 'bad.jpg': 'garbage', 'noroi.jpg': 'UID000001.jpg', 'out.jpg': 'UID000001.jpg' }));
    expect(msg).toMatch(/UID gone\.jpg: image .*gone\.jpg not found/);
    expect(msg).toMatch(/UID bad\.jpg: image .*bad\.jpg cannot be decoded/);
    expect(msg).toMatch(/rois\.json: UID noroi\.jpg: no date_roi for this date sample/);
    expect(msg).toMatch(/rois\.json: UID out\.jpg: date_roi \{"x":250,"y":10,"width":20,"height":10\} lies outside the 256x256 image/);

    const many = Array.from({ length: 25 }, (_, i) => ({ uid: `u${i}.jpg`, side: 'bogus' }));
    const long = await errorOf(broken('side', many));
    expect(long).toMatch(/\(25 problems\)/);
    expect(long).toMatch(/… and 5 more/);
    expect(long.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(20);
  });

  it('names unreadable JSON and an empty split', async () => {
    expect(await errorOf(broken('side', '{ not json'))).toMatch(/metadata .*metadata\.json is not valid JSON/);
    const cfg = broken('side', [{ uid: 'x.jpg', side: 'obverse' }], {}, { 'x.jpg': 'UID000001.jpg' });
    expect(await errorOf(cfg)).toMatch(/the (train|val) split of the side model is empty/);
    expect(await errorOf({ ...cfg, metadata_json_path: '/nope/metadata.json' })).toMatch(/cannot read metadata \/nope\/metadata\.json: ENOENT/);
  });

  it('indexes the bundled data_examples for every model with non-empty splits', async () => {
    for (const model of ['side', 'orientation', 'date', 'mint'] as const) {
      const cfg = { ...loadConfig(model, path.join(ROOT, 'configs', 'training_config.yaml')), data_root: path.join(ROOT, 'data_examples'),
        metadata_json_path: path.join(ROOT, 'metadata', 'metadata.json'), roi_json_path: path.join(ROOT, 'metadata', 'roi_coordinates.json') };
      const index = await buildIndex(cfg);
      for (const split of ['train', 'val', 'test'] as const) expect(index[split].length, `${model} ${split}`).toBeGreaterThan(0);
      if (model === 'date' || model === 'mint') expect(index.train.every((s) => s.crop)).toBe(true);
    }
  });
});

describe('image pipeline', () => {
  const cfg = { ...loadConfig('mint', path.join(ROOT, 'configs', 'training_config.yaml')), data_root: path.join(ROOT, 'data_examples'),
    metadata_json_path: path.join(ROOT, 'metadata', 'metadata.json'), roi_json_path: path.join(ROOT, 'metadata', 'roi_coordinates.json') };
  const spec = { height: 48, width: 48, fit: 'cover' as const, mean: cfg.mean, std: cfg.std };
  const epoch = async (seed: number, n: number, augment = cfg.augment) => {
    const index = await buildIndex(cfg);
    const out = [];
    for await (const b of batches(index.train.slice(0, 12), { batchSize: 4, spec, augment, seed, epoch: n, workers: 2 })) out.push(b);
    return out;
  };

  it('gives the same batches for the same seed and epoch, others for another epoch', async () => {
    const [a, b, c] = [await epoch(1, 0), await epoch(1, 0), await epoch(1, 1)];
    expect(a.map((x) => x.uids)).toEqual(b.map((x) => x.uids));
    a.forEach((x, i) => expect(Buffer.compare(Buffer.from(x.pixels.buffer), Buffer.from(b[i].pixels.buffer))).toBe(0));
    expect(a.map((x) => x.uids)).not.toEqual(c.map((x) => x.uids));
    expect(a[0].shape).toEqual([4, 3, 48, 48]);
    const marks = new Map<string, string>(JSON.parse(fs.readFileSync(cfg.metadata_json_path, 'utf8')).map((e: { uid: string; mint_mark: string }) => [e.uid, e.mint_mark]));
    const names = ['D', 'S', 'P', 'nomint'];
    expect(a.flatMap((x) => [...x.labels].map((l) => names[l]))).toEqual(a.flatMap((x) => x.uids.map((u) => marks.get(u))));
  });

  it('normalises with the config mean/std, and takes any rotation', async () => {
    const [b] = await epoch(3, 0, { ...cfg.augment, rotation_deg: 180 });
    const min = (1 / 255 * 0 - cfg.mean[0]) / cfg.std[0], max = (1 - cfg.mean[0]) / cfg.std[0];
    const red = b.pixels.subarray(0, 48 * 48);
    expect(Math.min(...red)).toBeGreaterThanOrEqual(min - 1e-6);
    expect(Math.max(...red)).toBeLessThanOrEqual(max + 1e-6);
    const [e] = await epoch(3, 0, null as never);
    expect(e.uids).toEqual((await buildIndex(cfg)).train.slice(0, 4).map((s) => s.uid));   // eval: index order
  });
});

describe('region resample', () => {
  // a 64 x 48 RGB image: red a ramp along x, green along y, blue constant
  const [W, H] = [64, 48];
  const img = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) img.set([2 * x + 40, 3 * y + 20, 77], (y * W + x) * 3);
  const at = (a: Uint8Array, w: number, c: number, x: number, y: number) => a[(y * w + x) * 3 + c];

  it('keeps flat colour flat and a ramp a ramp, reading only the box', async () => {
    // half the size of the box x 8..56, y 4..44: output pixel i covers source 8 + 2i .. 10 + 2i, centre 9 + 2i
    const out = await resamplePixels(img, W, H, Float64Array.of(8, 4, 48, 40), 24, 20);
    for (let y = 0; y < 20; y++) {
      for (let x = 0; x < 24; x++) {
        expect(at(out, 24, 2, x, y)).toBe(77);
        // the triangle's weights are symmetric about the centre, so a ramp reads its value there (x pixel centres at +0.5)
        if (x > 0 && x < 23) expect(at(out, 24, 0, x, y)).toBe(Math.round(2 * (8 + 2 * x + 1 - 0.5) + 40));
        if (y > 0 && y < 19) expect(at(out, 24, 1, x, y)).toBe(Math.round(3 * (4 + 2 * y + 1 - 0.5) + 20));
      }
    }
    // the box's first column reads nothing left of it: its weights are renormalised inside the box
    expect(at(out, 24, 0, 0, 5)).toBeGreaterThanOrEqual(2 * 8 + 40);
    // enlarging: bilinear between pixel centres
    const up = await resamplePixels(img, W, H, Float64Array.of(10, 10, 4, 4), 8, 8);
    expect(at(up, 8, 0, 3, 3)).toBe(Math.round(2 * (10 + 3.5 * 0.5 - 0.5) + 40));
    // a box thinner than a pixel on the image's right edge (x = W, within the 1e-6 allowed) reads the last column
    const edge = await resamplePixels(img, W, H, Float64Array.of(W, 0, 1e-7, H), 1, 1);
    expect(at(edge, 1, 0, 0, 0)).toBe(2 * (W - 1) + 40);
  });

  it('refuses a box outside the image, and a parameter list of the wrong length', () => {
    expect(() => resamplePixels(img, W, H, Float64Array.of(40, 0, 30, 10), 8, 8)).toThrow(/inside the image/);
    expect(() => resamplePixels(img.subarray(0, 100), W, H, Float64Array.of(0, 0, 8, 8), 8, 8)).toThrow(/too short/);
    expect(() => resamplePixels(new Uint8Array(0), 0, 0, Float64Array.of(0, 0, 1e-7, 1e-7), 1, 1)).toThrow(/inside the image/);
    // render's parameters are packed by images.ts: another count means the two sides drifted apart
    expect(() => renderPixels(img, W, H, new Float64Array(5), 8, 8, new Float32Array(3 * 64), 0)).toThrow(/29 parameters expected/);
  });
});

describe('augmentation warp', () => {
  const cfg = { ...loadConfig('side', path.join(ROOT, 'configs', 'training_config.yaml')), data_root: path.join(ROOT, 'data_examples'),
    metadata_json_path: path.join(ROOT, 'metadata', 'metadata.json'), roi_json_path: path.join(ROOT, 'metadata', 'roi_coordinates.json') };
  const size = 40;
  const spec = { height: size, width: size, fit: 'cover' as const, mean: [0, 0, 0], std: [1 / 255, 1 / 255, 1 / 255] };   // output in 0..255
  const none: Augment = { rotation_deg: 0, crop_scale: [1, 1], brightness: 0, contrast: 0, saturation: 0, hue: 0, blur_p: 0, hflip_p: 0, rotate_relabel: false, roi_jitter: 0 };
  const draw = async (d: Decoded, aug: Augment | null, seed = 1) => {
    const out = new Float32Array(3 * size * size);
    await render(d, spec, aug, aug ? augmentRng(seed, 0, 'u') : null, out, 0);
    return out;
  };
  const at = (img: Float32Array, c: number, x: number, y: number) => img[c * size * size + y * size + x];
  const sample = async () => (await buildIndex(cfg)).train[0];

  it('eval transform is sharp\'s resize + centre crop', async () => {
    const s = await sample();
    const ref = await sharp(s.file).resize(size, size, { fit: 'cover', position: 'centre' }).raw().toBuffer();
    const img = await draw(await decode(s, spec), null);
    let worst = 0, sum = 0;
    for (let i = 0; i < size * size; i++) {
      for (let c = 0; c < 3; c++) {
        const d = Math.abs(at(img, c, i % size, Math.floor(i / size)) - ref[i * 3 + c]);
        [worst, sum] = [Math.max(worst, d), sum + d];
      }
    }
    // a 2x2 mean of the twice-size decode against sharp's direct resize: the same picture, other filters
    expect(sum / (3 * size * size)).toBeLessThan(1.5);
    expect(worst).toBeLessThan(16);
  });

  it('with nothing drawn is the eval transform, and flip mirrors it', async () => {
    const d = await decode(await sample(), spec);
    const plain = await draw(d, null);
    expect(await draw(d, none)).toEqual(plain);
    const flipped = await draw(d, { ...none, hflip_p: 1 });
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        expect(at(flipped, 1, x, y)).toBeCloseTo(at(plain, 1, size - 1 - x, y), 3);
      }
    }
  });

  it('turns the image the way sharp.rotate does, about its centre', async () => {
    // an asymmetric test card: a bright block up and left of the centre on a dark ground
    const card: Decoded = { width: size, height: size, data: new Uint8Array(size * size * 3) };
    for (let y = 6; y < 18; y++) for (let x = 4; x < 14; x++) card.data.fill(250, (y * size + x) * 3, (y * size + x) * 3 + 3);
    const seed = [...Array(50).keys()].reduce((a, b) => (Math.abs(firstDraw(b) - 0.5) > Math.abs(firstDraw(a) - 0.5) ? b : a));
    const angle = -60 + 120 * firstDraw(seed);
    expect(Math.abs(angle)).toBeGreaterThan(40);
    const turned = await draw(card, { ...none, rotation_deg: 60 }, seed);
    const ref = await sharp(card.data, { raw: { width: size, height: size, channels: 3 } }).rotate(angle, { background: '#000' })
      .raw().toBuffer({ resolveWithObject: true });
    const off = Math.round((ref.info.width - size) / 2);
    let diff = 0, bright = 0;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        diff += Math.abs(at(turned, 1, x, y) - ref.data[((y + off) * ref.info.width + x + off) * 3 + 1]);
        bright += at(turned, 1, x, y);
      }
    }
    expect(bright / 250).toBeGreaterThan(100);      // the block is in view
    expect(diff / bright).toBeLessThan(0.3);        // and where sharp puts it (0.15; turned the other way: 2.0)
  });

  it('cached and fresh decodes give the same batches', async () => {
    const index = await buildIndex(cfg);
    const o = { batchSize: 4, spec, augment: cfg.augment, seed: 3, epoch: 2, workers: 2 };
    const fresh = await allBatches(index.train.slice(0, 8), o);
    const cache = new ImageCache(64);
    await allBatches(index.train.slice(0, 8), { ...o, epoch: 1, cache });
    const cached = await allBatches(index.train.slice(0, 8), { ...o, cache });
    cached.forEach((b, i) => expect(b.pixels).toEqual(fresh[i].pixels));
    const tiny = new ImageCache(0);   // over budget: decodes every time, same result
    (await allBatches(index.train.slice(0, 8), { ...o, cache: tiny })).forEach((b, i) => expect(b.pixels).toEqual(fresh[i].pixels));
  });

  /** the first draw of a sample's augmentation stream: the rotation's */
  function firstDraw(seed: number): number {
    return augmentRng(seed, 0, 'u').next();
  }
  it('roi_jitter moves and scales the box, drawn after every other draw (0 changes nothing)', async () => {
    const d = await decode({ file: path.join(ROOT, 'data_examples', 'UID000003.jpg'), width: 256, height: 256, crop: { x: 150, y: 120, width: 80, height: 60 } }, spec);
    const base = await draw(d, { ...none, brightness: 0.2 }, 7);
    expect(await draw(d, { ...none, brightness: 0.2, roi_jitter: 0 }, 7)).toEqual(base);
    const moved = await draw(d, { ...none, brightness: 0.2, roi_jitter: 0.2 }, 7);
    expect(moved).not.toEqual(base);
    expect(await draw(d, { ...none, brightness: 0.2, roi_jitter: 0.2 }, 8)).not.toEqual(moved);
  });
});
