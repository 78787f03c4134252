// Image pipeline. sharp decodes each sample once — its ROI crop, resized so that the shorter side is twice the
// model's input size — and a run keeps those pixels in memory (ImageCache). Every epoch's train augmentation then
// runs in JS over them, as one pass per output pixel: an inverse affine warp (rotation, random resized crop, flip)
// that averages 2x2 bilinear samples per output pixel, then colour jitter and normalisation as one affine colour map;
// Gaussian blur on the result. Sampling from twice the resolution keeps the coins' pixel-wide relief: one bilinear
// sample at the output resolution halves it at half-pixel offsets, and the side model then took ~10 more epochs to
// leave the class prior.
// Decoding again with sharp's rotate/extract/resize/modulate chain every epoch cost ~3.7 ms per 128 px image on two
// cores and left training pipeline-bound; this pass costs ~1 ms on the main thread, while the step computes.
// The eval transform (resize + centre crop) is the same warp over the whole centred square, with no draws.
import sharp from 'sharp';
import type { Augment } from '../config/config.js';
import { hashSeed, Rng } from '../util/rng.js';
import type { Sample } from './dataset.js';

export interface ImageSpec {
  size: number;
  mean: readonly number[];
  std: readonly number[];
}

/** A sample's region as RGB (HWC), its shorter side SUPERSAMPLE x the model's input size. */
export interface Decoded {
  data: Uint8Array;
  width: number;
  height: number;
}

const SUPERSAMPLE = 2;
const uniform = (rng: Rng, lo: number, hi: number) => lo + (hi - lo) * rng.next();

/** The augmentation draws for one sample in one epoch: a function of (seed, epoch, uid) only. */
export function augmentRng(seed: number, epoch: number, uid: string): Rng {
  return new Rng(hashSeed(seed, `aug:${epoch}:${uid}`));
}

/** Decodes the sample's region (its crop, if any), resized to cover 2 size x 2 size, keeping its aspect ratio. */
export async function decode(sample: Sample, size: number): Promise<Decoded> {
  const cover = SUPERSAMPLE * size;
  let img = sharp(sample.file, { failOn: 'truncated' }).removeAlpha().toColourspace('srgb');
  if (sample.crop) img = img.extract({ left: sample.crop.x, top: sample.crop.y, width: sample.crop.width, height: sample.crop.height });
  const { data, info } = await img.resize(cover, cover, { fit: 'outside' }).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/**
 * Decoded regions of one run, kept while they fit in `budgetMB` (the rest are decoded again when asked for).
 * Decoding is deterministic, so a cached and a fresh decode give the same batches.
 */
export class ImageCache {
  private readonly entries = new Map<string, Promise<Decoded>>();
  private bytes = 0;

  constructor(private readonly budgetMB: number) {}

  get(sample: Sample, size: number): Promise<Decoded> {
    const key = `${size}:${sample.file}:${sample.crop ? Object.values(sample.crop).join(',') : ''}`;
    const hit = this.entries.get(key);
    if (hit) return hit;
    const p = decode(sample, size);
    const estimate = (SUPERSAMPLE * size) ** 2 * 3 * 1.1;   // known exactly once decoded; reserved now so concurrent misses count
    if (this.bytes + estimate > this.budgetMB * 2 ** 20) return p;
    this.bytes += estimate;
    this.entries.set(key, p);
    p.then((d) => { this.bytes += d.data.length - estimate; }, () => { this.entries.delete(key); this.bytes -= estimate; });
    return p;
  }
}

/** Where each output pixel reads the decoded region: source = origin + u * du + v * dv (pixel centres). */
interface Warp {
  x0: number; y0: number;
  dux: number; duy: number;
  dvx: number; dvy: number;
}

/** The colour map out_c = clamp(sum_k m[c][k] in_k + offset_c, 0, 255), then normalised. Identity for eval. */
type ColourMatrix = [number[], number[], number[], number];   // three rows, then the common offset (contrast's)

const IDENTITY: ColourMatrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1], 0];
const LUMA = [0.213, 0.715, 0.072];

/**
 * The seeded train draws of DESIGN.md, in a fixed order: rotation, random resized crop (area fraction crop_scale,
 * ratio 1, anywhere inside the region), brightness, saturation, hue, contrast, blur (probability, sigma), flip.
 */
function drawTrain(d: Decoded, size: number, aug: Augment, rng: Rng): { warp: Warp; colour: ColourMatrix; sigma: number } {
  const angle = aug.rotation_deg > 0 ? uniform(rng, -aug.rotation_deg, aug.rotation_deg) : 0;
  const side = Math.sqrt(uniform(rng, aug.crop_scale[0], aug.crop_scale[1])) * Math.min(d.width, d.height);
  const left = rng.next() * (d.width - side);
  const top = rng.next() * (d.height - side);
  const brightness = uniform(rng, 1 - aug.brightness, 1 + aug.brightness);
  const saturation = uniform(rng, 1 - aug.saturation, 1 + aug.saturation);
  const hue = uniform(rng, -aug.hue, aug.hue) * 2 * Math.PI;
  const contrast = uniform(rng, 1 - aug.contrast, 1 + aug.contrast);
  const sigma = rng.next() < aug.blur_p ? uniform(rng, 0.3, 2.0) : 0;
  const flip = rng.next() < aug.hflip_p;
  return { warp: warpOf(d, size, angle, side, left, top, flip), colour: colourMatrix(brightness, saturation, hue, contrast), sigma };
}

/** The eval transform's geometry: the centred square, whole, at the output size (resize + centre crop). */
function centreWarp(d: Decoded, size: number): Warp {
  const side = Math.min(d.width, d.height);
  return warpOf(d, size, 0, side, (d.width - side) / 2, (d.height - side) / 2, false);
}

