// train(modelKey, options): the whole run of the original trainer — config, data, model, AdamW with warmup + cosine,
// per-epoch validation, best/last checkpoints, test on the best weights, label map, log, ONNX export.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { checkBackendDevice, checkPrecision } from '../backend/index.js';
import { nativeInfo } from '../backend/native.js';
import type { Precision } from '../backend/types.js';
import { applySettings, DEFAULT_CONFIG_FILE, loadConfig, validateSection, type ModelKey, type TrainingConfig } from '../config/config.js';
import { buildIndex, type DatasetIndex, type Sample } from '../data/dataset.js';
import { listImages, unlabelledSamples } from '../data/image-files.js';
import { ImageCache, imageSpec } from '../data/images.js';
import { FIRST_YEAR, LAST_YEAR, labelMap as labelMapOf } from '../data/labels.js';
import { allBatches, batchCount, batches, evalOptions } from '../data/loader.js';
import { InterruptedError, throwIfAborted, UsageError } from '../errors.js';
import { exportModels, testFigures, versusText, type ExportResult, type Int8Comparison } from '../export/deploy.js';
import { convertForImx500, imx500Python, imx500Status, type Imx500Conversion } from '../export/imx500-toolchain.js';
import { MIN_CALIBRATION_SAMPLES } from '../export/int8.js';
import { top1Agreement } from '../export/parity.js';
import { buildBackbone, getBackbone } from '../model/backbones.js';
import { parameterCount, type Graph, type HeadSpec } from '../model/graph.js';
import { createModel, type PennyModel } from '../model/model.js';
import { learnRoiLocator, type RoiTemplate } from '../predict/locate.js';
import { RunRecord } from '../report/record.js';
import { PACKAGE_VERSION } from '../version.js';
import { checkParamsFit, loadCheckpoint, runIdOf, saveCheckpoint, type Checkpoint, type RunPosition } from './checkpoint.js';
import { evaluate } from './evaluate.js';
import { WorstMistakes, type Mistake } from './mistakes.js';
import { clock, RunLog, timestamp } from './log.js';
import { argmaxRows, metricsText, taskMetricsText, Tally, type Metrics } from './metrics.js';
import { resolvePretrained } from './pretrained.js';
import { lrAt, type Schedule } from './schedule.js';
import { softTargets } from './targets.js';
import { checkTrainingMemory } from './resources.js';
import { checkDistributable, published, RankGroup, rankInfo, resultOf, worldOf, type DistributedOptions } from './distributed.js';
import { launchRanks } from './launch.js';
import { checkWritable, cleanStaleTemps, writeFileAtomicSync } from '../util/atomic.js';

export type { Metrics } from './metrics.js';

export interface TrainOptions {
  epochs?: number;
  batchSize?: number;
  device?: string;
  configFile?: string;
  /** any config key, dotted for nested ones (`{ lr: 2e-3, 'augment.blur_p': 0 }`), over the file's section */
  set?: Record<string, unknown>;
  /** a _last.pt / _best.pt to continue from */
  resume?: string;
  /** forces data_root to data_examples/ */
  dataExamples?: boolean;
  backend?: 'native' | 'js';
  threads?: number;
  /** the config's precision: fp32, bf16 or fp16 (autocast; native backend) */
  precision?: Precision;
  /**
   * stops the run after the current step; _last.pt is written and an InterruptedError thrown (its exitCode 143 when
   * the signal's reason is 'SIGTERM', else 130)
   */
  signal?: AbortSignal;
  onEpoch?: (e: EpochReport) => void | Promise<void>;
  /** no console output (the log file is still written) */
  quiet?: boolean;
  /** a fresh run replaces an earlier run's _last.pt / _best.pt instead of keeping them under their run id */
  overwrite?: boolean;
  /**
   * Data-parallel training over several processes (src/train/distributed.ts): `{ nproc: 2 }` launches 2 ranks on this
   * machine and resolves with the run's result; with `rank` and `worldSize` (or torchrun's environment, in the CLI)
   * this process is that one rank of a run, and every rank resolves with rank 0's result.
   */
  distributed?: DistributedOptions & { rank?: number; worldSize?: number; localRank?: number };
}

export interface EpochReport {
  epoch: number;
  epochs: number;
  trainLoss: number;
  trainAcc: number;
  valLoss: number;
  valAcc: number;
  valF1: number;
  /** orientation */
  valAngleMae?: number;
  /** orientation (+-1 bin) and date (+-1 year) */
  valAccWithin1?: number;
  lr: number;
  seconds: number;
  best: boolean;
}

export interface TrainResult {
  bestValF1: number;
  test: Metrics;
  checkpoints: { last: string; best: string };
  onnx: { fp32?: string; int8?: string };
  /** INT8 against fp32 on the test split (quantize: true) */
  int8VsFp32?: Int8Comparison;
  labelMap: Record<string, string>;
  log: string;
  /** the run record's folder: output/runs/<model>_<YYYYMMDD-HHMMSS>/ (config.yaml, metrics.csv, results.json, plots, report.html) */
  run: string;
}

/**
 * The config with the caller's overrides applied and checked like the file itself. `stored`: a checkpoint's config
 * (export) read instead of the config file.
 */
