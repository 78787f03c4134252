// After training (or from a checkpoint): the fp32 ONNX with its parity check against the native model, the IMX500
// pass and report, and the INT8 model with its evaluation against fp32 — one code path for `train` and `export`.
import fs from 'node:fs';
import path from 'node:path';
import type { ModelKey, TrainingConfig } from '../config/config.js';
import type { DatasetIndex } from '../data/dataset.js';
import { imageSpec, preprocessRecipe, type ImageCache } from '../data/images.js';
import { allBatches, evalOptions, type Batch } from '../data/loader.js';
import { throwIfAborted, UsageError } from '../errors.js';
import { PACKAGE_VERSION } from '../version.js';
import type { PennyModel } from '../model/model.js';
import type { RunLog } from '../train/log.js';
import { argmaxRows, Tally, type Metrics } from '../train/metrics.js';
import { imx500Report, makeImx500Compatible, peakActivationBytes, type Imx500Report } from './imx500.js';
import { MIN_CALIBRATION_SAMPLES, quantizeInt8 } from './int8.js';
import { modelToOnnx, pennyMetadata, writeOnnxAtomic } from './onnx.js';
import { encodeModel, withMetadata, type ModelProto } from './onnx-proto.js';
import { createSession, onnxParity, runOnnx, top1Agreement } from './parity.js';

/** Above this max |onnxruntime - native| on a validation batch the export is an error. */
export const PARITY_LIMIT = 1e-3;
const PARITY_IMAGES = 8;

export interface ExportContext {
  model: PennyModel;
  cfg: TrainingConfig;
  index: DatasetIndex;
  labelMap: Record<string, string>;
  stamp: string;
  pretrained: string | null;
  log: RunLog;
  /** the run's decoded images (train() passes its own); without one, export decodes what it reads */
  cache?: ImageCache;
  /** checked between the stages: an abort stops the export with an InterruptedError naming `saved` */
  signal?: AbortSignal;
  /** the checkpoint that holds the exported weights (an interrupted export can be redone from it) */
  saved?: string;
  /** what the index's splits hold, for the log: train (calibration) and val (parity); default 'train images', 'val images' */
  sources?: { train: string; val: string };
}

/** The figures of one model on the test split: acc, macro-F1 and the task's own (orientation's angle MAE, +-1). */
export type TestFigures = Omit<Metrics, 'loss'>;

/** INT8 against fp32 on the test split. */
export interface Int8Comparison {
  images: number;
  fp32: TestFigures;
  int8: TestFigures;
  top1Agreement: number;
}

export interface ExportResult {
  fp32: string;
  int8?: string;
  /** absent when there were no images to check parity on (an export without its data) */
  parityMaxAbsDiff?: number;
  /** imx500_compatible: the project's own fit report (ops, parameters, int8 memory) at batch 1 */
  imx500?: Omit<Imx500Report, 'text'>;
  int8VsFp32?: Int8Comparison;
}

