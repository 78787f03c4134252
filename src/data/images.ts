// Image pipeline on sharp: decode, ROI crop, the seeded train augmentations of DESIGN.md, eval resize + centre crop,
// normalisation to Float32 CHW.
import sharp from 'sharp';
import type { Augment } from '../config/config.js';
import { hashSeed, Rng } from '../util/rng.js';
import type { Sample } from './dataset.js';

export interface ImageSpec {
  size: number;
  mean: readonly number[];
  std: readonly number[];
}

const uniform = (rng: Rng, lo: number, hi: number) => lo + (hi - lo) * rng.next();

/** The augmentation draws for one sample in one epoch: a function of (seed, epoch, uid) only. */
export function augmentRng(seed: number, epoch: number, uid: string): Rng {
  return new Rng(hashSeed(seed, `aug:${epoch}:${uid}`));
}

/** RGB uint8 HWC -> normalised float CHW, written into `out` at `offset`. */
export function normalise(rgb: Buffer, spec: ImageSpec, out: Float32Array, offset: number): void {
  const n = spec.size * spec.size;
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * spec.std[c]);
    const shift = spec.mean[c] / spec.std[c];
    const o = offset + c * n;
    for (let i = 0; i < n; i++) out[o + i] = rgb[i * 3 + c] * scale - shift;
  }
}

/** The sample's pixels (its crop, if any) as RGB, size x size: eval transform when `aug` is null. */
export async function loadRgb(sample: Sample, size: number, aug: Augment | null, rng: Rng | null): Promise<Buffer> {
  const region = sample.crop ?? { x: 0, y: 0, width: sample.width, height: sample.height };
  let img = sharp(sample.file, { failOn: 'truncated' }).removeAlpha().toColourspace('srgb');
  if (sample.crop) img = img.extract({ left: region.x, top: region.y, width: region.width, height: region.height });
  if (!aug || !rng) {
    return img.resize(size, size, { fit: 'cover', position: 'centre' }).raw().toBuffer();
  }
  // Then over the decoded region: rotate (the canvas grows; its real size comes back from sharp), a random square
  // crop of the original area, resize, colour jitter, blur, flip.
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const angle = aug.rotation_deg > 0 ? uniform(rng, -aug.rotation_deg, aug.rotation_deg) : 0;
  const raw = (d: Buffer, w: number, h: number) => sharp(d, { raw: { width: w, height: h, channels: 3 } });
  let t = raw(data, info.width, info.height);
  let cw = info.width, ch = info.height;
  if (angle !== 0) {
    const r = await t.rotate(angle, { background: { r: 0, g: 0, b: 0 } }).raw().toBuffer({ resolveWithObject: true });
    [cw, ch] = [r.info.width, r.info.height];
    t = raw(r.data, cw, ch);
  }
  const side = Math.max(1, Math.floor(Math.sqrt(uniform(rng, aug.crop_scale[0], aug.crop_scale[1])) * Math.min(info.width, info.height)));
  const left = Math.floor((cw - info.width) / 2 + rng.next() * (info.width - side + 1));
  const top = Math.floor((ch - info.height) / 2 + rng.next() * (info.height - side + 1));
  t = t.extract({ left: clamp(left, 0, cw - side), top: clamp(top, 0, ch - side), width: side, height: side })
    .resize(size, size, { fit: 'fill' });
  const brightness = uniform(rng, 1 - aug.brightness, 1 + aug.brightness);
  const saturation = uniform(rng, 1 - aug.saturation, 1 + aug.saturation);
  const hue = (Math.round(uniform(rng, -aug.hue, aug.hue) * 360) + 360) % 360;   // sharp takes whole degrees
  const contrast = uniform(rng, 1 - aug.contrast, 1 + aug.contrast);
  t = t.modulate({ brightness, saturation, hue }).linear(contrast, 128 * (1 - contrast));
  if (rng.next() < aug.blur_p) t = t.blur(uniform(rng, 0.3, 2.0));
  if (rng.next() < aug.hflip_p) t = t.flop();
  return t.raw().toBuffer();
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
