// Where date and mint are read from, checked against the generator's exact glyph boxes: the letterboxed ROI holds
// every glyph, the upright ROI is the same picture whatever the coin's angle, and rotate_relabel turns the label the
// way the picture turns.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { compose, renderJpeg, type Job } from '../scripts/synth-pennies.js';
import { loadConfig, type TrainingConfig } from '../src/config/config.js';
import { buildIndex, type Sample } from '../src/data/dataset.js';
import { augmentRng, decode, imageSpec, render, type ImageSpec } from '../src/data/images.js';
import { allBatches } from '../src/data/loader.js';
import { exactUprightSize, medianAspect, roiRegion, uprightSize } from '../src/data/roi.js';
import { splitOf } from '../src/data/split.js';
import { ROOT } from './helpers.js';

const SEED = 5;
const SIZE = 256;

describe('upright ROI size', () => {
  it('recovers the upright box from its turned bounds, and uses the aspect where the bounds cannot tell', () => {
    const bounds = (w: number, h: number, a: number) => {
      const [c, s] = [Math.abs(Math.cos((a * Math.PI) / 180)), Math.abs(Math.sin((a * Math.PI) / 180))];
      return [w * c + h * s, w * s + h * c] as const;
    };
    for (const a of [0, 17, 80, 100, 200, 341]) {
      const [W, H] = bounds(50, 20, a);
      const [w, h] = exactUprightSize(W, H, a)!;
      expect(w).toBeCloseTo(50, 6);
      expect(h).toBeCloseTo(20, 6);
    }
    for (const a of [40, 45, 135, 226]) {   // ill-posed: the aspect decides
      const [W, H] = bounds(50, 20, a);
      expect(exactUprightSize(W, H, a)).toBeNull();
      const [w, h] = uprightSize(W, H, a, 2.5);
      expect(w).toBeCloseTo(50, 6);
      expect(h).toBeCloseTo(20, 6);
    }
    expect(medianAspect([{ roi: { x: 0, y: 0, width: 50, height: 20 }, angle: 0 }, { roi: { x: 0, y: 0, width: 40, height: 40 }, angle: 45 }])).toBeCloseTo(2.5);
  });

  it('pads each side by roi_pad of the box (the original\'s 5% by default), upright or as it lies', () => {
    const roi = { x: 100, y: 80, width: 50, height: 20 };
    const size = (pad?: number) => ((v) => [v.width, v.height].map((x) => +x.toFixed(9)))(roiRegion(roi, 256, 256, { angle: 0, aspect: 2.5 }, pad).view!);
    expect(size()).toEqual([55, 22]);
    expect(size(0.25)).toEqual([75, 30]);
    expect(roiRegion(roi, 256, 256, undefined, 0.25).crop).toEqual({ x: 87, y: 75, width: 76, height: 30 });
    expect(roiRegion(roi, 256, 256).crop).toEqual({ x: 97, y: 79, width: 56, height: 22 });
  });
});

type Glyphs = NonNullable<ReturnType<typeof compose>['glyphs']>;

/** Obverses drawn by the generator at the given angles, written to disk with their metadata, ROIs and glyph boxes. */
async function writeSet(angles: number[]) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-roi-'));
  const jobs: Job[] = angles.map((_, i) => ({ uid: `C${String(i).padStart(3, '0')}.jpg`, kind: 'obverse', year: 1909 + ((i * 37) % 116), mint: (['D', 'S', 'P', 'nomint'] as const)[i % 4] }));
  const glyphs = new Map<string, Glyphs>();
  const meta: { uid: string; [k: string]: unknown }[] = [];
  const rois: Record<string, unknown> = {};
  for (const [i, job] of jobs.entries()) {
    const rend = compose(job, SIZE, SEED, angles[i]);
    fs.writeFileSync(path.join(dir, job.uid), await renderJpeg(rend, SIZE, SEED, job.uid));
    meta.push({ uid: job.uid, side: 'obverse', angle: rend.angle, year: job.year, mint_mark: job.mint });
    rois[job.uid.replace('.jpg', '')] = rend.rois;
    glyphs.set(job.uid, rend.glyphs!);
  }
  return { dir, jobs, glyphs, uids: writeMetadata(dir, meta, rois) };
}

/**
 * Writes metadata and ROIs, first adding copies of the first image under names that land in the train and val splits
 * (the index refuses a model whose train or val split is empty); returns the names of the images given.
 */
function writeMetadata(dir: string, meta: { uid: string }[], rois: Record<string, unknown>) {
  const given = meta.map((m) => m.uid);
  for (const split of ['train', 'val']) {
    if (meta.some((m) => splitOf(m.uid) === split)) continue;
    let i = 0;
    while (splitOf(`fill${i}.jpg`) !== split) i++;
    // one byte after the JPEG's end: the same picture, other bytes (the index refuses one file in two splits)
    fs.writeFileSync(path.join(dir, `fill${i}.jpg`), Buffer.concat([fs.readFileSync(path.join(dir, meta[0].uid)), Buffer.from([0])]));
    meta.push({ ...meta[0], uid: `fill${i}.jpg` });
    rois[`fill${i}`] = rois[meta[0].uid.replace('.jpg', '')];
  }
  fs.writeFileSync(path.join(dir, 'metadata.json'), JSON.stringify(meta));
  fs.writeFileSync(path.join(dir, 'rois.json'), JSON.stringify(rois));
  return given;
}

