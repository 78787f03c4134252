// Where the date and the mint mark lie on a photo that comes without an ROI file. Two steps, both learned from
// nothing but the training images and their ROI file:
//   1. the coin: its rim is the strongest circle in the picture (findCoin: a gradient-direction Hough transform on a
//      128 px greyscale copy: each strong edge pixel votes for the centres one radius away along its gradient, both
//      ways, as a coin may be lighter or darker than what it lies on);
//   2. the box on the coin: in the coin's upright frame (turned back by its angle, in coin radii) a die puts the date
//      and the mint mark in nearly the same place on every cent, so the median over the training ROIs is a template
//      (roiTemplate), and a box is that template turned by the coin's angle and scaled by its radius (placeRoi).
// The detector's own bias (a rim found a pixel inside the edge) is the same when the template is learned and when it
// is used, so it cancels. Where it breaks: a coin cut off by the frame or much smaller than a fifth of the picture,
// several coins, a background with a stronger circle, and an angle that is wrong (the box swings around the coin).
import sharp from 'sharp';
import type { Box, Sample } from '../data/dataset.js';
import { exactUprightSize } from '../data/roi.js';
import { DataError } from '../errors.js';
import { mapLimit } from '../util/concurrency.js';
import { decodeInput, nameOf, type ImageInput } from './preprocess.js';

/** A coin in image pixels (as displayed: EXIF orientation applied). */
export interface Coin {
  cx: number;
  cy: number;
  r: number;
}

/** A box on the upright coin: centre (u right, v down) and size, in coin radii. */
export interface RoiTemplate {
  u: number;
  v: number;
  width: number;
  height: number;
  /** training boxes it is the median of */
  boxes: number;
}

const WORK = 128;   // the longer side of the copy the circle is found on; searched first at half that
const R_MIN = 0.2, R_MAX = 0.55;   // radii searched, as fractions of the shorter side
const EDGE_FRACTION = 0.12;   // the strongest pixels by gradient that vote

/**
 * The coin in `image` (a path, encoded bytes or decoded pixels), by its rim: the best-supported circle.
 */
export async function findCoin(image: ImageInput): Promise<Coin> {
  const { decoded: img } = await decodeInput(image);   // as every model reads it, whether training learns or prediction uses the locator
  const { data, info } = await sharp(img.raw, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(WORK, WORK, { fit: 'inside' }).greyscale().raw().toBuffer({ resolveWithObject: true });
  let c: Coin;
  try {
    c = circleIn(data, info.width, info.height);
  } catch (e) {
    throw new DataError(`${nameOf(image)}: ${(e as Error).message}`);
  }
  const k = img.width / info.width;
  return { cx: c.cx * k, cy: c.cy * k, r: c.r * k };
}

interface Edges {
  width: number;
  height: number;
  /** the voting pixels: index, and the unit gradient */
  at: Int32Array;
  ux: Float32Array;
  uy: Float32Array;
}

/** Sobel gradients; the EDGE_FRACTION strongest pixels, which vote. */
function edgesOf(grey: Uint8Array, width: number, height: number): Edges {
  const n = width * height;
  const mag = new Float32Array(n), gx = new Float32Array(n), gy = new Float32Array(n);
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1, i = y * width + 1; x < width - 1; x++, i++) {
      const a = grey[i - width - 1], b = grey[i - width], c = grey[i - width + 1], d = grey[i - 1], f = grey[i + 1];
      const g = grey[i + width - 1], h = grey[i + width], k = grey[i + width + 1];
      const dx = c + 2 * f + k - a - 2 * d - g, dy = g + 2 * h + k - a - 2 * b - c;
      gx[i] = dx; gy[i] = dy; mag[i] = Math.sqrt(dx * dx + dy * dy);
    }
  }
  const threshold = quantile(mag, 1 - EDGE_FRACTION);
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (mag[i] > threshold) idx.push(i);
  return {
    width, height, at: Int32Array.from(idx), ux: Float32Array.from(idx, (i) => gx[i] / mag[i]), uy: Float32Array.from(idx, (i) => gy[i] / mag[i]),
  };
}

/** The q-quantile of non-negative values, to 1/1024 of their range (a histogram: no sort). */
function quantile(v: Float32Array, q: number): number {
  let max = 0;
  for (const x of v) if (x > max) max = x;
  if (max === 0) return Infinity;   // a flat picture: nothing votes
  const bins = new Int32Array(1025), k = 1024 / max;
  for (const x of v) bins[Math.floor(x * k)]++;
  for (let b = 0, seen = 0; b <= 1024; b++) {
    seen += bins[b];
    if (seen >= q * v.length) return (b + 1) / k;
  }
  return max;
}

