// Image pipeline. sharp decodes each sample once — the whole image to RGB as displayed (decodeImage), then its region
// (the whole image, or a date/mint ROI's bounds) resized so that what the model sees of it comes out at twice the
// model's input resolution — and a run keeps those pixels in memory (ImageCache). The two steps are separate so that
// prediction decodes a photo once for all its models and still gets training's pixels bit for bit (JPEG
// shrink-on-load, which a one-step decode uses for large reductions, would differ). Every epoch's train augmentation
// then runs in JS over them, as one pass per output pixel: an inverse warp (fit, rotation, random resized crop,
// flip) that averages 2x2 bilinear samples per output pixel, then colour jitter and normalisation as one affine
// colour map; Gaussian blur on the result. Sampling from twice the resolution keeps the coins' pixel-wide relief: one
// bilinear sample at the output resolution halves it at half-pixel offsets, and the side model then took ~10 more
// epochs to leave the class prior.
// Decoding again with sharp's rotate/extract/resize/modulate chain every epoch cost ~3.7 ms per 128 px image on two
// cores and left training pipeline-bound; this pass costs ~1 ms on the main thread, while the step computes.
//
// Geometry. What the model sees is a view of the region: an upright box (centre, size) lying at an angle (an aligned
// ROI, see roi.ts; otherwise the whole region, at 0). The output [H, W] covers the view by its fit rule:
//   cover      scaled to fill the output, the overflow centre-cropped (whole coins: resize + centre crop; roi_fit: crop)
//   letterbox  scaled to fit inside, the rest filled with the view's edge pixels (roi_fit: letterbox)
//   stretch    each axis scaled on its own (roi_fit: stretch)
// The eval transform is exactly that; training draws a rotation about the view's centre, a crop of the output's
// aspect and a fraction of its area anywhere inside the view, and a flip, in the view's own frame.
import sharp from 'sharp';
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
  /** EXIF orientation applied first; decode at 2x the input resolution, each output pixel the mean of 2x2 bilinear samples */
  resample: 'exif-upright, bilinear 2x2 supersampled';
}