function configFor(dir: string, model: 'date' | 'mint', edit: Partial<TrainingConfig>): TrainingConfig {
  return { ...loadConfig(model, path.join(ROOT, 'configs', 'edge.yaml')), data_root: dir, metadata_json_path: path.join(dir, 'metadata.json'), roi_json_path: path.join(dir, 'rois.json'), ...edit };
}

const allSamples = async (cfg: TrainingConfig) => {
  const index = await buildIndex(cfg);
  return [...index.train, ...index.val, ...index.test];
};

/**
 * Where an image point lands in the model input under the eval transform, worked out here from the view the index
 * gives (independently of the pipeline's warp): into the view's frame, then the fit's scale about the centre.
 */
function toInput(s: Sample, spec: ImageSpec, [x, y]: [number, number]) {
  const crop = s.crop!;
  const v = s.view ?? { cx: crop.width / 2, cy: crop.height / 2, width: crop.width, height: crop.height, angle: 0 };
  const a = (v.angle * Math.PI) / 180;
  const dx = x - (crop.x + v.cx), dy = y - (crop.y + v.cy);
  const p = dx * Math.cos(a) - dy * Math.sin(a), q = dx * Math.sin(a) + dy * Math.cos(a);   // turned back (clockwise)
  const k = Math.max(v.width / spec.width, v.height / spec.height);   // letterbox: view pixels per input pixel
  return { u: p / k + spec.width / 2, v: q / k + spec.height / 2, insideView: Math.abs(p) <= v.width / 2 && Math.abs(q) <= v.height / 2 };
}

describe('date and mint ROIs against the generator', () => {
  const angles = [0, 12, 37, 45, 90, 133, 180, 222, 251, 300, 315, 349, 64, 158, 199, 276, 5, 88, 121, 333];
  let set: Awaited<ReturnType<typeof writeSet>>;
  beforeAll(async () => { set = await writeSet(angles); }, 60_000);

  for (const align of [false, true]) {
    it(`letterbox${align ? ', upright' : ''}: every corner of every date and mint glyph box lies inside the model input`, async () => {
      for (const model of ['date', 'mint'] as const) {
        const cfg = configFor(set.dir, model, { align_roi: align, roi_fit: 'letterbox' });
        const spec = imageSpec(cfg);
        const samples = (await allSamples(cfg)).filter((s) => set.uids.includes(s.uid));
        expect(samples).toHaveLength(angles.length);
        for (const s of samples) {
          const quad = set.glyphs.get(s.uid)![model === 'date' ? 'date' : 'mint'];
          const at = quad.map((c) => toInput(s, spec, c));
          for (const p of at) {
            expect(p.insideView, `${model} ${s.uid}`).toBe(true);
            expect(p.u).toBeGreaterThanOrEqual(-1e-9);
            expect(p.u).toBeLessThanOrEqual(spec.width + 1e-9);
            expect(p.v).toBeGreaterThanOrEqual(-1e-9);
            expect(p.v).toBeLessThanOrEqual(spec.height + 1e-9);
          }
          if (align) {
            // upright: the reading direction (corner 0 -> 1) runs along +u, and the glyphs fill most of what the
            // padding (roi_pad each side) leaves of the input
            expect(Math.abs(at[1].v - at[0].v)).toBeLessThan(0.05 * spec.height);
            const fill = Math.max((at[1].u - at[0].u) / spec.width, (at[3].v - at[0].v) / spec.height);
            expect(fill * (1 + 2 * cfg.roi_pad), `${model} ${s.uid}`).toBeGreaterThan(0.65 * 1.1);
          }
        }
      }
    });
  }

  it('upright: the same coin at 0 and at other angles gives nearly the same crop', async () => {
    const job: Job = { uid: 'same.jpg', kind: 'obverse', year: 1987, mint: 'D' };
    const at = [0, 73, 151, 222, 290];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-roi-same-'));
    const meta: { uid: string; [k: string]: unknown }[] = [], rois: Record<string, unknown> = {};
    for (const a of at) {
      const uid = `same${a}.jpg`;
      const rend = compose(job, SIZE, SEED, a);   // same uid in compose: same coin, light and wear, turned
      fs.writeFileSync(path.join(dir, uid), await renderJpeg(rend, SIZE, SEED, job.uid));
      meta.push({ uid, side: 'obverse', angle: a, year: job.year, mint_mark: job.mint });
      rois[uid.replace('.jpg', '')] = rend.rois;
    }
    writeMetadata(dir, meta, rois);
    const crops = async (align: boolean) => {
      const cfg = { ...configFor(dir, 'date', { align_roi: align }), mean: [0, 0, 0] as [number, number, number], std: [1 / 255, 1 / 255, 1 / 255] as [number, number, number] };
      const spec = imageSpec(cfg);
      const byUid = new Map((await allSamples(cfg)).map((s) => [s.uid, s]));
      return Promise.all(at.map(async (a) => {
        const out = new Float32Array(3 * spec.height * spec.width);
        await render(await decode(byUid.get(`same${a}.jpg`)!, spec), spec, null, null, out, 0);
        return out;
      }));
    };
    const meanAbs = (x: Float32Array, y: Float32Array) => x.reduce((sum, v, i) => sum + Math.abs(v - y[i]), 0) / x.length;
    const upright = await crops(true), asLies = await crops(false);
    for (let i = 1; i < at.length; i++) {
      const same = meanAbs(upright[0], upright[i]);
      console.log(`angle ${at[i]}: upright crop vs 0 deg ${same.toFixed(1)}, as it lies ${meanAbs(asLies[0], asLies[i]).toFixed(1)} (0..255)`);
      expect(same).toBeLessThan(0.5 * meanAbs(asLies[0], asLies[i]));
    }
  });

  it('a date sample without an angle is an error naming the file and UID when align_roi is on', async () => {
    const meta = JSON.parse(fs.readFileSync(path.join(set.dir, 'metadata.json'), 'utf8'));
    delete meta[3].angle;
    const file = path.join(set.dir, 'metadata-noangle.json');
    fs.writeFileSync(file, JSON.stringify(meta));
    const cfg = { ...configFor(set.dir, 'date', { align_roi: true }), metadata_json_path: file };
    await expect(buildIndex(cfg)).rejects.toThrow(new RegExp(`metadata-noangle\\.json: UID ${meta[3].uid}: no angle, which align_roi needs`));
    await expect(buildIndex({ ...cfg, align_roi: false })).resolves.toBeTruthy();
  });
});

