// Where the date and the mint mark lie on a photo that comes without an ROI file. Two steps, both learned from
// nothing but the training images and their ROI file:
//   1. the coin: its rim is the strongest circle in the picture (findCoin: a gradient-direction Hough transform on a
//      greyscale copy 128 px on its longer side: each strong edge pixel votes for the centres one radius away along
//      its gradient, both ways, as a coin may be lighter or darker than what it lies on);
//   2. the box on the coin: in the coin's upright frame (turned back by its angle, in coin radii) a die puts the date
//      and the mint mark in nearly the same place on every cent, so the median over the training ROIs is a template
//      (roiTemplate), and a box is that template turned by the coin's angle and scaled by its radius (placeRoi).
// The detector's own bias (a rim found a pixel inside the edge) is the same when the template is learned and when it
// is used, so it cancels. Where it breaks: a coin cut off by the frame or much smaller than a fifth of the picture,
// several coins, a background with a stronger circle, and an angle that is wrong (the box swings around the coin).
import { findCircle, resamplePixels } from '../backend/native.js';
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

const WORK = 128;   // the longer side of the copy the circle is found on (searched first at half that)

/**
 * The coin in `image` (a path, encoded bytes or decoded pixels), by its rim: the best-supported circle.
 */
export async function findCoin(image: ImageInput): Promise<Coin> {
  const { decoded: img } = await decodeInput(image);   // as every model reads it, whether training learns or prediction uses the locator
  const k = WORK / Math.max(img.width, img.height);
  const [width, height] = [Math.max(1, Math.round(img.width * k)), Math.max(1, Math.round(img.height * k))];
  // the search needs 8 px each way (native/pixels.cc): a picture over 16 times longer than wide holds no usable coin
  if (width < 8 || height < 8) throw new DataError(`${nameOf(image)}: no coin found: a ${img.width} x ${img.height} px picture is too narrow to hold one`);
  const rgb = await resamplePixels(img.raw, img.width, img.height, Float64Array.of(0, 0, img.width, img.height), width, height);
  const grey = new Uint8Array(width * height);
  for (let i = 0; i < grey.length; i++) grey[i] = (77 * rgb[3 * i] + 150 * rgb[3 * i + 1] + 29 * rgb[3 * i + 2] + 128) >> 8;   // Rec. 601 luma
  let c: Coin;
  try {
    c = await findCircle(grey, width, height);   // native/pixels.cc: a Hough transform, on the thread pool
  } catch (e) {
    throw new DataError(`${nameOf(image)}: ${(e as Error).message}`);
  }
  const [kx, ky] = [img.width / width, img.height / height];
  return { cx: c.cx * kx, cy: c.cy * ky, r: c.r * kx };
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
