// Image pipeline. sharp decodes each sample once — the whole image to RGB as displayed (decodeImage) — then its region
// (the whole image, or a date/mint ROI's bounds) is resampled so that what the model sees of it comes out at twice the
// model's input resolution, and a run keeps those pixels in memory (ImageCache). The two steps are separate so that
// prediction decodes a photo once for all its models and still gets training's pixels bit for bit. Every epoch's
// train augmentation then draws its parameters here (seeded) and native/pixels.cc does the pixels, on libuv's thread
// pool: one pass per output pixel, an inverse warp (fit, rotation, random resized crop, flip) that averages 2x2
// bilinear samples per output pixel, then colour jitter and normalisation as one affine colour map; Gaussian blur on
// the result. Sampling from twice the resolution keeps the coins' pixel-wide relief: one bilinear sample at the output
// resolution halves it at half-pixel offsets, and the side model then took ~10 more epochs to leave the class prior.
// The region's resample and the render were a sharp call and a JS loop: each sharp call cost ~1.5 ms of CPU however
// small the image (prediction made five per photo), the JS render ~1 ms per 112 px image on the main thread.
//
// Geometry. What the model sees is a view of the region: an upright box (centre, size) lying at an angle (an aligned
// ROI, see roi.ts; otherwise the whole region, at 0). The output [H, W] covers the view by its fit rule:
//   cover      scaled to fill the output, the overflow centre-cropped (whole coins: resize + centre crop; roi_fit: crop)
//   letterbox  scaled to fit inside, the rest filled with the view's edge pixels (roi_fit: letterbox)
//   stretch    each axis scaled on its own (roi_fit: stretch)
// The eval transform is exactly that; training draws a rotation about the view's centre, a crop of the output's
// aspect and a fraction of its area anywhere inside the view, and a flip, in the view's own frame.
import sharp from 'sharp';
import { renderPixels, resamplePixels } from '../backend/native.js';
import type { Augment, TrainingConfig } from '../config/config.js';
import { hashSeed, Rng } from '../util/rng.js';
import type { Sample } from './dataset.js';
import { ROI_PAD, type View } from './roi.js';

export type Fit = 'cover' | 'letterbox' | 'stretch';

export interface ImageSpec {
  height: number;
  width: number;
  fit: Fit;
  mean: readonly number[];
  std: readonly number[];
}

/** A sample's region as RGB (HWC), at twice the resolution its view reaches the model at. */
export interface Decoded {
  data: Uint8Array;
  width: number;
  height: number;
  /** the view in these pixels; absent: the whole region, upright */
  view?: View;
}

/** The spec of a config: its size, its fit (whole coins are cover; ROIs by roi_fit) and its normalisation. */
export function imageSpec(cfg: TrainingConfig): ImageSpec {
  return recipeSpec(preprocessRecipe(cfg));
}

/** The spec a recipe (a model's `preprocess` metadata) describes. */
export function recipeSpec(r: PreprocessRecipe): ImageSpec {
  return { height: r.size[0], width: r.size[1], fit: r.fit, mean: r.mean, std: r.std };
}

/**
 * How an image becomes the model's input, written into every exported model's metadata (`preprocess`, JSON), so
 * that a model file says how to feed it: what the eval transform (decode, region, fit, resample, normalise) does.
 */
export interface PreprocessRecipe {
  /** [height, width] of the input tensor, NCHW, RGB, float32 */
  size: [number, number];
  layout: 'NCHW';
  channels: 'RGB';
  /** pixel values are divided by this, then normalised: (x / scale - mean[c]) / std[c] */
  scale: 255;
  mean: number[];
  std: number[];
  /** the whole image, or the model's ROI from the ROI file (date_roi / mint_mark_roi) */
  region: 'image' | 'date_roi' | 'mint_mark_roi';
  /** ROI regions: each side grown by this fraction of the box's width/height, clipped to the image */
  roiPad?: number;
  /** how the region fills [height, width]: cover (scale to fill, centre crop), letterbox (fit, edge pixels fill), stretch */
  fit: Fit;
  /** ROI regions read upright: turned back by the coin's angle (degrees, counter-clockwise, the metadata's `angle`) */
  alignRoi: boolean;
  /** alignRoi: the upright ROI aspect (width / height) where the box's bounds and the angle do not give it */
  roiAspect?: number;
  /**
   * EXIF orientation applied first; the region resampled to 2x the input resolution (antialiased triangle filter),
   * each output pixel the mean of 2x2 bilinear samples of that
   */
  resample: typeof RESAMPLE;
}

