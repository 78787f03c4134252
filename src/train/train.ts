// train(modelKey, options): the whole run of the original trainer — config, data, model, AdamW with warmup + cosine,
// per-epoch validation, best/last checkpoints, test on the best weights, label map, log, ONNX export.
import fs from 'node:fs';
import path from 'node:path';
import { nativeInfo } from '../backend/native.js';
import { DEFAULT_CONFIG_FILE, loadConfig, validateSection, type ModelKey, type TrainingConfig } from '../config/config.js';
import { buildIndex, type DatasetIndex } from '../data/dataset.js';
import { ImageCache, type ImageSpec } from '../data/images.js';
import { labelMap as labelMapOf } from '../data/labels.js';
import { batchCount, batches } from '../data/loader.js';
import { InterruptedError, UsageError } from '../errors.js';
import { exportModels, type ExportResult } from '../export/deploy.js';
import { getBackbone } from '../model/backbones.js';
import { createModel, type PennyModel } from '../model/model.js';
import { loadCheckpoint, saveCheckpoint, type Checkpoint, type RunPosition } from './checkpoint.js';
import { evaluate } from './evaluate.js';
import { RunLog, timestamp } from './log.js';
import { argmaxRows, Tally } from './metrics.js';
import { resolvePretrained } from './pretrained.js';
import { lrAt, type Schedule } from './schedule.js';

export interface TrainOptions {
  epochs?: number;
  batchSize?: number;
  device?: string;
  configFile?: string;
  /** a _last.pt / _best.pt to continue from */
  resume?: string;
  /** forces data_root to data_examples/ */
  dataExamples?: boolean;
  backend?: 'native' | 'js';
  threads?: number;
  /** stops the run after the current step; _last.pt is written and an InterruptedError thrown */
  signal?: AbortSignal;
  onEpoch?: (e: EpochReport) => void | Promise<void>;
  /** no console output (the log file is still written) */
  quiet?: boolean;
}

export interface EpochReport {
  epoch: number;
  epochs: number;
  trainLoss: number;
  trainAcc: number;
  valLoss: number;
  valAcc: number;
  valF1: number;
  lr: number;
  seconds: number;
  best: boolean;
}

export interface Metrics {
  loss: number;
  acc: number;
  f1Macro: number;
}

export interface TrainResult {
  bestValF1: number;
  test: Metrics;
  checkpoints: { last: string; best: string };
  onnx: { fp32?: string; int8?: string };
  labelMap: Record<string, string>;
  log: string;
}

/** The config with the caller's overrides applied and checked like the file itself. */
export function resolveConfig(modelKey: string, o: TrainOptions): TrainingConfig & { configFile: string } {
  const configFile = o.configFile ?? DEFAULT_CONFIG_FILE;
  const cfg = { ...loadConfig(modelKey, configFile) };
  const overrides: [string, keyof TrainingConfig, unknown][] = [
    ['--epochs', 'num_epochs', o.epochs], ['--batch_size', 'batch_size', o.batchSize], ['--device', 'device', o.device],
    ['--backend', 'backend', o.backend], ['--threads', 'threads', o.threads],
  ];
  for (const [flag, key, value] of overrides) {
    if (value === undefined) continue;
    try {
      validateSection({ ...cfg, [key]: value }, modelKey, configFile);
    } catch {
      throw new UsageError(`${flag} ${JSON.stringify(value)}: not a valid ${key}`);
    }
    (cfg as Record<string, unknown>)[key] = value;
  }
  if (o.dataExamples) cfg.data_root = 'data_examples/';
  if (cfg.qat) {
    throw new UsageError(`${configFile}: ${modelKey}.qat is true, but quantization-aware training is not available yet; ` +
      'set qat: false (post-training quantization runs when quantize: true)');
  }
  return { ...cfg, configFile };
}

/** The config's model on its device (default: cuda when the native build sees one, else cpu). */
function modelFor(cfg: TrainingConfig, numClasses: number, weights?: string): Promise<PennyModel> {
  return createModel({
    backbone: cfg.backbone, numClasses, weights, backend: cfg.backend, seed: cfg.seed, imageSize: cfg.img_size[0],
    device: cfg.device ?? (cfg.backend === 'native' && nativeInfo().cudaAvailable ? 'cuda' : 'cpu'),
    threads: cfg.threads ?? undefined,
    optimizer: { beta1: cfg.optimizer_betas[0], beta2: cfg.optimizer_betas[1], weightDecay: cfg.weight_decay },
  });
}

