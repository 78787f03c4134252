// A trained model, ready to answer: loadModel() opens an exported ONNX file (fp32 or int8, run by onnxruntime-node)
// or a checkpoint (run by the backend it names), reads what the model is and how to feed it from the file itself
// (ONNX metadata `model_type`, `label_map`, `preprocess`, `roi_locator`; a checkpoint's config), and classify()
// takes images to labels through the one preprocess().
import fs from 'node:fs';
import type ort from 'onnxruntime-node';
import { MODEL_KEYS, type ModelKey } from '../config/config.js';
import { preprocessRecipe, RESAMPLE, type PreprocessRecipe } from '../data/images.js';
import { orientationBinCentre } from '../data/labels.js';
import { UsageError } from '../errors.js';
import { metadataOf, readModel } from '../export/onnx-proto.js';
import { createSession, runOnnx } from '../export/parity.js';
import { createModel, type PennyModel } from '../model/model.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { headOf } from '../train/train.js';
import { mapLimit } from '../util/concurrency.js';
import type { RoiTemplate } from './locate.js';
import { displayedSize, preprocess, type ImageInput, type RoiPlacement } from './preprocess.js';

export interface Scored {
  label: string;
  probability: number;
}

export interface Classification extends Scored {
  /** the best `topK` labels, most probable first */
  topK: Scored[];
  /** orientation: the coin's angle in degrees (counter-clockwise), the centre of the winning 3-degree bin */
  angle?: number;
}

export interface ClassifyOptions extends RoiPlacement {
  /** how many labels `topK` lists (default 5, at most the number of classes) */
  topK?: number;
}

export interface LoadedModel {
  file: string;
  format: 'onnx' | 'checkpoint';
  modelType: ModelKey;
  /** class index -> name */
  labels: string[];
  recipe: PreprocessRecipe;
  /** date and mint: where the ROI lies on a coin (locate.ts), when the model was trained with one */
  roiLocator?: RoiTemplate;
  /** the ONNX file's `quantization` metadata, when it is an int8 model */
  quantization?: string;
  classify(image: ImageInput, options?: ClassifyOptions): Promise<Classification>;
  /**
   * many images, decoded `concurrency` at a time, run `batchSize` at a time (defaults 4 and 16); `size`: the image's
   * displayed width and height, when known (saves reading its header again)
   */
  classifyMany(items: readonly ({ image: ImageInput; size?: [number, number] } & RoiPlacement)[], options?: { topK?: number; batchSize?: number; concurrency?: number }): Promise<Classification[]>;
  close(): Promise<void>;
}

/** Runs a batch of preprocessed images [n, 3, H, W] to logits [n, classes]. */
type Runner = (pixels: Float32Array, n: number) => Promise<Float32Array>;

/** Opens a model file: `.onnx` (penny-train's fp32 or int8 export) or `.pt` (a penny-train checkpoint). */
export async function loadModel(file: string, options: { threads?: number } = {}): Promise<LoadedModel> {
  if (!fs.existsSync(file)) throw new UsageError(`model not found: ${file}`);
  if (file.endsWith('.pt')) return fromCheckpoint(file, options.threads);
  if (file.endsWith('.onnx')) return fromOnnx(file, options.threads);
  throw new UsageError(`${file}: a model is an .onnx file (penny-train's export) or a .pt checkpoint`);
}

async function fromOnnx(file: string, threads?: number): Promise<LoadedModel> {
  let meta: Record<string, string>;
  try {
    meta = metadataOf(readModel(file));
  } catch (e) {
    throw new UsageError(`${file} is not a readable ONNX model: ${(e as Error).message}`);
  }
  const field = <T>(key: string, check: (v: unknown) => v is T, what: string): T => {
    let v: unknown;
    try {
      v = key === 'model_type' ? meta[key] : meta[key] === undefined ? undefined : JSON.parse(meta[key]);
    } catch {
      v = undefined;
    }
    if (!check(v)) {
      throw new UsageError(`${file}: its metadata has no valid '${key}' (${what}); ` +
        `models exported before penny-train 0.1.0 lack it: export the checkpoint again (penny-train export --checkpoint ...)`);
    }
    return v;
  };
  const modelType = field('model_type', isModelKey, `one of ${MODEL_KEYS.join(', ')}`);
  const labels = labelsOf(field('label_map', isLabelMap, 'a dict of class index to name'));
  const recipe = field('preprocess', isRecipe, 'the preprocessing recipe');
  if (recipe.resample !== RESAMPLE) {
    process.emitWarning(`${file} learned from pixels resampled as '${recipe.resample}'; this penny-train resamples as '${RESAMPLE}': ` +
      'the model sees slightly other pixels than it was trained on (train it again to match)', 'PennyTrainWarning');
  }
  const roiLocator = meta.roi_locator ? field('roi_locator', isTemplate, 'an ROI template') : undefined;
  // no spinning: four models' sessions and the image decoding share the cores (measured: ~25% less CPU per image)
  const session = await createSession(file, { threads, spin: false }).catch((e: Error) => { throw new UsageError(e.message); });
  const run: Runner = (pixels, n) => runOnnx(session, pixels, [n, 3, ...recipe.size]);
  return model(file, 'onnx', modelType, labels, recipe, roiLocator, run, () => (session as ort.InferenceSession).release(), meta.quantization);
}