/** How this version resamples (the recipe's `resample`); models trained before 0.2.0 say 'exif-upright, bilinear 2x2 supersampled'. */
export const RESAMPLE = 'exif-upright, triangle to 2x, bilinear 2x2 supersampled';

export function preprocessRecipe(cfg: TrainingConfig, roiAspect?: number): PreprocessRecipe {
  const region = cfg.model_type === 'date' ? 'date_roi' : cfg.model_type === 'mint' ? 'mint_mark_roi' : 'image';
  const fit: Fit = region === 'image' || cfg.roi_fit === 'crop' ? 'cover' : cfg.roi_fit;
  return {
    size: [cfg.img_size[0], cfg.img_size[1]], layout: 'NCHW', channels: 'RGB', scale: 255, mean: [...cfg.mean], std: [...cfg.std],
    // checkpoints written before roi_pad existed lack the key: they were read with the original's pad
    region, ...(region !== 'image' && { roiPad: cfg.roi_pad ?? ROI_PAD }), fit, alignRoi: region !== 'image' && cfg.align_roi,
    ...(roiAspect !== undefined && { roiAspect }), resample: RESAMPLE,
  };
}

const SUPERSAMPLE = 2;
const uniform = (rng: Rng, lo: number, hi: number) => lo + (hi - lo) * rng.next();

/** The augmentation draws for one sample in one epoch: a function of (seed, epoch, uid) only. */
export function augmentRng(seed: number, epoch: number, uid: string): Rng {
  return new Rng(hashSeed(seed, `aug:${epoch}:${uid}`));
}

/** View pixels per output pixel along x and y under the spec's fit rule. */
function viewScale(spec: ImageSpec, vw: number, vh: number): [number, number] {
  const [sx, sy] = [vw / spec.width, vh / spec.height];
  if (spec.fit === 'stretch') return [sx, sy];
  const k = spec.fit === 'cover' ? Math.min(sx, sy) : Math.max(sx, sy);
  return [k, k];
}

/** An image decoded: RGB (HWC, 8 bits), as displayed (EXIF orientation applied), sRGB. */
export interface RawImage {
  raw: Buffer;
  width: number;
  height: number;
}

export const isRawImage = (v: unknown): v is RawImage => typeof v === 'object' && v !== null && !Buffer.isBuffer(v) && 'raw' in v;

/** Decodes an image file or encoded bytes whole: the first step of decode(), and of prediction's one decode per photo. */
export async function decodeImage(file: string | Buffer): Promise<RawImage> {
  const { data, info } = await sharp(file, { failOn: 'truncated', autoOrient: true }).removeAlpha().toColourspace('srgb')
    .raw().toBuffer({ resolveWithObject: true });
  return { raw: data, width: info.width, height: info.height };
}

/** What decode reads: an image (a path, encoded bytes, or decoded pixels for prediction), the region of it and the view. */
export type Region = Pick<Sample, 'width' | 'height' | 'crop' | 'view'> & { file: string | Buffer | RawImage };

/** The region's box and the size it is decoded at: SUPERSAMPLE output pixels per view pixel on the finer axis. */
function decodePlan(sample: Region, spec: ImageSpec) {
  const crop = sample.crop ?? { x: 0, y: 0, width: sample.width, height: sample.height };
  const [kx, ky] = viewScale(spec, sample.view?.width ?? crop.width, sample.view?.height ?? crop.height);
  const s = SUPERSAMPLE / Math.min(kx, ky);
  return { crop, width: Math.max(1, Math.round(crop.width * s)), height: Math.max(1, Math.round(crop.height * s)) };
}

/**
 * Decodes the sample's region (its crop, if any) at the size decodePlan gives, with its view in those pixels. The
 * image is read as displayed (decodeImage: EXIF orientation applied), as the sample's size, crop and view are in that
 * frame.
 */
export async function decode(sample: Region, spec: ImageSpec): Promise<Decoded> {
  const plan = decodePlan(sample, spec);
  const image = isRawImage(sample.file) ? sample.file : await decodeImage(sample.file);
  const { x, y, width, height } = plan.crop;
  const data = await resamplePixels(image.raw, image.width, image.height, Float64Array.of(x, y, width, height), plan.width, plan.height);
  const d: Decoded = { data, width: plan.width, height: plan.height };
  if (sample.view) {
    const [sx, sy] = [plan.width / width, plan.height / height];
    const v = sample.view;
    d.view = { cx: v.cx * sx, cy: v.cy * sy, width: v.width * sx, height: v.height * sy, angle: v.angle };
  }
  return d;
}