/**
 * Output pixel (u, v) -> a point of the square crop (side, at left/top of the region), relative to the region's
 * centre, rotated back by the image's rotation (positive angles turn the image clockwise on screen), then to source
 * pixel coordinates.
 */
function warpOf(d: Decoded, size: number, angle: number, side: number, left: number, top: number, flip: boolean): Warp {
  const s = side / size;
  const [cos, sin] = [Math.cos((angle * Math.PI) / 180), Math.sin((angle * Math.PI) / 180)];
  const [cx, cy] = [d.width / 2, d.height / 2];
  const ux = flip ? -s : s;
  const px = left + (flip ? side - s / 2 : s / 2) - cx, py = top + s / 2 - cy;   // output pixel (0, 0)
  return {
    x0: cx + cos * px + sin * py - 0.5, y0: cy - sin * px + cos * py - 0.5,
    dux: cos * ux, duy: -sin * ux,
    dvx: sin * s, dvy: cos * s,
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
 * and `rng` are given, else the eval transform (centre crop of the decoded region).
 */
export function render(d: Decoded, spec: ImageSpec, aug: Augment | null, rng: Rng | null, out: Float32Array, offset: number): void {
  const { size } = spec;
  const t = aug && rng ? drawTrain(d, size, aug, rng)
    : { warp: centreWarp(d, size), colour: IDENTITY, sigma: 0 };
  warpInto(d, size, t.warp, t.colour, spec, out, offset);
  if (t.sigma > 0) for (let c = 0; c < 3; c++) blurPlane(out.subarray(offset + c * size * size, offset + (c + 1) * size * size), size, t.sigma);
}

function warpInto(d: Decoded, size: number, w: Warp, colour: ColourMatrix, spec: ImageSpec, out: Float32Array, offset: number): void {
  const [m0, m1, m2, bias] = colour;
  const scale = [0, 1, 2].map((c) => 1 / (255 * spec.std[c]));
  const shift = [0, 1, 2].map((c) => spec.mean[c] / spec.std[c]);
  const n = size * size;
  const o0 = offset, o1 = offset + n, o2 = offset + 2 * n;
  const [a0, a1, a2] = m0, [b0, b1, b2] = m1, [c0, c1, c2] = m2;
  const [k0, k1, k2] = scale, [z0, z1, z2] = shift;
  const px = new Float64Array(3);   // one output pixel's RGB: the mean of its 2x2 bilinear samples
  // the 2x2 sample points of an output pixel, a quarter of its step either side of its centre, in source pixels
  const [ax, ay, bx, by] = [0.25 * (w.dux + w.dvx), 0.25 * (w.duy + w.dvy), 0.25 * (w.dux - w.dvx), 0.25 * (w.duy - w.dvy)];
  for (let v = 0; v < size; v++) {
    let sx = w.x0 + v * w.dvx, sy = w.y0 + v * w.dvy;
    for (let u = 0; u < size; u++, sx += w.dux, sy += w.duy) {
      px[0] = px[1] = px[2] = 0;
      bilinear(d, sx - ax, sy - ay, px);
      bilinear(d, sx + ax, sy + ay, px);
      bilinear(d, sx - bx, sy - by, px);
      bilinear(d, sx + bx, sy + by, px);
      const r = px[0] / 4, g = px[1] / 4, b = px[2] / 4;
      const i = v * size + u;
      out[o0 + i] = clamp255(a0 * r + a1 * g + a2 * b + bias) * k0 - z0;
      out[o1 + i] = clamp255(b0 * r + b1 * g + b2 * b + bias) * k1 - z1;
      out[o2 + i] = clamp255(c0 * r + c1 * g + c2 * b + bias) * k2 - z2;
    }
  }
}

/** Adds the bilinear sample at (x, y) to acc; what lies outside the region reads as black (the rotated canvas's). */
function bilinear({ data, width, height }: Decoded, x: number, y: number, acc: Float64Array): void {
  const xi = Math.floor(x), yi = Math.floor(y);
  const fx = x - xi, fy = y - yi;
  const row = width * 3;
  if (xi >= 0 && yi >= 0 && xi + 1 < width && yi + 1 < height) {
    const p = yi * row + xi * 3, q = p + row;
    const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
    acc[0] += w00 * data[p] + w01 * data[p + 3] + w10 * data[q] + w11 * data[q + 3];
    acc[1] += w00 * data[p + 1] + w01 * data[p + 4] + w10 * data[q + 1] + w11 * data[q + 4];
    acc[2] += w00 * data[p + 2] + w01 * data[p + 5] + w10 * data[q + 2] + w11 * data[q + 5];
    return;
  }
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

/** Separable Gaussian blur of one size x size plane, in place, edges clamped. Linear, so normalising first is fine. */
function blurPlane(plane: Float32Array, size: number, sigma: number): void {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = Float32Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const sum = kernel.reduce((a, b) => a + b, 0);
  for (let i = 0; i < kernel.length; i++) kernel[i] /= sum;
  const tmp = new Float32Array(plane.length);
  const line = new Float32Array(size + 2 * radius);   // one row or column, edge values repeated on both sides
  const pass = (src: Float32Array, dst: Float32Array, stride: number, step: number) => {
    for (let l = 0; l < size; l++) {
      const base = l * stride;
      for (let i = 0; i < line.length; i++) {
        const j = i - radius;
        line[i] = src[base + (j < 0 ? 0 : j >= size ? size - 1 : j) * step];
      }
      for (let i = 0; i < size; i++) {
        let acc = 0;
        for (let k = 0; k < kernel.length; k++) acc += kernel[k] * line[i + k];
        dst[base + i * step] = acc;
      }
    }
  };
  pass(plane, tmp, size, 1);   // rows
  pass(tmp, plane, 1, size);   // columns
}