async function fromCheckpoint(file: string, threads?: number): Promise<LoadedModel> {
  const ckpt = await loadCheckpoint(file);
  const cfg = ckpt.config;
  const labels = labelsOf(ckpt.labelMap);
  let net: PennyModel;
  try {
    net = await createModel({
      backbone: cfg.backbone, numClasses: ckpt.numClasses, backend: cfg.backend, imageSize: cfg.img_size, head: headOf(cfg), device: 'cpu', threads,
    });
    net.setParams(ckpt.params);
  } catch (e) {
    throw new UsageError(`${file}: its weights do not fit a ${cfg.backbone} ${cfg.model_type} model: ${(e as Error).message}`);
  }
  const run: Runner = async (pixels, n) => Float32Array.from(await net.predict(pixels, [n, 3, ...cfg.img_size]));
  return model(file, 'checkpoint', cfg.model_type, labels, preprocessRecipe(cfg, ckpt.roiAspect ?? undefined), ckpt.roiLocator ?? undefined,
    run, async () => net.dispose());
}

function model(file: string, format: LoadedModel['format'], modelType: ModelKey, labels: string[], recipe: PreprocessRecipe,
  roiLocator: RoiTemplate | undefined, run: Runner, close: () => Promise<void> | void, quantization?: string): LoadedModel {
  const inputSize = 3 * recipe.size[0] * recipe.size[1];
  const self: LoadedModel = {
    file, format, modelType, labels, recipe, ...(roiLocator && { roiLocator }), ...(quantization && { quantization }),
    async classify(image, options = {}) {
      const [one] = await self.classifyMany([{ image, roi: options.roi, angle: options.angle }], { topK: options.topK });
      return one;
    },
    async classifyMany(items, options = {}) {
      const batchSize = options.batchSize ?? 16, topK = Math.min(options.topK ?? 5, labels.length);
      // the next batch is decoded while this one runs (onnxruntime and LibTorch compute off the main thread)
      const prepare = (start: number) => {
        const batch = items.slice(start, start + batchSize);
        const pixels = new Float32Array(batch.length * inputSize);
        const ready = mapLimit(batch, options.concurrency ?? 4, async (it, j) => {
          await preprocess(it.image, recipe, it, pixels, j * inputSize, it.size ?? await displayedSize(it.image));
        }).then(() => ({ n: batch.length, pixels }));
        ready.catch(() => {});   // awaited below; a failure is thrown there, not reported as unhandled meanwhile
        return ready;
      };
      const out: Classification[] = [];
      let next = items.length ? prepare(0) : null;
      for (let i = 0; next; i += batchSize) {
        const { n, pixels } = await next;
        next = i + batchSize < items.length ? prepare(i + batchSize) : null;
        const logits = await run(pixels, n);
        for (let j = 0; j < n; j++) out.push(classification(logits.subarray(j * labels.length, (j + 1) * labels.length), labels, topK, modelType));
      }
      return out;
    },
    async close() {
      await close();
    },
  };
  return self;
}

/** Softmax over one row of logits; the top k. Orientation's answer carries its angle. */
export function classification(logits: Float32Array, labels: string[], k: number, modelType: ModelKey): Classification {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  const ranked = e.map((v, i) => ({ i, p: v / sum })).sort((a, b) => b.p - a.p).slice(0, k);
  const topK = ranked.map(({ i, p }) => ({ label: labels[i], probability: p }));
  return { ...topK[0], topK, ...(modelType === 'orientation' && { angle: orientationBinCentre(ranked[0].i) }) };
}

const isModelKey = (v: unknown): v is ModelKey => typeof v === 'string' && (MODEL_KEYS as readonly string[]).includes(v);
const isLabelMap = (v: unknown): v is Record<string, string> =>
  typeof v === 'object' && v !== null && Object.entries(v).length > 0 && Object.entries(v).every(([k, n]) => /^\d+$/.test(k) && typeof n === 'string');
const isRecipe = (v: unknown): v is PreprocessRecipe => {
  const r = v as PreprocessRecipe;
  return typeof v === 'object' && v !== null && Array.isArray(r.size) && r.size.length === 2 && r.size.every((d) => Number.isInteger(d) && d > 0) &&
    [r.mean, r.std].every((a) => Array.isArray(a) && a.length === 3 && a.every(Number.isFinite)) && ['cover', 'letterbox', 'stretch'].includes(r.fit) &&
    ['image', 'date_roi', 'mint_mark_roi'].includes(r.region) && typeof r.alignRoi === 'boolean';
};
const isTemplate = (v: unknown): v is RoiTemplate => {
  const t = v as RoiTemplate;
  return typeof v === 'object' && v !== null && [t.u, t.v, t.width, t.height].every(Number.isFinite) && t.width > 0 && t.height > 0;
};

/** A label map as a dense list, index -> name. */
function labelsOf(map: Record<string, string>): string[] {
  const labels = Object.keys(map).map(Number).sort((a, b) => a - b);
  if (labels.some((k, i) => k !== i)) throw new UsageError(`label map keys must be 0..${labels.length - 1}`);
  return labels.map((k) => map[String(k)]);
}