/**
 * The best circle with a radius in [r0, r1] and a centre pixel in [x0, x1) x [y0, y1): each edge pixel votes for the
 * centres one radius away along its gradient, both ways (a coin may be lighter or darker than what it lies on); a
 * centre's score is its 3 x 3 neighbourhood's votes (one circle's rasterised votes scatter by a pixel) per unit of rim
 * (~2 pi r edge pixels). Sub-pixel: the votes' centroid, and a parabola through the scores at r - 1, r, r + 1.
 */
function bestCircle(e: Edges, r0: number, r1: number, x0: number, x1: number, y0: number, y1: number): Coin {
  [x0, y0] = [Math.max(1, x0), Math.max(1, y0)];
  [x1, y1] = [Math.min(e.width - 1, x1), Math.min(e.height - 1, y1)];
  const w = x1 - x0 + 2, h = y1 - y0 + 2, plane = w * h;   // the window and a one-pixel border
  const acc = new Float32Array((r1 - r0 + 1) * plane);
  for (let k = 0; k < e.at.length; k++) {
    const x = (e.at[k] % e.width) + 0.5 - (x0 - 1), y = Math.floor(e.at[k] / e.width) + 0.5 - (y0 - 1), ux = e.ux[k], uy = e.uy[k];
    for (let r = r0, base = 0; r <= r1; r++, base += plane) {
      let px = Math.floor(x + r * ux), py = Math.floor(y + r * uy);
      if (px >= 0 && py >= 0 && px < w && py < h) acc[base + py * w + px] += 1;
      px = Math.floor(x - r * ux); py = Math.floor(y - r * uy);
      if (px >= 0 && py >= 0 && px < w && py < h) acc[base + py * w + px] += 1;
    }
  }
  const score = (r: number, x: number, y: number) => {   // x, y in window pixels
    if (r < r0 || r > r1) return NaN;
    const base = (r - r0) * plane;
    let s = 0;
    for (let j = -1; j <= 1; j++) for (let i = -1; i <= 1; i++) s += acc[base + (y + j) * w + x + i];
    return s / r;
  };
  const rows = new Float32Array(plane);
  let best = { s: -1, x: 1, y: 1, r: r0 };
  for (let r = r0, base = 0; r <= r1; r++, base += plane) {
    for (let y = 0; y < h; y++) for (let x = 1, i = y * w + 1; x < w - 1; x++, i++) rows[i] = acc[base + i - 1] + acc[base + i] + acc[base + i + 1];
    for (let y = 1; y < h - 1; y++) {
      for (let x = 1, i = y * w + 1; x < w - 1; x++, i++) {
        const s = (rows[i - w] + rows[i] + rows[i + w]) / r;
        if (s > best.s) best = { s, x, y, r };
      }
    }
  }
  const [lo, hi] = [score(best.r - 1, best.x, best.y), score(best.r + 1, best.x, best.y)];
  const curve = lo - 2 * best.s + hi;
  const dr = Number.isFinite(curve) && curve < 0 ? Math.max(-0.5, Math.min(0.5, (lo - hi) / (2 * curve))) : 0;
  let sw = 0, sx = 0, sy = 0;
  for (let j = -1; j <= 1; j++) {
    for (let i = -1; i <= 1; i++) {
      const v = acc[(best.r - r0) * plane + (best.y + j) * w + best.x + i];
      sw += v; sx += v * (best.x + i + 0.5); sy += v * (best.y + j + 0.5);
    }
  }
  const [cx, cy] = sw ? [sx / sw, sy / sw] : [best.x + 0.5, best.y + 0.5];
  return { cx: cx + x0 - 1, cy: cy + y0 - 1, r: best.r + dr };
}

/** Each output pixel the mean of a 2 x 2 block. */
function halve(grey: Uint8Array, width: number, height: number): [Uint8Array, number, number] {
  const w = width >> 1, h = height >> 1, out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 2 * y * width + 2 * x;
      out[y * w + x] = (grey[i] + grey[i + 1] + grey[i + width] + grey[i + width + 1] + 2) >> 2;
    }
  }
  return [out, w, h];
}

/**
 * The best-supported circle in a greyscale raster (pixel centres at +0.5): searched over every centre and radius at
 * half the resolution, then refined at full resolution near what that found (a tenth of the votes of a full search).
 */
