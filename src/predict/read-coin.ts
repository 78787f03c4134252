// Reading a whole coin: side -> (obverse) orientation -> the date and the mint mark, each read where the ROI lies on
// the coin turned by the angle found. Images go in chunks of a few batches: each photo is decoded once, then stage by
// stage (the chunk's sides, then its obverses' angles, ...) so each model runs full batches, and memory holds one
// chunk's pixels however many photos there are; an image that cannot be read gets its error, the others go on.
import fs from 'node:fs';
import path from 'node:path';
import { MODEL_KEYS, type ModelKey } from '../config/config.js';
import type { Box } from '../data/dataset.js';
import { DataError, UsageError } from '../errors.js';
import { mapLimit } from '../util/concurrency.js';
import { findCoin, placeRoi, type Coin } from './locate.js';
import { loadModel, type Classification, type LoadedModel } from './model.js';
import { decodeInput, type DecodedImage, type ImageInput } from './preprocess.js';

export type CoinModels = Partial<Record<ModelKey, LoadedModel>>;

/** A date or mint answer, with the ROI it was read from. */
export interface RoiReading extends Classification {
  roi: Box;
  roiSource: 'given' | 'located';
}

export interface CoinReading {
  image: string;
  side?: Classification;
  /** the angle the date and mint were read at (degrees, counter-clockwise), and where it came from */
  angle?: number;
  angleSource?: 'given' | 'orientation';
  orientation?: Classification;
  /** the coin found in the image (pixels), where an ROI was located on it */
  coin?: Coin;
  date?: RoiReading;
  mint?: RoiReading;
  /** why this image could not be read (the rest of the reading is what was done before) */
  error?: string;
}

export interface ReadOptions {
  /** ROIs known (x, y, width, height in displayed pixels), for every image or one entry per image: used instead of locating them */
  roi?: KnownRois | readonly (KnownRois | undefined)[];
  /** the coin's angle, when known: used instead of the orientation model's */
  angle?: number;
  topK?: number;
  batchSize?: number;
}

export type KnownRois = { date?: Box; mint?: Box };

const ROI_MODELS = ['date', 'mint'] as const;

/** Reads one coin; throws when it cannot. */
export async function readCoin(image: ImageInput, models: CoinModels, options: ReadOptions = {}): Promise<CoinReading> {
  const [r] = await readCoins([image], models, options);
  if (r.error) throw new UsageError(r.error);
  return r;
}

/** Batches of images a chunk holds: enough for full batches per model, few enough to bound memory. */
const CHUNK_BATCHES = 4;

/** Reads many coins, batch by batch per model; an image that fails carries `error` and drops out of later stages. */
export async function readCoins(images: readonly ImageInput[], models: CoinModels, options: ReadOptions = {}): Promise<CoinReading[]> {
  if (!Object.keys(models).length) throw new UsageError('readCoin needs at least one model');
  const chunk = CHUNK_BATCHES * (options.batchSize ?? 16);
  const out: CoinReading[] = [];
  // the next chunk is read and decoded while this one's models run
  let next: Promise<Decoded> | null = images.length ? decodeChunk(images.slice(0, chunk)) : null;
  for (let at = 0; next; at += chunk) {
    const decoded = await next;
    next = at + chunk < images.length ? decodeChunk(images.slice(at + chunk, at + 2 * chunk)) : null;
    const roi = Array.isArray(options.roi) ? options.roi.slice(at, at + chunk) : options.roi;
    out.push(...await readChunk(decoded, models, { ...options, roi }));
  }
  return out;
}

/** A chunk's readings so far (an image that could not be decoded has its error) and its pixels. */
type Decoded = { out: CoinReading[]; inputs: (DecodedImage | undefined)[] };

/** Each photo read and decoded once: every stage and the coin search read its pixels. */
async function decodeChunk(images: readonly ImageInput[]): Promise<Decoded> {
  const out: CoinReading[] = images.map((im) => ({ image: typeof im === 'string' ? im : Buffer.isBuffer(im) ? `<${im.length} bytes>` : im.name }));
  const inputs = await mapLimit(images, 4, async (im, i) => {
    try {
      const bytes = typeof im === 'string'
        ? await fs.promises.readFile(im).catch((e: NodeJS.ErrnoException) => { throw new DataError(`cannot read ${im}: ${e.code ?? e.message}`); })
        : undefined;
      return await decodeInput(bytes ? { name: im as string, bytes } : im);
    } catch (e) {
      out[i].error = (e as Error).message;
      return undefined;
    }
  });
  return { out, inputs };
}