export function resolveConfig(modelKey: string, o: TrainOptions, stored?: { section: unknown; from: string }): TrainingConfig {
  const configFile = stored?.from ?? o.configFile ?? DEFAULT_CONFIG_FILE;
  const cfg = { ...(stored ? validateSection(o.set ? applySettings(stored.section as Record<string, unknown>, o.set) : stored.section, modelKey, stored.from)
    : loadConfig(modelKey, configFile, o.set)) };
  const overrides: [string, keyof TrainingConfig, unknown][] = [
    ['--epochs', 'num_epochs', o.epochs], ['--batch_size', 'batch_size', o.batchSize], ['--device', 'device', o.device],
    ['--backend', 'backend', o.backend], ['--threads', 'threads', o.threads], ['--precision', 'precision', o.precision],
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
  return cfg;
}

/** The classifier the config asks for: date's factorised year head, or one Linear. */
export function headOf(cfg: TrainingConfig): HeadSpec {
  return cfg.model_type === 'date' && cfg.date_head === 'factorised' ? { kind: 'year_digits', first: FIRST_YEAR, last: LAST_YEAR } : { kind: 'flat' };
}

/** `penny-train 0.1.0: side, cnn_small (612,421 parameters), cpu, native backend (2 threads), LibTorch 2.13.0` */
function bannerLine(cfg: TrainingConfig, parameters: number): string {
  const info = nativeInfo();
  const backend = cfg.backend === 'native' ? `native backend (${cfg.threads ?? info.numThreads} threads)` : 'js backend (1 thread)';
  return `penny-train ${PACKAGE_VERSION}: ${cfg.model_type}, ${cfg.backbone} (${parameters.toLocaleString('en-US')} parameters), ` +
    `${deviceOf(cfg)}, ${backend}, LibTorch ${info.torchVersion}`;
}

/** The console's description of the head (the original prints `Linear(in_features=512, out_features=5)`). */
function headText(cfg: TrainingConfig, projection: number, numClasses: number): string {
  const linear = (n: number) => `Linear(in_features=${projection}, out_features=${n})`;
  const head = headOf(cfg);
  if (head.kind === 'flat') return linear(numClasses);
  const decades = Math.floor(head.last / 10) - Math.floor(head.first / 10) + 1;
  return `${linear(decades)} decade + ${linear(10)} unit digit -> ${numClasses} year log-probabilities`;
}

/** A device the build cannot give is a usage error, found before any data is read. */
function checkDeviceOf(cfg: TrainingConfig): void {
  if (cfg.device) checkBackendDevice(cfg.backend, cfg.device);
}

const CHECKPOINT_DIR = path.join('output', 'checkpoints');
/** the folders an export writes to (a training run adds CHECKPOINT_DIR) */
const EXPORT_DIRS = (cfg: TrainingConfig) => [path.join('output', 'training_logs'), path.join('output', 'label_maps'), cfg.output_dir];

/** Every output folder writable before hours of training depend on it; temporaries of dead runs removed. */
function prepareOutputs(cfg: TrainingConfig): void {
  for (const dir of [CHECKPOINT_DIR, ...EXPORT_DIRS(cfg)]) {
    checkWritable(dir);
    cleanStaleTemps(dir);
  }
}

/**
 * A fresh run would write over the _last.pt / _best.pt an earlier run left (a day of ViT training under the same
 * name as a minute of cnn_small): they are kept, renamed <model>_<last|best>.<their run id>.pt (the file's time where
 * the id cannot be read), and the log says so; `overwrite` replaces them instead.
 */
async function keepEarlierRun(key: string, log: RunLog, overwrite: boolean): Promise<void> {
  for (const which of ['last', 'best']) {
    const file = path.join(CHECKPOINT_DIR, `${key}_${which}.pt`);
    if (!fs.existsSync(file)) continue;
    if (overwrite) {
      log.info(`--overwrite: ${file} of an earlier run will be replaced`);
      continue;
    }
    const id = (await runIdOf(file)) ?? `from-${timestamp(fs.statSync(file).mtime)}`;
    let kept = path.join(CHECKPOINT_DIR, `${key}_${which}.${id}.pt`);
    for (let n = 2; fs.existsSync(kept); n++) kept = path.join(CHECKPOINT_DIR, `${key}_${which}.${id}-${n}.pt`);
    fs.renameSync(file, kept);
    log.warn(`${file} is an earlier run's (${id}): kept as ${kept} (--overwrite replaces it instead)`);
  }
}

/** The config's device, or by default cuda when the native build sees one, else cpu. */
const deviceOf = (cfg: TrainingConfig) => cfg.device ?? (cfg.backend === 'native' && nativeInfo().cudaAvailable ? 'cuda' : 'cpu');

/** The config's model on its device; an export computes in fp32 whatever precision trained the weights. */
function modelFor(cfg: TrainingConfig, numClasses: number, weights?: string, precision: Precision = cfg.precision): Promise<PennyModel> {
  return createModel({
    backbone: cfg.backbone, numClasses, weights, backend: cfg.backend, seed: cfg.seed, imageSize: cfg.img_size, head: headOf(cfg),
    device: deviceOf(cfg),
    precision,
    threads: cfg.threads ?? undefined,
    optimizer: { beta1: cfg.optimizer_betas[0], beta2: cfg.optimizer_betas[1], weightDecay: cfg.weight_decay },
  });
}

export async function train(modelKey: ModelKey | string, options: TrainOptions = {}): Promise<TrainResult> {
  const began = performance.now();
  const cfg = resolveConfig(modelKey, options);
  const key = cfg.model_type;
  const labelMap = labelMapOf(key);
  const numClasses = Object.keys(labelMap).length;
  // Everything the user can get wrong is checked before the first output file is created.
  const dist = options.distributed;
  const rank = dist?.rank !== undefined ? rankInfo(dist) : undefined;
  if (dist && !rank) {
    const world = worldOf(dist);
    if (world.nproc * world.nnodes > 1) {
      checkDistributable(cfg, world.nproc * world.nnodes);
      return launchRanks(modelKey, options, world);
    }
  }
  if (rank && rank.worldSize > 1) checkDistributable(cfg, rank.worldSize);
  checkDeviceOf(cfg);
  checkPrecision(cfg.backend, deviceOf(cfg), cfg.precision);
  const graph = buildBackbone(cfg.backbone, numClasses, cfg.img_size, headOf(cfg));
  if ((cfg.device ?? 'cpu') === 'cpu') checkTrainingMemory(graph, cfg.batch_size, cfg.img_size);
  const resume = options.resume ? await loadCheckpoint(options.resume) : null;
  if (resume) {
    checkFits(resume, cfg, numClasses, options.resume!);
    checkParamsFit(options.resume!, resume.params, graph.params);
  }
  const index = await buildIndex(cfg);
  if (resume) checkPosition(resume, index, cfg, options.resume!);
  throwIfAborted(options.signal);
  // a distributed run: every rank joins before any writes, so that the others never start on a run rank 0 refused
  const group = rank && rank.worldSize > 1 ? await RankGroup.join(rank) : undefined;
  try {
    return await runAs({ cfg, graph, resume, index, began }, options, group);
  } finally {
    group?.close();
  }
}

/** What train() has checked and read before a run writes anything. */
interface Prepared {
  cfg: TrainingConfig;
  graph: Graph;
  resume: Checkpoint | null;
  index: DatasetIndex;
  /** performance.now() when train() was called */
  began: number;
}

/** The run of one process: all of it, or one rank's part of a distributed run (rank 0 writes every file). */
async function runAs({ cfg, graph, resume, index, began }: Prepared, options: TrainOptions, group?: RankGroup): Promise<TrainResult> {
  const key = cfg.model_type, labelMap = labelMapOf(key), numClasses = Object.keys(labelMap).length;
  const leader = !group || group.leader;
  if (leader) prepareOutputs(cfg);
  const stamp = timestamp();
  const log = leader ? new RunLog(path.join('output', 'training_logs', `${key}_${stamp}.log`), options.quiet) : RunLog.silent();
  log.info(bannerLine(cfg, parameterCount(graph)));
  if (group) log.info(`Distributed: ${group.size} ranks (rendezvous ${group.describe}), batch ${cfg.batch_size} split over them`);
  log.record(`versions: penny-train ${PACKAGE_VERSION}, node ${process.version}, LibTorch ${nativeInfo().torchVersion}\n` +
    `resolved config (${options.configFile ?? DEFAULT_CONFIG_FILE}${options.set ? ', --set' : ''}):\n${yaml.dump({ [key]: cfg }, { lineWidth: 120 }).trimEnd()}`);
  log.info(`Loaded PennyDataset: ${index.train.length} train / ${index.val.length} val / ${index.test.length} test`);
  log.info(`Plan: ${cfg.num_epochs} epochs of ${batchCount(index.train.length, cfg.batch_size)} steps (batch ${cfg.batch_size}), ` +
    `lr ${cfg.lr} (warmup ${cfg.lr_warmup_epochs} epoch${cfg.lr_warmup_epochs === 1 ? '' : 's'}, cosine to ${cfg.lr_scheduler_eta_min}), best by ${cfg.select_best_by}` +
    (cfg.precision === 'fp32' ? '' : `, precision ${cfg.precision} (autocast, fp32 weights)`));
  for (const w of index.warnings) log.warn(`data: ${w}`);
  if (!resume && leader) await keepEarlierRun(key, log, options.overwrite ?? false);
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
    log.info(`Model head: ${headText(cfg, projection, numClasses)}`);
    if (index.roiAspect !== undefined) log.info(`ROI: read upright (align_roi), aspect ${index.roiAspect.toFixed(3)} where its bounds do not give it (median of the train ROIs)`);
    await locateRois(cfg, index, log, resume?.roiLocator);
    if (resume) {
      model.setState({ params: resume.params, optimizer: resume.optimizer });
      log.info(`Resumed from ${options.resume}: epoch ${resume.position.epoch}${resume.position.batch ? `, batch ${resume.position.batch}` : ''}, best val F1 ${resume.bestValF1.toFixed(4)}`);
    }
    if (group) {
      const buckets = await group.share(model, { syncBn: cfg.sync_bn });
      const bn = model.graph.params.some((p) => p.name.endsWith('running_mean'))
        ? `; batch norm statistics ${cfg.sync_bn ? 'over every rank (sync_bn)' : "per rank (rank 0's running statistics are saved)"}` : '';
      log.info(`Distributed: rank 0's weights on every rank; gradients averaged in ${buckets} bucket${buckets === 1 ? '' : 's'} per step${bn}`);
    }
    const result = await run(model, cfg, index, log, labelMap, stamp, resume, pretrained.weights ?? null, options, group);
    log.info(`Total time: ${clock((performance.now() - began) / 1000)}`);
    return result;
  } catch (e) {
    log.record(e instanceof InterruptedError ? `stopped: ${e.message}` : `FATAL: ${(e as Error).stack ?? String(e)}`);
    throw e;
  } finally {
    model.dispose();
  }
}