export function circleIn(grey: Uint8Array, width: number, height: number): Coin {
  const [small, sw, sh] = halve(grey, width, height);
  const side = Math.min(sw, sh), edges = edgesOf(small, sw, sh);
  if (!edges.at.length) throw new RangeError('no coin found: the picture has no edges');
  const coarse = bestCircle(edges, Math.max(2, Math.floor(R_MIN * side)), Math.ceil(R_MAX * side), 0, sw, 0, sh);
  const [cx, cy, r] = [2 * coarse.cx, 2 * coarse.cy, Math.round(2 * coarse.r)];
  return bestCircle(edgesOf(grey, width, height), Math.max(2, r - 3), r + 3, Math.floor(cx) - 4, Math.ceil(cx) + 4, Math.floor(cy) - 4, Math.ceil(cy) + 4);
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** A point of the image as (u, v) on the upright coin, in radii: turned back by the coin's angle (CCW degrees). */
function toCoin(coin: Coin, angle: number, x: number, y: number): [number, number] {
  const t = (angle * Math.PI) / 180, c = Math.cos(t), s = Math.sin(t);
  const dx = (x - coin.cx) / coin.r, dy = (y - coin.cy) / coin.r;
  return [c * dx - s * dy, s * dx + c * dy];   // the inverse of roi.ts viewCorners' turn
}

/**
 * The template of a set of training boxes, each with its coin and angle: the median centre, and the median upright
 * size over the boxes whose bounds decide it (within 30 degrees of an axis: roi.ts exactUprightSize).
 */
export function roiTemplate(boxes: readonly { roi: Box; coin: Coin; angle: number }[]): RoiTemplate {
  if (!boxes.length) throw new RangeError('roiTemplate: no boxes to learn from');
  const centres = boxes.map(({ roi, coin, angle }) => toCoin(coin, angle, roi.x + roi.width / 2, roi.y + roi.height / 2));
  const sizes = boxes.flatMap(({ roi, coin, angle }) => {
    const e = exactUprightSize(roi.width, roi.height, angle);
    return e ? [[e[0] / coin.r, e[1] / coin.r]] : [];
  });
  const all = sizes.length ? sizes : boxes.map(({ roi, coin }) => [roi.width / coin.r, roi.height / coin.r]);
  return { u: median(centres.map((p) => p[0])), v: median(centres.map((p) => p[1])), width: median(all.map((s) => s[0])), height: median(all.map((s) => s[1])), boxes: boxes.length };
}

/** The box (axis-aligned bounds, as an ROI file gives them) of the template on `coin` lying at `angle`. */
export function placeRoi(t: RoiTemplate, coin: Coin, angle: number, imageWidth: number, imageHeight: number): Box {
  const a = (angle * Math.PI) / 180, c = Math.cos(a), s = Math.sin(a);
  const cx = coin.cx + coin.r * (c * t.u + s * t.v), cy = coin.cy + coin.r * (-s * t.u + c * t.v);
  const w = coin.r * (t.width * Math.abs(c) + t.height * Math.abs(s)), h = coin.r * (t.width * Math.abs(s) + t.height * Math.abs(c));
  const x0 = Math.max(0, cx - w / 2), y0 = Math.max(0, cy - h / 2);
  const x1 = Math.min(imageWidth, cx + w / 2), y1 = Math.min(imageHeight, cy + h / 2);
  return { x: x0, y: y0, width: Math.max(1, x1 - x0), height: Math.max(1, y1 - y0) };
}

/** Intersection over union of two boxes. */
export function iou(a: Box, b: Box): number {
  const w = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  const inter = w > 0 && h > 0 ? w * h : 0;
  return inter / (a.width * a.height + b.width * b.height - inter);
}

/** Training boxes a template is the median of, and validation images its IoU is measured on (enough for a median). */
const LOCATOR_TRAIN = 400, LOCATOR_VAL = 200;

/**
 * The ROI locator of a date or mint dataset: the template of its first LOCATOR_TRAIN train ROIs (those with an
 * angle), and the mean IoU of its boxes against the true ones on the first LOCATOR_VAL validation images (true
 * angles). Null when fewer than 3 train samples have both.
 */
export async function learnRoiLocator(train: readonly Sample[], val: readonly Sample[]): Promise<{ template: RoiTemplate; valIou: number | null } | null> {
  const usable = (s: readonly Sample[], n: number) => s.filter((x) => x.roi && x.angle !== undefined).slice(0, n);
  const withCoins = (s: Sample[]) => mapLimit(s, 4, async (x) => ({ roi: x.roi!, angle: x.angle!, coin: await findCoin(x.file), width: x.width, height: x.height }));
  const boxes = await withCoins(usable(train, LOCATOR_TRAIN));
  if (boxes.length < 3) return null;
  const template = roiTemplate(boxes);
  const held = await withCoins(usable(val, LOCATOR_VAL));
  const ious = held.map((b) => iou(placeRoi(template, b.coin, b.angle, b.width, b.height), b.roi));
  return { template, valIou: ious.length ? ious.reduce((a, b) => a + b, 0) / ious.length : null };
}