export async function train(modelKey: ModelKey | string, options: TrainOptions = {}): Promise<TrainResult> {
  const cfg = resolveConfig(modelKey, options);
  const key = cfg.model_type;
  const labelMap = labelMapOf(key);
  const numClasses = Object.keys(labelMap).length;
  // Everything the user can get wrong is checked before the first output file is created.
  const index = await buildIndex(cfg);
  const resume = options.resume ? await loadCheckpoint(options.resume) : null;
  if (resume) checkFits(resume, cfg, numClasses, options.resume!);

  const stamp = timestamp();
  const log = new RunLog(path.join('output', 'training_logs', `${key}_${stamp}.log`), options.quiet);
  log.info(`Loaded PennyDataset: ${index.train.length} train / ${index.val.length} val / ${index.test.length} test`);
  const pretrained = resume ? { weights: resume.pretrained } : await resolvePretrained(cfg.backbone, cfg.pretrained_weights);
  if (!resume && !pretrained.weights) {
    log.warn(`WARNING: no pretrained weights for ${cfg.backbone} (${'reason' in pretrained ? pretrained.reason : ''}). ` +
      'Training starts from RANDOM initialisation: expect far lower accuracy than from coin-clip. ' +
      'This is recorded in the checkpoints and the ONNX metadata (pretrained: none).');
  } else if (!resume) {
    log.info(`Pretrained weights: ${pretrained.weights}`);
  }
  const model = await modelFor(cfg, numClasses, resume ? undefined : pretrained.weights ?? undefined);
  try {
    const projection = getBackbone(cfg.backbone).config.projection;
    log.info(`Model head: Linear(in_features=${projection}, out_features=${numClasses})`);
    if (resume) {
      model.setState({ params: resume.params, optimizer: resume.optimizer });
      log.info(`Resumed from ${options.resume}: epoch ${resume.position.epoch}${resume.position.batch ? `, batch ${resume.position.batch}` : ''}, best val F1 ${resume.bestValF1.toFixed(4)}`);
    }
    return await run(model, cfg, index, log, labelMap, stamp, resume, pretrained.weights ?? null, options);
  } finally {
    model.dispose();
  }
}

/** A checkpoint fits the config when backbone, class count and image size agree. */
function checkFits(c: Checkpoint, cfg: TrainingConfig, numClasses: number, file: string) {
  if (c.backbone !== cfg.backbone) throw new UsageError(`${file} holds a ${c.backbone} model, but the config asks for ${cfg.backbone}`);
  if (c.numClasses !== numClasses) throw new UsageError(`${file} has ${c.numClasses} classes, but the ${cfg.model_type} model has ${numClasses}`);
  if (c.config?.img_size?.[0] !== cfg.img_size[0]) throw new UsageError(`${file} was trained at ${c.config?.img_size?.[0]} px, the config asks for ${cfg.img_size[0]} px`);
}