/**
 * Date and mint: the ROI locator that prediction uses on photos without an ROI (src/predict/locate.ts), learned from
 * the train ROIs (or the checkpoint's), on the index for the checkpoints and the ONNX metadata.
 */
async function locateRois(cfg: TrainingConfig, index: DatasetIndex, log: RunLog, known?: RoiTemplate | null): Promise<void> {
  if (cfg.model_type !== 'date' && cfg.model_type !== 'mint') return;
  const field = cfg.model_type === 'date' ? 'date_roi' : 'mint_mark_roi';
  const learned = known ? { template: known, valIou: null } : await learnRoiLocator(index.train, index.val);
  if (!learned) {
    log.warn(`ROI locator: too few train samples with an angle to learn where the ${field} lies; prediction will need an ROI for every image`);
    return;
  }
  const t = learned.template;
  index.roiLocator = t;
  log.info(`ROI locator: ${field} centre (${t.u.toFixed(3)}, ${t.v.toFixed(3)}), ${t.width.toFixed(3)} x ${t.height.toFixed(3)} coin radii on the upright coin ` +
    `(median of ${t.boxes} train ROIs${known ? ', from the checkpoint' : ''})` +
    (learned.valIou === null ? '' : `; located vs true ROIs on val (true angles): mean IoU ${learned.valIou.toFixed(3)}`));
}