export async function exportModels(ctx: ExportContext): Promise<ExportResult> {
  const { model, cfg, index, labelMap, stamp, log, cache } = ctx;
  const stopIfAborted = () => throwIfAborted(ctx.signal, ctx.saved);
  const key = cfg.model_type;
  const spec = imageSpec(cfg);
  const calibrationCount = Math.min(cfg.calibration_samples, index.train.length);
  // Checked before the fp32 file is written, so a run that cannot quantize leaves nothing half-done.
  if (cfg.quantize && cfg.quantize_mode === 'static' && calibrationCount < MIN_CALIBRATION_SAMPLES) {
    throw new UsageError(`static INT8 needs at least ${MIN_CALIBRATION_SAMPLES} calibration images; the ${key} train split has ${index.train.length} ` +
      `(calibration_samples: ${cfg.calibration_samples}). Add images, or set quantize_mode: dynamic`);
  }
  const metadata = pennyMetadata({
    labelMap, modelType: key, backbone: cfg.backbone, imgSize: cfg.img_size, mean: cfg.mean, std: cfg.std,
    pretrained: ctx.pretrained ?? 'none (random init)',
    extra: { preprocess: JSON.stringify(preprocessRecipe(cfg, index.roiAspect)), ...(index.roiLocator && { roi_locator: JSON.stringify(index.roiLocator) }) },
  });
  let fp32 = modelToOnnx(model, { metadata, producerVersion: PACKAGE_VERSION });
  let imx500: ExportResult['imx500'];
  if (cfg.imx500_compatible) {
    fp32 = makeImx500Compatible(fp32, { batch: 'dynamic' });
    // The file keeps its dynamic batch; the sensor runs batch 1, where the batch-size plumbing folds away.
    const { text, ...report } = imx500Report(makeImx500Compatible(fp32, { batch: 1 }), peakActivationBytes(model.graph));
    for (const line of text.split('\n')) log.info(line);
    imx500 = report;
  }

  // Parity on real images: onnxruntime against the native model.
  const sources = ctx.sources ?? { train: 'train images', val: 'val images' };
  const maxAbsDiff = await checkParity(ctx, fp32, sources.val);
  stopIfAborted();
  if (maxAbsDiff !== undefined) fp32 = withMetadata(fp32, { parity_max_abs_diff: String(maxAbsDiff), parity_images: String(Math.min(PARITY_IMAGES, index.val.length)) });

  const dir = cfg.output_dir;
  fs.mkdirSync(dir, { recursive: true });
  const fp32File = path.join(dir, `${key}_${stamp}_fp32.onnx`);
  const fp32Bytes = encodeModel(fp32);
  writeOnnxAtomic(fp32File, fp32Bytes);
  log.info(`Exported: ${fp32File}`);
  if (!cfg.quantize) return { fp32: fp32File, parityMaxAbsDiff: maxAbsDiff, imx500 };

  const calibration = cfg.quantize_mode === 'static'
    ? (await allBatches(index.train.slice(0, calibrationCount), evalOptions({ batchSize: 8, spec, workers: cfg.num_workers, cache }))).map((b) => ({ data: b.pixels, shape: b.shape }))
    : undefined;
  stopIfAborted();
  const { model: q } = await quantizeInt8(fp32, { mode: cfg.quantize_mode, method: cfg.calibration_method, calibration });
  const int8 = withMetadata(q, {
    quantization: cfg.quantize_mode === 'static'
      ? `static QDQ, ${cfg.calibration_method} on ${calibrationCount} ${sources.train}` : 'dynamic',
  });
  const int8File = path.join(dir, `${key}_${stamp}_int8.onnx`);
  const int8Bytes = encodeModel(int8);
  stopIfAborted();
  writeOnnxAtomic(int8File, int8Bytes);
  log.info(`Exported: ${int8File}`);
  const int8VsFp32 = await compare(fp32Bytes, int8Bytes, await allBatches(index.test, evalOptions({ batchSize: 8, spec, workers: cfg.num_workers, cache })), cfg, model.numClasses, log);
  return { fp32: fp32File, int8: int8File, parityMaxAbsDiff: maxAbsDiff, int8VsFp32, imx500 };
}

/** max |onnxruntime - native| on up to PARITY_IMAGES val images (an error above PARITY_LIMIT); none: a warning. */
async function checkParity(ctx: ExportContext, fp32: ModelProto, what: string): Promise<number | undefined> {
  const { model, index, log, cache } = ctx;
  if (!index.val.length) {
    log.warn(`ONNX parity: no images to check it on (the training data is absent; --calibration DIR gives some): not checked`);
    return undefined;
  }
  const [val] = await allBatches(index.val.slice(0, PARITY_IMAGES), evalOptions({ batchSize: PARITY_IMAGES, spec: imageSpec(ctx.cfg), workers: 1, cache }));
  const { maxAbsDiff } = await onnxParity(fp32, val.pixels, val.shape, await model.predict(val.pixels, val.shape));
  log.info(`ONNX parity (onnxruntime vs native, ${val.labels.length} ${what}): max |diff| ${maxAbsDiff.toExponential(2)}`);
  if (!(maxAbsDiff <= PARITY_LIMIT)) {
    throw new Error(`ONNX export of ${ctx.cfg.model_type} failed its parity check: max |onnxruntime - native| = ${maxAbsDiff} > ${PARITY_LIMIT}; no file written`);
  }
  return maxAbsDiff;
}