export function preprocessRecipe(cfg: TrainingConfig, roiAspect?: number): PreprocessRecipe {
  const region = cfg.model_type === 'date' ? 'date_roi' : cfg.model_type === 'mint' ? 'mint_mark_roi' : 'image';
  const fit: Fit = region === 'image' || cfg.roi_fit === 'crop' ? 'cover' : cfg.roi_fit;
  return {
    size: [cfg.img_size[0], cfg.img_size[1]], layout: 'NCHW', channels: 'RGB', scale: 255, mean: [...cfg.mean], std: [...cfg.std],
    // checkpoints written before roi_pad existed lack the key: they were read with the original's pad
    region, ...(region !== 'image' && { roiPad: cfg.roi_pad ?? ROI_PAD }), fit, alignRoi: region !== 'image' && cfg.align_roi,
    ...(roiAspect !== undefined && { roiAspect }), resample: 'exif-upright, bilinear 2x2 supersampled',
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
  const { data, info } = await sharp(image.raw, { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract({ left: x, top: y, width, height }).resize(plan.width, plan.height, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
  const d: Decoded = { data, width: info.width, height: info.height };
  if (sample.view) {
    const [sx, sy] = [info.width / plan.crop.width, info.height / plan.crop.height];
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
 * and `rng` are given, else the eval transform. Returns the rotation drawn (degrees, clockwise on screen), which
 * rotate_relabel turns the angle label by.
 */
export function render(d: Decoded, spec: ImageSpec, aug: Augment | null, rng: Rng | null, out: Float32Array, offset: number): { rotation: number } {
  const t = aug && rng ? drawTrain(d, spec, aug, rng)
    : { placement: EVAL_PLACEMENT, colour: IDENTITY, sigma: 0 };
  warpInto(d, spec, warpOf(d, spec, t.placement), t.colour, out, offset);
  const n = spec.width * spec.height;
  if (t.sigma > 0) for (let c = 0; c < 3; c++) blurPlane(out.subarray(offset + c * n, offset + (c + 1) * n), spec.width, spec.height, t.sigma);
  return { rotation: t.placement.rotation };
}

function warpInto(d: Decoded, spec: ImageSpec, w: Warp, colour: ColourMatrix, out: Float32Array, offset: number): void {
  const [m0, m1, m2, bias] = colour;
  const scale = [0, 1, 2].map((c) => 1 / (255 * spec.std[c]));
  const shift = [0, 1, 2].map((c) => spec.mean[c] / spec.std[c]);
  const { width: W, height: H } = spec;
  const n = W * H;
  const o0 = offset, o1 = offset + n, o2 = offset + 2 * n;
  const [a0, a1, a2] = m0, [b0, b1, b2] = m1, [c0, c1, c2] = m2;
  const [k0, k1, k2] = scale, [z0, z1, z2] = shift;
  const { cos, sin } = w;
  const [hw, hh] = w.clamp ?? [Infinity, Infinity];
  // The view's frame to decoded pixels: x = cx + cos p + sin q, y = cy - sin p + cos q (turned counter-clockwise by
  // the view's angle, y down), pixel centres at +0.5.
  const tx = w.cx - 0.5, ty = w.cy - 0.5;
  // The 2x2 sample points of an output pixel, a quarter of a pixel either side of its centre along u and v.
  const [ep, eq, fp, fq] = [0.25 * (w.dup + w.dvp), 0.25 * (w.duq + w.dvq), 0.25 * (w.dup - w.dvp), 0.25 * (w.duq - w.dvq)];
  // the same offsets in decoded pixels, for views read without clamping (the turn is linear)
  const [ex, ey, fx, fy] = [cos * ep + sin * eq, -sin * ep + cos * eq, cos * fp + sin * fq, -sin * fp + cos * fq];
  const px = new Float64Array(3);   // one output pixel's RGB: the sum of its 2x2 bilinear samples
  const clamped = (p: number, q: number) => {   // letterbox: held inside the view, so the rest reads its edge
    p = p < -hw ? -hw : p > hw ? hw : p;
    q = q < -hh ? -hh : q > hh ? hh : q;
    bilinear(d, tx + cos * p + sin * q, ty - sin * p + cos * q, px);
  };
  for (let v = 0; v < H; v++) {
    let p = w.p0 + v * w.dvp, q = w.q0 + v * w.dvq;
    for (let u = 0; u < W; u++, p += w.dup, q += w.duq) {
      px[0] = px[1] = px[2] = 0;
      if (w.clamp) {
        clamped(p - ep, q - eq);
        clamped(p + ep, q + eq);
        clamped(p - fp, q - fq);
        clamped(p + fp, q + fq);
      } else {
        const x = tx + cos * p + sin * q, y = ty - sin * p + cos * q;
        bilinear(d, x - ex, y - ey, px);
        bilinear(d, x + ex, y + ey, px);
        bilinear(d, x - fx, y - fy, px);
        bilinear(d, x + fx, y + fy, px);
      }
      const r = px[0] / 4, g = px[1] / 4, b = px[2] / 4;
      const i = v * W + u;
      out[o0 + i] = clamp255(a0 * r + a1 * g + a2 * b + bias) * k0 - z0;
      out[o1 + i] = clamp255(b0 * r + b1 * g + b2 * b + bias) * k1 - z1;
      out[o2 + i] = clamp255(c0 * r + c1 * g + c2 * b + bias) * k2 - z2;
    }
  }
}

/**
 * Adds the bilinear sample at (x, y) to acc; what lies outside the region reads as black (the rotated canvas's).
 * The interior case is kept small, so that the optimiser inlines it into warpInto's loop; edges go to bilinearEdge.
 */
function bilinear(d: Decoded, x: number, y: number, acc: Float64Array): void {
  const xi = Math.floor(x), yi = Math.floor(y);
  const { data, width } = d;
  if (xi >= 0 && yi >= 0 && xi + 1 < width && yi + 1 < d.height) {
    const fx = x - xi, fy = y - yi;
    const p = (yi * width + xi) * 3, q = p + width * 3;
    const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
    acc[0] += w00 * data[p] + w01 * data[p + 3] + w10 * data[q] + w11 * data[q + 3];
    acc[1] += w00 * data[p + 1] + w01 * data[p + 4] + w10 * data[q + 1] + w11 * data[q + 4];
    acc[2] += w00 * data[p + 2] + w01 * data[p + 5] + w10 * data[q + 2] + w11 * data[q + 5];
  } else {
    bilinearEdge(d, x, y, xi, yi, acc);
  }
}

/** bilinear() where some of the four pixels lie outside the region (they add nothing). */
function bilinearEdge({ data, width, height }: Decoded, x: number, y: number, xi: number, yi: number, acc: Float64Array): void {
  const fx = x - xi, fy = y - yi;
  const row = width * 3;
  for (let k = 0; k < 4; k++) {
    const xx = xi + (k & 1), yy = yi + (k >> 1);
    if (xx < 0 || yy < 0 || xx >= width || yy >= height) continue;
    const wt = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy);
    const p = yy * row + xx * 3;
    acc[0] += wt * data[p];
    acc[1] += wt * data[p + 1];
    acc[2] += wt * data[p + 2];
  }
}

function clamp255(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Separable Gaussian blur of one width x height plane, in place, edges clamped. Linear, so normalising first is fine. */
function blurPlane(plane: Float32Array, width: number, height: number, sigma: number): void {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = Float32Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const sum = kernel.reduce((a, b) => a + b, 0);
  for (let i = 0; i < kernel.length; i++) kernel[i] /= sum;
  const tmp = new Float32Array(plane.length);
  const line = new Float32Array(Math.max(width, height) + 2 * radius);   // one row or column, edge values repeated
  // `lines` lines of `length` values, `stride` apart, values `step` apart within a line
  const pass = (src: Float32Array, dst: Float32Array, lines: number, stride: number, length: number, step: number) => {
    for (let l = 0; l < lines; l++) {
      const base = l * stride;
      for (let i = 0; i < length + 2 * radius; i++) {
        const j = i - radius;
        line[i] = src[base + (j < 0 ? 0 : j >= length ? length - 1 : j) * step];
      }
      for (let i = 0; i < length; i++) {
        let acc = 0;
        for (let k = 0; k < kernel.length; k++) acc += kernel[k] * line[i + k];
        dst[base + i * step] = acc;
      }
    }
  };
  pass(plane, tmp, height, width, width, 1);   // rows
  pass(tmp, plane, width, 1, height, width);   // columns
}