/**
 * Decoded regions of one run, kept while they fit in `budgetMB` (the rest are decoded again when asked for).
 * Decoding is deterministic, so a cached and a fresh decode give the same batches.
 */
export class ImageCache {
  private readonly entries = new Map<string, Promise<Decoded>>();
  private bytes = 0;

  constructor(private readonly budgetMB: number) {}

  get(sample: Sample, spec: ImageSpec): Promise<Decoded> {
    const plan = decodePlan(sample, spec);
    const key = JSON.stringify([sample.file, plan, sample.view ?? null]);
    const hit = this.entries.get(key);
    if (hit) return hit;
    const p = decode(sample, spec);
    const estimate = plan.width * plan.height * 3;   // reserved now so concurrent misses count
    if (this.bytes + estimate > this.budgetMB * 2 ** 20) return p;
    this.bytes += estimate;
    this.entries.set(key, p);
    p.catch(() => { this.entries.delete(key); this.bytes -= estimate; });
    return p;
  }
}

/**
 * Where the output pixels read the decoded region. Output pixel centre (u + 0.5, v + 0.5) -> a point (p, q) of the
 * view's frame (origin at its centre, x along its upright width): (p, q) = origin + u * du + v * dv; with `clamp`,
 * p and q are held inside the view (letterbox's edge fill); then turned by the view's angle to decoded pixels.
 */
interface Warp {
  p0: number; q0: number;
  dup: number; duq: number;
  dvp: number; dvq: number;
  /** half the view's width and height, when points outside it read its edge */
  clamp: [number, number] | null;
  /** view centre in decoded pixels, and its angle's cos and sin */
  cx: number; cy: number;
  cos: number; sin: number;
}

/** The colour map out_c = clamp(sum_k m[c][k] in_k + offset_c, 0, 255), then normalised. Identity for eval. */
type ColourMatrix = [number[], number[], number[], number];   // three rows, then the common offset (contrast's)

const IDENTITY: ColourMatrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1], 0];
const LUMA = [0.213, 0.715, 0.072];

/** The draws that place the output on the view: the eval transform is { rotation 0, zoom 1, offset 0, no flip }. */
interface Placement {
  /** degrees; positive turns the picture clockwise on screen */
  rotation: number;
  /** the crop's side as a fraction of the whole output's */
  zoom: number;
  /** the crop's centre in the view's frame */
  ox: number;
  oy: number;
  flip: boolean;
}

const EVAL_PLACEMENT: Placement = { rotation: 0, zoom: 1, ox: 0, oy: 0, flip: false };

function viewOf(d: Decoded): View {
  return d.view ?? { cx: d.width / 2, cy: d.height / 2, width: d.width, height: d.height, angle: 0 };
}

/**
 * The seeded train draws, in a fixed order: rotation, random resized crop (area fraction crop_scale, the
 * output's aspect, anywhere inside the view), brightness, saturation, hue, contrast, blur (probability, sigma), flip;
 * with roi_jitter, the view's move (x, y) and scale.
 */
function drawTrain(d: Decoded, spec: ImageSpec, aug: Augment, rng: Rng): { placement: Placement; colour: ColourMatrix; sigma: number } {
  const view = viewOf(d);
  const [kx, ky] = viewScale(spec, view.width, view.height);
  const rotation = aug.rotation_deg > 0 ? uniform(rng, -aug.rotation_deg, aug.rotation_deg) : 0;
  const zoom = Math.sqrt(uniform(rng, aug.crop_scale[0], aug.crop_scale[1]));
  const [ex, ey] = [spec.width * kx, spec.height * ky];   // the whole output's extent in the view
  const ox = (rng.next() - 0.5) * (Math.max(view.width, ex) - zoom * ex);
  const oy = (rng.next() - 0.5) * (Math.max(view.height, ey) - zoom * ey);
  const brightness = uniform(rng, 1 - aug.brightness, 1 + aug.brightness);
  const saturation = uniform(rng, 1 - aug.saturation, 1 + aug.saturation);
  const hue = uniform(rng, -aug.hue, aug.hue) * 2 * Math.PI;
  const contrast = uniform(rng, 1 - aug.contrast, 1 + aug.contrast);
  const sigma = rng.next() < aug.blur_p ? uniform(rng, 0.3, 2.0) : 0;
  const flip = rng.next() < aug.hflip_p;
  const placement = { rotation, zoom, ox, oy, flip };
  if (aug.roi_jitter > 0) {   // drawn last, so a config without it keeps every earlier draw
    // moves in units of the view's shorter side along both axes: a located box's error is about as many pixels
    // across as along (the coin's centre, the angle's swing), and a date's width would make its digits slide
    const j = aug.roi_jitter, side = Math.min(view.width, view.height);
    placement.ox += uniform(rng, -j, j) * side;
    placement.oy += uniform(rng, -j, j) * side;
    placement.zoom *= uniform(rng, 1 - j, 1 + j);
  }
  return { placement, colour: colourMatrix(brightness, saturation, hue, contrast), sigma };
}