/** A checkpoint fits the config when backbone, class count, image size and head agree. */
function checkFits(c: Checkpoint, cfg: TrainingConfig, numClasses: number, file: string) {
  if (c.backbone !== cfg.backbone) throw new UsageError(`${file} holds a ${c.backbone} model, but the config asks for ${cfg.backbone}`);
  if (c.numClasses !== numClasses) throw new UsageError(`${file} has ${c.numClasses} classes, but the ${cfg.model_type} model has ${numClasses}`);
  const size = JSON.stringify(c.config?.img_size);
  if (size !== JSON.stringify(cfg.img_size)) throw new UsageError(`${file} was trained at img_size ${size}, the config asks for ${JSON.stringify(cfg.img_size)}`);
  // a checkpoint from before date_head had the flat head
  const head = JSON.stringify(headOf({ ...c.config, date_head: c.config?.date_head ?? 'flat' }));
  if (head !== JSON.stringify(headOf(cfg))) throw new UsageError(`${file} has a ${c.config?.date_head ?? 'flat'} date head, the config asks for ${cfg.date_head}`);
}

/** A resume point inside an epoch must lie inside this data's epoch. */
function checkPosition(c: Checkpoint, index: DatasetIndex, cfg: TrainingConfig, file: string): void {
  const perEpoch = batchCount(index.train.length, cfg.batch_size);
  if (c.position.batch >= perEpoch) {
    throw new UsageError(`${file}: 'rng_state.batch' is ${c.position.batch}, but an epoch of ${cfg.model_type} has ${perEpoch} batches ` +
      `(${index.train.length} train images at batch_size ${cfg.batch_size}): resume with the data and batch size it was written with`);
  }
}

/** the figure select_best_by picks by, as the console writes it */
function bestText(m: Metrics, by: TrainingConfig['select_best_by']): string {
  return by === 'acc' ? `Val Acc ${m.acc.toFixed(4)}` : by === 'angle_mae' ? `Val Angle MAE ${m.angleMae?.toFixed(2)} deg` : `Val F1 (Macro) ${m.f1Macro.toFixed(4)}`;
}

/** select_best_by as a score where higher is better */
function scoreOf(m: Metrics, by: TrainingConfig['select_best_by']): number {
  return by === 'acc' ? m.acc : by === 'angle_mae' ? -(m.angleMae ?? Infinity) : m.f1Macro;
}

/**
 * Whether an epoch's validation beats the best so far: a higher select_best_by score, or the same score at a lower
 * validation loss. A small validation set is soon all right (F1 1.0 from some epoch on); the first such epoch is then
 * not the best model: measured, the date model of configs/edge.yaml at its first val F1 1.0 (epoch 40) read 98.76% of
 * the test split, at epoch 60 (lower val loss) 99.69%.
 */
export function betterEpoch(score: number, loss: number, best: { score: number; loss: number }): boolean {
  return score > best.score || (score === best.score && loss < best.loss);
}

/** Sony's toolchain could not take the model: its reason and penny-train's explanation (exit 2 from `penny-train imx500`). */
class Imx500Refusal extends UsageError {}

/** misclassified validation images on the run report's contact sheet */
const WORST_SHOWN = 16;

/** Validation predictions of one class this many epochs running are worth a warning. */
const COLLAPSE_EPOCHS = 3;