describe('rotate_relabel', () => {
  // Three facts pin the sign: the warp turns the picture clockwise for a positive rotation (data.test.ts, against
  // sharp.rotate); the generator's coin turned clockwise by r is its coin at angle - r (below, from its own glyph
  // geometry); and the loader relabels a turn of r as angle - r (below).
  it('the generator\'s coin turned clockwise by r is the one it draws at angle - r', () => {
    const job: Job = { uid: 'turn.jpg', kind: 'obverse', year: 1950, mint: 'D' };
    const mid = (q: [number, number][]) => [(q[0][0] + q[2][0]) / 2, (q[0][1] + q[2][1]) / 2];
    // the coin's centre: halfway between the date box at 0 and at 180 degrees
    const [a, b] = [mid(compose(job, SIZE, SEED, 0).glyphs!.date), mid(compose(job, SIZE, SEED, 180).glyphs!.date)];
    const [cx, cy] = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    for (const [angle, r] of [[10, 70], [200, -45], [350, 100]]) {
      const t = (r * Math.PI) / 180;
      const turned = compose(job, SIZE, SEED, angle).glyphs!.date.map(([x, y]) => {
        const [dx, dy] = [x - cx, y - cy];
        return [cx + dx * Math.cos(t) - dy * Math.sin(t), cy + dx * Math.sin(t) + dy * Math.cos(t)];   // clockwise on screen
      });
      const drawn = compose(job, SIZE, SEED, (angle - r + 360) % 360).glyphs!.date;
      turned.forEach(([x, y], i) => {
        expect(x).toBeCloseTo(drawn[i][0], 6);
        expect(y).toBeCloseTo(drawn[i][1], 6);
      });
    }
  });

  it('relabels a turn of r as angle - r, wrapped, and leaves the label alone without rotate_relabel', async () => {
    const cfg = { ...loadConfig('orientation', path.join(ROOT, 'configs', 'edge.yaml')), data_root: path.join(ROOT, 'data_examples'),
      metadata_json_path: path.join(ROOT, 'metadata', 'metadata.json'), roi_json_path: path.join(ROOT, 'metadata', 'roi_coordinates.json') };
    const samples = (await buildIndex(cfg)).train.slice(0, 16);
    const spec = { ...imageSpec(cfg), height: 32, width: 32 };
    const o = { batchSize: 16, spec, seed: 3, epoch: 1, workers: 0 };
    const [turned] = await allBatches(samples, { ...o, augment: cfg.augment });
    const [kept] = await allBatches(samples, { ...o, augment: { ...cfg.augment, rotate_relabel: false } });
    turned.uids.forEach((uid, i) => {
      const s = samples.find((x) => x.uid === uid)!;
      const r = -180 + 360 * augmentRng(3, 1, uid).next();   // the first draw: the rotation, uniform in +-rotation_deg
      expect(turned.angles[i]).toBeCloseTo((((s.angle! - r) % 360) + 360) % 360, 9);
      expect(turned.labels[i]).toBe(Math.floor(turned.angles[i] / 3));
      expect(kept.labels[i]).toBe(s.label);
      expect(kept.angles[i]).toBe(s.angle);
    });
    expect(turned.labels).not.toEqual(kept.labels);
  });
});
