// One preprocess for prediction: the trainer's eval transform itself (data/images.ts decode + render without
// augmentation; ROIs placed by data/roi.ts roiRegion), driven by the recipe a model carries in its metadata, so a
// photo reaches an exported model exactly as the validation images reached it in training.
import type { Box } from '../data/dataset.js';
import { headerSize } from '../data/image-files.js';
import { decode, decodeImage, isRawImage, recipeSpec, render, type PreprocessRecipe, type RawImage } from '../data/images.js';
import { roiRegion } from '../data/roi.js';
import { DataError, UsageError } from '../errors.js';

/** An image to read: a path, or the bytes of an encoded image (JPEG, PNG, WebP, ...), bare or with a name for messages. */
export type ImageInput = string | Buffer | NamedImage;

/**
 * An image and the name messages call it by: its encoded bytes, or its pixels already decoded (decodeInput; readCoins
 * decodes each photo once, and every model and the coin search read those pixels).
 */
export type NamedImage = { name: string; bytes: Buffer } | DecodedImage;
export type DecodedImage = { name: string; decoded: RawImage };

/** What the image pipeline reads: the path, the bytes or the decoded pixels. */
export const sourceOf = (image: ImageInput): string | Buffer | RawImage =>
  (typeof image === 'string' || Buffer.isBuffer(image) ? image : 'decoded' in image ? image.decoded : image.bytes);

/** The image decoded once, as displayed, named for messages. */
export async function decodeInput(image: ImageInput): Promise<DecodedImage> {
  if (typeof image === 'object' && 'decoded' in image) return image;
  const src = sourceOf(image) as string | Buffer;
  try {
    return { name: nameOf(image), decoded: await decodeImage(src) };
  } catch (e) {
    throw new DataError(`cannot read ${nameOf(image)}: ${(e as Error).message}`);
  }
}

/** Where on the image a date or mint model reads. */
export interface RoiPlacement {
  /** the ROI as an ROI file gives it: x, y, width, height in pixels of the image as displayed */
  roi?: Box;
  /** the coin's angle (degrees, counter-clockwise): what an upright ROI (alignRoi) is turned back by */
  angle?: number;
}

/** An image as messages name it: its path, or its size in bytes. */
export const nameOf = (image: ImageInput) =>
  typeof image === 'string' ? image : Buffer.isBuffer(image) ? `an image of ${image.length} bytes` : image.name;

/** The image's width and height as displayed (EXIF orientation applied): the frame ROIs are given in. */
export async function displayedSize(image: ImageInput): Promise<[number, number]> {
  const src = sourceOf(image);
  if (isRawImage(src)) return [src.width, src.height];
  try {
    return await headerSize(src);
  } catch (e) {
    throw new DataError(`cannot read ${nameOf(image)}: ${(e as Error).message}`);
  }
}

/**
 * The model input of one image, float32 [3, H, W] (NCHW without the batch), written into `out` at `offset` when
 * given. `size` is displayedSize(image), when the caller has it already.
 */
export async function preprocess(image: ImageInput, recipe: PreprocessRecipe, where: RoiPlacement = {}, out?: Float32Array, offset = 0,
  size?: [number, number]): Promise<Float32Array> {
  const spec = recipeSpec(recipe);
  const [width, height] = size ?? await displayedSize(image);
  let region = {};
  if (recipe.region !== 'image') {
    const roi = where.roi;
    if (!roi) throw new UsageError(`the model reads the ${recipe.region}; no ROI was given or located for ${nameOf(image)}`);
    if (recipe.alignRoi && where.angle === undefined) {
      throw new UsageError(`the model reads its ${recipe.region} upright (alignRoi) and needs the coin's angle for ${nameOf(image)}`);
    }
    if (!(roi.width > 0 && roi.height > 0 && roi.x >= 0 && roi.y >= 0 && roi.x + roi.width <= width && roi.y + roi.height <= height)) {
      throw new UsageError(`ROI ${JSON.stringify(roi)} does not lie inside the ${width}x${height} image ${nameOf(image)}`);
    }
    region = roiRegion(roi, width, height, recipe.alignRoi ? { angle: where.angle!, aspect: recipe.roiAspect ?? 1 } : undefined, recipe.roiPad);
  }
  const dst = out ?? new Float32Array(3 * spec.height * spec.width);
  let decoded;
  try {
    decoded = await decode({ file: sourceOf(image), width, height, ...region }, spec);
  } catch (e) {
    throw new DataError(`cannot decode ${nameOf(image)}: ${(e as Error).message}`);
  }
  await render(decoded, spec, null, null, dst, offset);
  return dst;
}