async function run(model: PennyModel, cfg: TrainingConfig, index: DatasetIndex, log: RunLog, labelMap: Record<string, string>,
  stamp: string, resume: Checkpoint | null, pretrained: string | null, options: TrainOptions, group?: RankGroup): Promise<TrainResult> {
  const key = cfg.model_type;
  const leader = !group || group.leader;
  /** a stop asked for here (a signal) or, in a distributed run, on any rank: all ranks stop after the same step */
  const stopping = async () => (group ? group.anyStop(!!options.signal?.aborted) : !!options.signal?.aborted);
  const stopped = () => new InterruptedError(leader ? last : undefined, options.signal?.reason ?? 'SIGTERM');
  const spec = imageSpec(cfg);
  const stepsPerEpoch = batchCount(index.train.length, cfg.batch_size);
  const schedule: Schedule = {
    baseLr: cfg.lr, etaMin: cfg.lr_scheduler_eta_min,
    warmupSteps: cfg.lr_warmup_epochs * stepsPerEpoch, totalSteps: cfg.num_epochs * stepsPerEpoch,
  };
  const cache = new ImageCache(cfg.image_cache_mb);   // every image the run reads, export included, decoded once
  const last = path.join(CHECKPOINT_DIR, `${key}_last.pt`);
  const best = path.join(CHECKPOINT_DIR, `${key}_best.pt`);
  let bestValF1 = resume?.bestValF1 ?? -1;
  let bestScore = resume?.bestScore ?? -Infinity;
  let bestValLoss = resume?.bestValLoss ?? Infinity;
  let valMetrics = resume?.valMetrics ?? null;
  let collapsed = 0;   // epochs running whose validation predictions were all one class
  let pos: RunPosition = resume?.position ?? { epoch: 0, batch: 0, step: 0 };
  // ties this run's checkpoints together: a _best.pt another run left here is never taken for this one's
  const runId = resume?.runId || `${stamp}-${randomBytes(4).toString('hex')}`;
  const save = (file: string, at: RunPosition, progress: unknown = null) => saveCheckpoint(file, model, {
    position: at, schedule, bestValF1, config: cfg, labelMap, backbone: cfg.backbone, numClasses: model.numClasses,
    pretrained, seed: cfg.seed, progress, valMetrics, bestScore, bestValLoss, roiAspect: index.roiAspect ?? null, roiLocator: index.roiLocator ?? null, runId,
  });
  const evalOpts = { batchSize: cfg.batch_size, spec, workers: cfg.num_workers, cache };
  const startedAt = new Date();
  // the run's ETA: seconds per step so far in this process (validation included) times the steps left
  const runStarted = performance.now(), step0 = pos.step;
  const record = new RunRecord(cfg, stamp, labelMap);
  let bestMistakes: readonly Mistake[] | undefined;

  for (let epoch = pos.epoch; epoch < cfg.num_epochs; epoch++) {
    const started = performance.now();
    const tally = pos.batch && resume?.progress ? Tally.from(resume.progress as Parameters<typeof Tally.from>[0], key) : new Tally(key);
    let lr = lrAt(pos.step, schedule);
    const pos0 = pos.batch;   // batches done before this process (a resumed epoch)
    let seen = 0, skipped = 0;
    for await (const b of batches(index.train, {
      batchSize: cfg.batch_size, spec, augment: cfg.augment, seed: cfg.seed, epoch, workers: cfg.num_workers, startBatch: pos.batch, cache,
      shard: group && { rank: group.rank, size: group.size },
    })) {
      if (await stopping()) {
        log.clearBar();
        if (leader) await save(last, pos, tally.toJSON());
        throw stopped();
      }
      lr = lrAt(pos.step, schedule);
      const targets = cfg.label_smoothing_bins > 0 ? softTargets(key, b.labels, b.angles, model.numClasses, cfg.label_smoothing_bins) : undefined;
      // distributed: this rank's mean loss weighed by its share of the batch, so that the ranks' average is the batch's mean
      const lossScale = group ? (b.labels.length * group.size) / b.globalSize : undefined;
      const step = model.trainStep(b.pixels, b.shape, b.labels, { lr, targets, lossScale });
      const r = group ? await group.collective(`step ${pos.step + 1}`, step) : await step;
      if (b.labels.length) tally.add(r.loss, b.labels, argmaxRows(r.logits, b.labels.length, model.numClasses), b.angles);
      if (r.skipped) skipped++;
      pos = { epoch, batch: pos.batch + 1, step: pos.step + 1 };
      seen += b.globalSize;
      // mid-epoch _last.pt: a kill -9 loses at most this many steps (epoch ends are saved below)
      if (leader && cfg.checkpoint_every_steps && pos.step % cfg.checkpoint_every_steps === 0 && pos.batch < stepsPerEpoch) {
        await save(last, pos, tally.toJSON());
      }
      const elapsed = (performance.now() - started) / 1000;
      const done = pos.batch - pos0, stepSeconds = (performance.now() - runStarted) / 1000 / (pos.step - step0);
      log.progress({
        label: `Epoch ${epoch + 1}/${cfg.num_epochs}`, done, total: stepsPerEpoch - pos0, loss: tally.loss, imgPerSec: seen / elapsed,
        epochEta: (elapsed / done) * (stepsPerEpoch - pos.batch), runEta: stepSeconds * (schedule.totalSteps - pos.step),
      });
    }
    log.clearBar();
    pos = { epoch: epoch + 1, batch: 0, step: pos.step };
    // the epoch's train loss and accuracy over every rank's images
    const [lossSum, images, right] = group ? await group.sum(tally.sums()) : tally.sums();
    const trainLoss = lossSum / images, trainAcc = right / images;
    if (!leader) {   // rank 0 validates and writes the checkpoints meanwhile
      await group!.barrier(`epoch ${epoch + 1}: waiting for rank 0's validation`);
      if (await stopping()) throw stopped();
      continue;
    }
    const imgPerSec = seen / ((performance.now() - started) / 1000);
    const mistakes = new WorstMistakes(WORST_SHOWN, model.numClasses);
    const valTally = await evaluate(model, index.val, evalOpts, key, mistakes);
    const val = valTally.metrics();
    valMetrics = val;
    const seconds = (performance.now() - started) / 1000;
    const extra = taskMetricsText(val, 'Val ');
    log.info(`Epoch ${epoch + 1}/${cfg.num_epochs} Summary: Train Loss: ${trainLoss.toFixed(4)}, Val Loss: ${val.loss.toFixed(4)}, ` +
      `Val Acc: ${val.acc.toFixed(4)}, Val F1 (Macro): ${val.f1Macro.toFixed(4)}, ${extra.map((e) => `${e}, `).join('')}Duration: ${seconds.toFixed(1)}s`);
    if (skipped) log.info(`fp16: ${skipped} of ${stepsPerEpoch - pos0} steps skipped, their gradients inf/NaN at the loss scale (which halved each time)`);
    const predicted = valTally.predictedClasses();
    collapsed = predicted.length === 1 && valTally.count > 1 ? collapsed + 1 : 0;
    if (collapsed === COLLAPSE_EPOCHS) {
      log.warn(`WARNING: for ${COLLAPSE_EPOCHS} epochs running, every validation image was predicted as '${labelMap[String(predicted[0])]}': ` +
        'the model has collapsed to one class. A lower lr, a longer warmup or more data usually help.');
    }
    const score = scoreOf(val, cfg.select_best_by);
    const isBest = betterEpoch(score, val.loss, { score: bestScore, loss: bestValLoss });
    if (isBest) {
      bestScore = score;
      bestValLoss = val.loss;
      bestValF1 = val.f1Macro;
      bestMistakes = mistakes.list;
      await save(best, pos);
      log.info(`Best so far (epoch ${epoch + 1}, ${bestText(val, cfg.select_best_by)}): saved ${best}`);
    }
    await save(last, pos);
    record.epoch({
      epoch: epoch + 1, train_loss: trainLoss, train_acc: trainAcc, val_loss: val.loss, val_acc: val.acc, val_f1: val.f1Macro,
      val_angle_mae: val.angleMae, val_acc_within1: val.accWithin1, lr, seconds, img_per_s: imgPerSec, best: isBest,
    });
    if (group) await group.barrier(`epoch ${epoch + 1}: rank 0's validation`);
    if (await stopping()) throw stopped();
    await options.onEpoch?.({
      epoch: epoch + 1, epochs: cfg.num_epochs, trainLoss, trainAcc, valLoss: val.loss,
      valAcc: val.acc, valF1: val.f1Macro, valAngleMae: val.angleMae, valAccWithin1: val.accWithin1, lr, seconds, best: isBest,
    });
  }
  if (group && !leader) return resultOf(await group.outcome<TrainResult>());
  return group ? published(group, testAndExport) : testAndExport();

  /** Rank 0's end of the run (the only one of a single process): test on the best weights, export, the run record. */
  async function testAndExport(): Promise<TrainResult> {
    throwIfAborted(options.signal, last);
    const bestState = fs.existsSync(best) ? await loadCheckpoint(best) : null;
    if (bestState && bestState.runId !== runId) {
      log.warn(`WARNING: ${best} was written by another run (${bestState.runId || 'one without a run id'}), not this one (${runId}): ` +
        'testing and exporting this run\'s last weights instead');
    } else if (bestState) {
      checkParamsFit(best, bestState.params, model.graph.params);
      model.setParams(bestState.params);
    }
    const weights = bestState?.runId === runId ? 'best' : 'last';
    // the test figures and the parity check are of the model as exported: the fp32 master weights computed in fp32
    model.setPrecision('fp32');
    const testTally = await evaluate(model, index.test, evalOpts, key);
    const test = testTally.metrics();
    log.info(`Test (${weights} weights): ${metricsText(test)} on ${testTally.count} images`);

    const labelFile = path.join('output', 'label_maps', `${key}_label_map.json`);
    writeFileAtomicSync(labelFile, JSON.stringify(labelMap, null, 2) + '\n');

    throwIfAborted(options.signal, last);
    const onnx = await exportModels({ model, cfg, index, labelMap, stamp, pretrained, log, cache, signal: options.signal, saved: last });
    let sony: Imx500Result | undefined;
    if (cfg.imx500_compatible) {
      const status = imx500Status();
      if (onnx.imx500 && !onnx.imx500.fits) {
        log.info(`IMX500: Sony's toolchain not run: penny-train's own check says the model cannot fit (${onnx.imx500.statement})`);
      } else if (status === 'ready') {
        throwIfAborted(options.signal, last);
        sony = await sonyImx500({ cfg, numClasses: model.numClasses, checkpoint: weights === 'best' ? best : last, index,
          calibrationFrom: 'train images', log, cache, dir: path.join(cfg.output_dir, `${key}_${stamp}_imx500`) }).catch((e: Error) => {
          if (!(e instanceof Imx500Refusal)) throw e;
          log.warn(e.message);   // the run's own models stand; only the IMX500 package is missing (results.json says why)
          return { dir: path.join(cfg.output_dir, `${key}_${stamp}_imx500`), onnx: '', converterError: e.message, seconds: {} };
        });
      } else {
        log.info(`IMX500: Sony's toolchain ${status === 'off' ? 'is switched off (PENNY_IMX500=off)' : 'is not set up'}, so only penny-train's own check above ran; ` +
          '`npm run setup:imx500` adds it (and `penny-train imx500 --checkpoint ...` runs it on a checkpoint)');
      }
    }
    const files = { last_checkpoint: last, best_checkpoint: best, log: log.file, label_map: labelFile, onnx_fp32: onnx.fp32, onnx_int8: onnx.int8,
      imx500: sony?.dir };
    const written = await record.finish({
      runId, startedAt, versions: { 'penny-train': PACKAGE_VERSION, node: process.version, libtorch: nativeInfo().torchVersion },
      device: deviceOf(cfg), data: { train: index.train.length, val: index.val.length, test: index.test.length },
      ...(resume && { resumedFrom: { checkpoint: options.resume!, epoch: resume.position.epoch } }),
      test: { weights, images: testTally.count, metrics: test, confusion: testTally.confusion(model.numClasses),
        ...(key === 'orientation' && { angleErrors: testTally.angleErrors() }) },
      mistakes: bestMistakes, export: onnx, files, ...(sony && { imx500: sony }),
    });
    const report = written[written.length - 1];
    log.info(`Run record: ${record.dir}/ (config.yaml, metrics.csv, results.json, ${written.filter((f) => f.endsWith('.png')).length} plots); ` +
      `open ${report}`);
    log.info(['Files written:', ...Object.values(files).filter((f): f is string => !!f && fs.existsSync(f)), ...[
      'config.yaml', 'metrics.csv'].map((f) => record.file(f)), ...written].map((f, i) => (i ? `  ${f}` : f)).join('\n'));
    return {
      bestValF1,
      test,
      checkpoints: { last, best },
      onnx: { fp32: onnx.fp32, int8: onnx.int8 },
      int8VsFp32: onnx.int8VsFp32,
      labelMap,
      log: log.file,
      run: record.dir,
    };
  }
}