/**
 * The warp of a placement: output pixel -> the crop (zoom, offset, flip) -> turned about the view's centre by the
 * rotation -> the view's frame.
 */
function warpOf(d: Decoded, spec: ImageSpec, pl: Placement): Warp {
  const view = viewOf(d);
  const [kx, ky] = viewScale(spec, view.width, view.height);
  const ax = (pl.flip ? -1 : 1) * pl.zoom * kx, ay = pl.zoom * ky;   // view units per output pixel
  const r = (pl.rotation * Math.PI) / 180, [cr, sr] = [Math.cos(r), Math.sin(r)];
  const a0 = (0.5 - spec.width / 2) * ax + pl.ox, b0 = (0.5 - spec.height / 2) * ay + pl.oy;   // output pixel (0, 0)
  const va = (view.angle * Math.PI) / 180;
  return {
    p0: cr * a0 + sr * b0, q0: -sr * a0 + cr * b0,
    dup: cr * ax, duq: -sr * ax,
    dvp: sr * ay, dvq: cr * ay,
    clamp: spec.fit === 'letterbox' ? [view.width / 2, view.height / 2] : null,
    cx: view.cx, cy: view.cy, cos: Math.cos(va), sin: Math.sin(va),
  };
}
/**
 * brightness, then saturation and a hue rotation about the grey axis (the W3C filter-effects `saturate` and
 * `hueRotate` matrices: exact identity at 1 and 0, luma kept), then contrast about 128.
 */
function colourMatrix(brightness: number, saturation: number, hue: number, contrast: number): ColourMatrix {
  const [r, g, b] = LUMA;
  const sat = [
    [r + (1 - r) * saturation, g - g * saturation, b - b * saturation],
    [r - r * saturation, g + (1 - g) * saturation, b - b * saturation],
    [r - r * saturation, g - g * saturation, b + (1 - b) * saturation],
  ];
  const [cos, sin] = [Math.cos(hue), Math.sin(hue)];
  const rot = [
    [r + cos * (1 - r) - sin * r, g - cos * g - sin * g, b - cos * b + sin * (1 - b)],
    [r - cos * r + sin * 0.143, g + cos * (1 - g) + sin * 0.14, b - cos * b - sin * 0.283],
    [r - cos * r - sin * (1 - r), g - cos * g + sin * g, b + cos * (1 - b) + sin * b],
  ];
  const m = rot.map((row) => [0, 1, 2].map((c) => (row[0] * sat[0][c] + row[1] * sat[1][c] + row[2] * sat[2][c]) * brightness * contrast));
  return [m[0], m[1], m[2], 128 * (1 - contrast)];
}

/**
 * Writes one sample, transformed, as normalised float CHW into `out` at `offset`: the train transform when `aug`
 * and `rng` are given, else the eval transform. Resolves to the rotation drawn (degrees, clockwise on screen), which
 * rotate_relabel turns the angle label by. The draws happen now, in order; the pixels on the thread pool.
 */
export async function render(d: Decoded, spec: ImageSpec, aug: Augment | null, rng: Rng | null, out: Float32Array, offset: number): Promise<{ rotation: number }> {
  const t = aug && rng ? drawTrain(d, spec, aug, rng)
    : { placement: EVAL_PLACEMENT, colour: IDENTITY, sigma: 0 };
  await renderPixels(d.data, d.width, d.height, renderParams(warpOf(d, spec, t.placement), t.colour, spec, t.sigma), spec.width, spec.height, out, offset);
  return { rotation: t.placement.rotation };
}

/** The parameters of native/pixels.cc's render, in its RenderParams order. */
function renderParams(w: Warp, [m0, m1, m2, bias]: ColourMatrix, spec: ImageSpec, sigma: number): Float64Array {
  const [hw, hh] = w.clamp ?? [-1, -1];
  return Float64Array.of(
    w.p0, w.q0, w.dup, w.duq, w.dvp, w.dvq, hw, hh, w.cx, w.cy, w.cos, w.sin,
    ...m0, ...m1, ...m2, bias,
    ...[0, 1, 2].map((c) => 1 / (255 * spec.std[c])), ...[0, 1, 2].map((c) => spec.mean[c] / spec.std[c]),
    sigma);
}
