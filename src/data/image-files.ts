// Images named on a command line (predict's inputs, export's --calibration folder): files as given, folders' image
// files by extension, sorted, not recursive.
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { DataError, UsageError } from '../errors.js';
import type { Sample } from './dataset.js';

export const IMAGE_EXT = /\.(jpe?g|png|webp|tiff?|gif|avif|heic|heif)$/i;

/** `named`: the file was given by name (a folder's files were not), so a bad one is the caller's to report. */
export function listImages(inputs: string[]): { file: string; named: boolean }[] {
  return inputs.flatMap((p) => {
    if (!fs.existsSync(p)) throw new UsageError(`no such image or folder: ${p}`);
    if (!fs.statSync(p).isDirectory()) return [{ file: p, named: true }];
    const files = fs.readdirSync(p).filter((f) => IMAGE_EXT.test(f)).sort().map((f) => ({ file: path.join(p, f), named: false }));
    if (!files.length) throw new UsageError(`no images (${IMAGE_EXT.source}) in ${p}`);
    return files;
  });
}

/**
 * An image's width and height as displayed, from its header: EXIF orientation applied (5-8 swap them), the frame
 * ROI boxes are given in. Throws sharp's error; callers say which image, in their own terms.
 */
export async function headerSize(image: string | Buffer): Promise<[number, number]> {
  const { width = 0, height = 0 } = (await sharp(image, { failOn: 'truncated' }).metadata()).autoOrient;
  return [width, height];
}

/**
 * Images without metadata as samples the eval pipeline reads whole (no ROI, no angle; label 0): export's calibration
 * images. For date and mint each image is taken as the model's input region, an ROI crop.
 */
export async function unlabelledSamples(files: string[]): Promise<Sample[]> {
  return Promise.all(files.map(async (file) => {
    try {
      const [width, height] = await headerSize(file);
      return { uid: path.basename(file), file: path.resolve(file), label: 0, width, height };
    } catch (e) {
      throw new DataError(`cannot read image ${file}: ${(e as Error).message}`);
    }
  }));
}