export interface ExportOptions extends Omit<TrainOptions, 'resume' | 'epochs' | 'batchSize' | 'onEpoch' | 'overwrite'> {
  /** the folder for the ONNX files (default: the config's output_dir) */
  output?: string;
  /** false: the fp32 ONNX only */
  int8?: boolean;
  /** a folder of images to calibrate INT8 on, and, when the training data is absent, to check parity on */
  calibration?: string;
}

/**
 * Re-exports a checkpoint without training (`penny-train export --checkpoint`), from the config stored in it (or
 * `configFile`'s, which the checkpoint must fit). The training data, where present, gives the parity check, the
 * calibration and the INT8 comparison; without it, `calibration` images give the first two, and with neither the
 * fp32 file is written alone, its parity unchecked.
 */
export async function exportCheckpoint(checkpoint: string, options: ExportOptions = {}): Promise<ExportResult> {
  const { ckpt, cfg } = await openCheckpoint(checkpoint, options);
  checkDeviceOf(cfg);
  const { stamp, log, index, sources } = await checkpointRun(ckpt, cfg, options, EXPORT_DIRS(cfg));
  log.info(`Exporting ${checkpoint} (epoch ${ckpt.position.epoch}, best val F1 ${ckpt.bestValF1.toFixed(4)})`);
  await locateRois(cfg, index, log, ckpt.roiLocator);
  const model = await modelFor(cfg, ckpt.numClasses, undefined, 'fp32');
  try {
    checkParamsFit(checkpoint, ckpt.params, model.graph.params);
    model.setParams(ckpt.params);
    return await exportModels({ model, cfg, index, labelMap: labelMapOf(cfg.model_type), stamp, pretrained: ckpt.pretrained, log, signal: options.signal, saved: checkpoint, sources });
  } finally {
    model.dispose();
  }
}