async function readChunk({ out, inputs }: Decoded, models: CoinModels, options: ReadOptions): Promise<CoinReading[]> {
  const live = (keep: (r: CoinReading) => boolean = () => true) => out.flatMap((r, i) => (!r.error && keep(r) ? [i] : []));
  /** classifies the images `idx` with `model`, each with its ROI placement; a failing batch is retried one by one */
  const stage = async (model: LoadedModel, idx: number[], where: (i: number) => { roi?: Box; angle?: number }) => {
    const items = idx.map((i) => ({ image: inputs[i]!, ...where(i) }));   // decoded: its size is known without a read
    const opts = { topK: options.topK, batchSize: options.batchSize };
    try {
      return await model.classifyMany(items, opts);
    } catch {
      return Promise.all(items.map((it, j) => model.classify(it.image, { ...it, topK: options.topK }).catch((e: Error) => {
        out[idx[j]].error = `${model.modelType}: ${e.message}`;
        return undefined;
      })));
    }
  };

  if (models.side) {
    const idx = live();
    (await stage(models.side, idx, () => ({}))).forEach((c, j) => c && (out[idx[j]].side = c));
  }
  const obverse = (r: CoinReading) => !r.side || r.side.label === 'obverse';
  if (options.angle !== undefined) {
    for (const i of live(obverse)) Object.assign(out[i], { angle: options.angle, angleSource: 'given' });
  } else if (models.orientation) {
    const idx = live(obverse);
    (await stage(models.orientation, idx, () => ({}))).forEach((c, j) => {
      if (c) Object.assign(out[idx[j]], { orientation: c, angle: c.angle, angleSource: 'orientation' });
    });
  }

  for (const key of ROI_MODELS) {
    const model = models[key];
    if (!model) continue;
    const givenFor = (i: number) => (Array.isArray(options.roi) ? options.roi[i] : (options.roi as KnownRois | undefined))?.[key];
    const idx = live(obverse);
    const rois = new Map<number, { roi: Box; roiSource: RoiReading['roiSource'] }>();
    await mapLimit(idx, 4, async (i) => {
      const r = out[i], given = givenFor(i);
      if (given) return rois.set(i, { roi: given, roiSource: 'given' });
      if (!model.roiLocator) {
        r.error = `${key}: ${model.file} has no ROI locator (trained before penny-train learned one): give the ROI (--roi ${key}=x,y,w,h)`;
        return;
      }
      if (r.angle === undefined) {
        r.error = `${key}: no angle to place its ROI by (load an orientation model, or give --angle or --roi ${key}=x,y,w,h)`;
        return;
      }
      try {
        r.coin ??= await findCoin(inputs[i]!);
      } catch (e) {
        r.error = `${key}: ${(e as Error).message}`;
        return;
      }
      const { width, height } = inputs[i]!.decoded;
      rois.set(i, { roi: placeRoi(model.roiLocator!, r.coin, r.angle, width, height), roiSource: 'located' });
    });
    const ready = idx.filter((i) => rois.has(i) && !out[i].error);
    (await stage(model, ready, (i) => ({ roi: rois.get(i)!.roi, angle: out[i].angle }))).forEach((c, j) => {
      if (c) out[ready[j]][key] = { ...c, ...rois.get(ready[j])! };
    });
  }
  return out;
}

/**
 * The models of a folder or a list of files: every penny-train .onnx (and .pt checkpoint, when named) by its
 * metadata's model_type; from a folder (searched two levels down, as models/<model>/) the newest file of each type
 * whose name ends in `_<precision>.onnx`. Two files of one type named outright are an error.
 */
export async function loadModels(sources: readonly string[], options: { precision?: 'fp32' | 'int8'; threads?: number } = {}): Promise<CoinModels> {
  const precision = options.precision ?? 'fp32';
  const files: string[] = [];
  for (const src of sources) {
    if (!fs.existsSync(src)) throw new UsageError(`models: ${src} does not exist`);
    if (!fs.statSync(src).isDirectory()) {
      files.push(src);
      continue;
    }
    const found = walk(src, 2).filter((f) => f.endsWith(`_${precision}.onnx`));
    const newest = new Map<string, { file: string; mtime: number }>();
    for (const f of found) {
      const key = MODEL_KEYS.find((k) => path.basename(f).startsWith(`${k}_`));
      const mtime = fs.statSync(f).mtimeMs;
      if (key && (!newest.has(key) || newest.get(key)!.mtime < mtime)) newest.set(key, { file: f, mtime });
    }
    if (!newest.size) throw new UsageError(`models: no <model>_<stamp>_${precision}.onnx under ${src}`);
    files.push(...[...newest.values()].map((n) => n.file));
  }
  const models: CoinModels = {};
  for (const f of files) {
    const m = await loadModel(f, { threads: options.threads });
    if (models[m.modelType]) {
      await m.close();
      throw new UsageError(`models: two ${m.modelType} models (${models[m.modelType]!.file} and ${f}); name one`);
    }
    models[m.modelType] = m;
  }
  return models;
}

function walk(dir: string, depth: number): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? (depth > 0 ? walk(p, depth - 1) : []) : [p];
  });
}