async function run(model: PennyModel, cfg: TrainingConfig, index: DatasetIndex, log: RunLog, labelMap: Record<string, string>,
  stamp: string, resume: Checkpoint | null, pretrained: string | null, options: TrainOptions): Promise<TrainResult> {
  const key = cfg.model_type;
  const spec: ImageSpec = { size: cfg.img_size[0], mean: cfg.mean, std: cfg.std };
  const stepsPerEpoch = batchCount(index.train.length, cfg.batch_size);
  const schedule: Schedule = {
    baseLr: cfg.lr, etaMin: cfg.lr_scheduler_eta_min,
    warmupSteps: cfg.lr_warmup_epochs * stepsPerEpoch, totalSteps: cfg.num_epochs * stepsPerEpoch,
  };
  const cache = new ImageCache(cfg.image_cache_mb);   // every image the run reads, export included, decoded once
  const ckptDir = path.join('output', 'checkpoints');
  const last = path.join(ckptDir, `${key}_last.pt`);
  const best = path.join(ckptDir, `${key}_best.pt`);
  let bestValF1 = resume?.bestValF1 ?? -1;
  let pos: RunPosition = resume?.position ?? { epoch: 0, batch: 0, step: 0 };
  const save = (file: string, at: RunPosition, progress: unknown = null) => saveCheckpoint(file, model, {
    position: at, schedule, bestValF1, config: cfg, labelMap, backbone: cfg.backbone, numClasses: model.numClasses,
    pretrained, seed: cfg.seed, progress,
  });

  for (let epoch = pos.epoch; epoch < cfg.num_epochs; epoch++) {
    const started = performance.now();
    const tally = pos.batch && resume?.progress ? Tally.from(resume.progress as Parameters<typeof Tally.from>[0]) : new Tally();
    let lr = lrAt(pos.step, schedule);
    const pos0 = pos.batch;   // batches done before this process (a resumed epoch)
    let seen = 0;
    for await (const b of batches(index.train, {
      batchSize: cfg.batch_size, spec, augment: cfg.augment, seed: cfg.seed, epoch, workers: cfg.num_workers, startBatch: pos.batch, cache,
    })) {
      if (options.signal?.aborted) {
        log.clearBar();
        await save(last, pos, tally.toJSON());
        throw new InterruptedError(last);
      }
      lr = lrAt(pos.step, schedule);
      const r = await model.trainStep(b.pixels, b.shape, b.labels, { lr });
      tally.add(r.loss, b.labels, argmaxRows(r.logits, b.labels.length, model.numClasses));
      pos = { epoch, batch: pos.batch + 1, step: pos.step + 1 };
      seen += b.labels.length;
      const elapsed = (performance.now() - started) / 1000;
      log.progress(`Epoch ${epoch + 1}/${cfg.num_epochs}`, pos.batch - pos0, stepsPerEpoch - pos0, seen / elapsed, elapsed);
    }
    log.clearBar();
    const val = await evaluate(model, index.val, { batchSize: cfg.batch_size, spec, workers: cfg.num_workers, cache });
    const seconds = (performance.now() - started) / 1000;
    log.info(`Epoch ${epoch + 1}/${cfg.num_epochs} Summary: Train Loss: ${tally.loss.toFixed(4)}, Val Loss: ${val.loss.toFixed(4)}, ` +
      `Val Acc: ${val.acc.toFixed(4)}, Val F1 (Macro): ${val.f1Macro.toFixed(4)}, Duration: ${seconds.toFixed(1)}s`);
    pos = { epoch: epoch + 1, batch: 0, step: pos.step };
    const isBest = val.f1Macro > bestValF1;
    if (isBest) {
      bestValF1 = val.f1Macro;
      await save(best, pos);
    }
    await save(last, pos);
    await options.onEpoch?.({
      epoch: epoch + 1, epochs: cfg.num_epochs, trainLoss: tally.loss, trainAcc: tally.acc, valLoss: val.loss,
      valAcc: val.acc, valF1: val.f1Macro, lr, seconds, best: isBest,
    });
  }

  // Test on the best weights.
  if (fs.existsSync(best)) model.setParams((await loadCheckpoint(best)).params);
  const test = await evaluate(model, index.test, { batchSize: cfg.batch_size, spec, workers: cfg.num_workers, cache });
  log.info(`Test (best weights): Loss: ${test.loss.toFixed(4)}, Acc: ${test.acc.toFixed(4)}, F1 (Macro): ${test.f1Macro.toFixed(4)} on ${test.count} images`);

  const labelFile = path.join('output', 'label_maps', `${key}_label_map.json`);
  fs.mkdirSync(path.dirname(labelFile), { recursive: true });
  fs.writeFileSync(labelFile, JSON.stringify(labelMap, null, 2) + '\n');

  const onnx = await exportModels({ model, cfg, index, labelMap, stamp, pretrained, log, cache });
  return {
    bestValF1,
    test: { loss: test.loss, acc: test.acc, f1Macro: test.f1Macro },
    checkpoints: { last, best },
    onnx: { fp32: onnx.fp32, int8: onnx.int8 },
    labelMap,
    log: log.file,
  };
}

/**
 * Re-exports a checkpoint without training (`penny-train export --checkpoint`): the config names the data used for
 * the parity check, calibration and the INT8 comparison; the checkpoint must fit it.
 */
export async function exportCheckpoint(checkpoint: string, options: Omit<TrainOptions, 'resume' | 'epochs' | 'signal' | 'onEpoch'> = {}): Promise<ExportResult> {
  const ckpt = await loadCheckpoint(checkpoint);
  const cfg = resolveConfig(ckpt.config?.model_type ?? '', options);
  const labelMap = labelMapOf(cfg.model_type);
  checkFits(ckpt, cfg, Object.keys(labelMap).length, checkpoint);
  const index = await buildIndex(cfg);
  const stamp = timestamp();
  const log = new RunLog(path.join('output', 'training_logs', `${cfg.model_type}_${stamp}.log`), options.quiet);
  log.info(`Exporting ${checkpoint} (epoch ${ckpt.position.epoch}, best val F1 ${ckpt.bestValF1.toFixed(4)})`);
  const model = await modelFor(cfg, ckpt.numClasses);
  try {
    model.setParams(ckpt.params);
    return await exportModels({ model, cfg, index, labelMap, stamp, pretrained: ckpt.pretrained, log });
  } finally {
    model.dispose();
  }
}