/**
 * A checkpoint and the config it is exported with: the one stored in it, or `configFile`'s section when one is given,
 * with the caller's overrides (output folder, no int8); its weights checked against that config's model.
 */
async function openCheckpoint(checkpoint: string, options: ExportOptions): Promise<{ ckpt: Checkpoint; cfg: TrainingConfig }> {
  const ckpt = await loadCheckpoint(checkpoint);
  // checkpoints of earlier versions stored the config file's name beside the config
  const { configFile: _, ...stored } = (ckpt.config ?? {}) as Record<string, unknown>;
  const cfg = resolveConfig(ckpt.config?.model_type ?? '', options, options.configFile ? undefined : { section: stored, from: `${checkpoint} (its config)` });
  if (options.output) cfg.output_dir = options.output;
  if (options.int8 === false) cfg.quantize = false;
  checkFits(ckpt, cfg, Object.keys(labelMapOf(cfg.model_type)).length, checkpoint);
  return { ckpt, cfg };
}

/** What exporting a checkpoint writes with: `dirs` checked writable first, a run stamp and log, the images it reads. */
async function checkpointRun(ckpt: Checkpoint, cfg: TrainingConfig, options: ExportOptions, dirs: string[]) {
  const calibration = options.calibration ? listImages([options.calibration]).map((f) => f.file) : undefined;
  for (const dir of dirs) checkWritable(dir);
  const stamp = timestamp();
  const log = new RunLog(path.join('output', 'training_logs', `${cfg.model_type}_${stamp}.log`), options.quiet);
  return { stamp, log, ...await exportImages(cfg, ckpt, calibration, options.calibration, log) };
}

export type Imx500Options = Omit<ExportOptions, 'int8'>;

export interface Imx500Result extends Imx500Conversion {
  /** MCT int8 against fp32 (the PyTorch module of the same graph and weights) on the test split */
  mctVsFp32?: Int8Comparison;
}

/**
 * `penny-train imx500`: a checkpoint through Sony's toolchain (MCT post-training quantization for the IMX500, then
 * imx500-converter) into `<output_dir>/<model>_<stamp>_imx500/`, with the converter's verdict on memory and MCT's int8
 * accuracy against fp32 on the test split. Needs `npm run setup:imx500`, and calibration images: the training data,
 * or `calibration`.
 */
export async function imx500Checkpoint(checkpoint: string, options: Imx500Options = {}): Promise<Imx500Result> {
  imx500Python();   // set up? (before anything is read)
  const { ckpt, cfg } = await openCheckpoint(checkpoint, { ...options, int8: false });   // MCT quantizes; no onnxruntime int8
  const { stamp, log, index, sources } = await checkpointRun(ckpt, cfg, options, [cfg.output_dir]);
  return sonyImx500({ cfg, numClasses: ckpt.numClasses, checkpoint, index, calibrationFrom: sources.train, log, dir: path.join(cfg.output_dir, `${cfg.model_type}_${stamp}_imx500`) });
}