/**
 * fp32 against int8 on the test split: accuracy, macro-F1 and the task's figures (an orientation model's top-1 flips
 * between neighbouring bins at near ties, so its angle error says more than agreement does), top-1 agreement, size
 * and onnxruntime speed.
 */
async function compare(fp32: Uint8Array, int8: Uint8Array, test: Batch[], cfg: TrainingConfig, classes: number, log: RunLog): Promise<Int8Comparison | undefined> {
  if (!test.length) {
    log.info('INT8 vs fp32: no labelled test images, nothing to compare');
    return undefined;
  }
  const results = [];
  for (const bytes of [fp32, int8]) {
    const session = await createSession(bytes);
    const logits: number[] = [];
    let seconds = 0;
    for (const b of test) {
      const t = performance.now();
      logits.push(...await runOnnx(session, b.pixels, b.shape));
      seconds += (performance.now() - t) / 1000;
    }
    const images = logits.length / classes;
    results.push({ logits, figures: testFigures(Float32Array.from(logits), test, classes, cfg.model_type), images, imgPerSec: images / seconds, mb: bytes.length / 2 ** 20 });
  }
  const [f, q] = results;
  const agreement = top1Agreement(q.logits, f.logits, classes);
  log.info(`INT8 vs fp32 on ${f.images} test images: ${versusText(q.figures, f.figures, agreement)}, ` +
    `size ${q.mb.toFixed(1)} MB vs ${f.mb.toFixed(1)} MB (${(q.mb / f.mb).toFixed(3)}x), ` +
    `onnxruntime ${q.imgPerSec.toFixed(1)} vs ${f.imgPerSec.toFixed(1)} img/s`);
  return { images: f.images, fp32: f.figures, int8: q.figures, top1Agreement: agreement };
}

/** acc, macro-F1 and the task's figures of `logits` [images, classes], in the order of the `batches` they were computed on */
export function testFigures(logits: Float32Array, batches: readonly Batch[], classes: number, task: ModelKey): TestFigures {
  const tally = new Tally(task);
  let at = 0;
  for (const b of batches) {
    const n = b.labels.length;
    tally.add(0, b.labels, argmaxRows(logits.subarray(at * classes, (at + n) * classes), n, classes), b.angles);
    at += n;
  }
  const { loss: _, ...figures } = tally.metrics();
  return figures;
}

/** `acc Q vs F, F1 (Macro) Q vs F, [Angle MAE .., Acc +-1 ..,] top-1 agreement A`: a quantized model `q` against fp32 `f` */
export function versusText(q: TestFigures, f: TestFigures, agreement: number): string {
  const pair = (name: string, a: number | undefined, b: number | undefined, digits: number, unit = '') =>
    a === undefined || b === undefined ? '' : `${name} ${a.toFixed(digits)} vs ${b.toFixed(digits)}${unit}, `;
  return `acc ${q.acc.toFixed(4)} vs ${f.acc.toFixed(4)}, F1 (Macro) ${q.f1Macro.toFixed(4)} vs ${f.f1Macro.toFixed(4)}, ` +
    pair('Angle MAE', q.angleMae, f.angleMae, 2, ' deg') + pair('Acc +-1', q.accWithin1, f.accWithin1, 4) + `top-1 agreement ${agreement.toFixed(4)}`;
}

export type { ModelProto };