/**
 * A checkpoint through MCT and imx500-converter (src/export/imx500-toolchain.ts), calibrated on the index's train
 * split, MCT int8 compared with fp32 on its test split; the verdict logged. `penny-train imx500` and the end of a
 * training run (imx500_compatible, the toolchain set up) both come here.
 */
async function sonyImx500(o: { cfg: TrainingConfig; numClasses: number; checkpoint: string; index: DatasetIndex; calibrationFrom: string; log: RunLog;
  dir: string; cache?: ImageCache }): Promise<Imx500Result> {
  const { cfg, log, index } = o;
  if (index.train.length < MIN_CALIBRATION_SAMPLES) {
    throw new UsageError(`IMX500 quantization needs at least ${MIN_CALIBRATION_SAMPLES} calibration images; there are ${index.train.length} ` +
      '(the training data, or --calibration DIR)');
  }
  const spec = imageSpec(cfg);
  const pixelsOf = async (samples: Sample[]) => {
    const bs = await allBatches(samples, evalOptions({ batchSize: 16, spec, workers: cfg.num_workers, cache: o.cache }));
    return { pixels: concatFloats(bs.map((b) => b.pixels)), batches: bs };
  };
  const calib = await pixelsOf(index.train.slice(0, Math.min(cfg.calibration_samples, 128)));
  const test = index.test.length ? await pixelsOf(index.test) : undefined;
  const graph = buildBackbone(cfg.backbone, o.numClasses, cfg.img_size, headOf(cfg));
  log.info(`IMX500: ${o.checkpoint} through MCT (IMX500 target platform, ${calib.batches.reduce((n, b) => n + b.labels.length, 0)} ${o.calibrationFrom}) and imx500-converter`);
  const r: Imx500Result = await convertForImx500({ graph, checkpoint: o.checkpoint, calibration: calib.pixels, test: test?.pixels, dir: o.dir,
    name: path.basename(o.dir).replace(/_imx500$/, '') });
  if (r.mctError || r.converterError) {
    const params = parameterCount(graph);
    throw new Imx500Refusal(`IMX500: ${r.mctError ? `MCT (model-compression-toolkit) could not quantize the model: ${r.mctError}`
      : `imx500-converter refused the model:\n${r.converterError}`}\n` +
      `The IMX500 runs int8 CNNs whose weights and activations fit its 8 MB; ${cfg.backbone} has ${params.toLocaleString('en-US')} parameters ` +
      `(${(params / 2 ** 20).toFixed(1)} MB at int8)${params > 8 * 2 ** 20 ? ', more than the chip holds: train a backbone of configs/edge.yaml for it' : ''}. ` +
      (r.mctError ? 'No IMX500 package was written.' : `No packerOut.zip; MCT's quantized ONNX and the converter's whole log (imxconv.log) are in ${o.dir}.`));
  } else {
    const kb = (b?: number) => (b === undefined ? '?' : b < 2 ** 20 ? `${(b / 1024).toFixed(1)} KB` : `${(b / 2 ** 20).toFixed(2)} MB`);
    log.info(`IMX500 (imx500-converter): ${kb(r.memoryBytes)} of ${kb(r.availableBytes)} used, ${r.fits ? 'fits' : 'DOES NOT FIT'} in the chip; ` +
      `packerOut.zip for imx500-package in ${r.dir}`);
  }
  if (test && r.logits) {
    const figures = (logits: Float32Array) => testFigures(logits, test.batches, o.numClasses, cfg.model_type);
    const [fp32, int8] = [figures(r.logits.fp32), figures(r.logits.int8)];
    r.mctVsFp32 = { images: r.logits.fp32.length / o.numClasses, fp32, int8, top1Agreement: top1Agreement(r.logits.int8, r.logits.fp32, o.numClasses) };
    log.info(`MCT int8 vs fp32 on ${r.mctVsFp32.images} test images: ${versusText(int8, fp32, r.mctVsFp32.top1Agreement)}`);
  }
  log.info(`IMX500 toolchain time: ${Object.entries(r.seconds).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(', ')}`);
  return r;
}

function concatFloats(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * The images an export reads: the training data's splits where its metadata is found, calibration images (when
 * given) in place of the train split, and those for parity too where there is no data. Static INT8 with no images to
 * calibrate on is skipped with a plain message.
 */
async function exportImages(cfg: TrainingConfig, ckpt: Checkpoint, calibration: string[] | undefined, folder: string | undefined, log: RunLog) {
  const haveData = fs.existsSync(cfg.metadata_json_path);
  const index: DatasetIndex = haveData ? await buildIndex(cfg) : { train: [], val: [], test: [], warnings: [] };
  for (const w of index.warnings) log.warn(`data: ${w}`);
  if (!haveData) log.info(`The training data is absent (${cfg.metadata_json_path} not found): no INT8 comparison on its test split`);
  if (ckpt.roiAspect !== null) index.roiAspect ??= ckpt.roiAspect;
  const sources = { train: 'train images', val: 'val images' };
  if (calibration && folder) {
    index.train = await unlabelledSamples(calibration);
    sources.train = `images of ${folder}`;
    if (!haveData) [index.val, sources.val] = [index.train, sources.train];
  }
  if (cfg.quantize && cfg.quantize_mode === 'static' && !index.train.length) {
    log.info('INT8: skipped, no images to calibrate on (the training data is absent): give --calibration DIR, or --no-int8 to say so');
    cfg.quantize = false;
  }
  return { index, sources };
}
