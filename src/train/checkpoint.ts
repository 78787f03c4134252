// Checkpoints: a dict that Python's torch.load(path, weights_only=True) reads, written atomically (temp + rename).
// Keys: epoch, model_state, optimizer_state, scheduler_state, best_val_f1, config, label_map (the original's), plus
// rng_state, progress, backbone, num_classes, pretrained, val_metrics (the epoch's), best_score (select_best_by's,
// higher is better) and roi_aspect (align_roi's upright ROI aspect).
import fs from 'node:fs';
import path from 'node:path';
import { readTorchFile, writeTorchFile, type TorchValueTensor } from '../backend/native.js';
import type { AdamState, Floats } from '../backend/types.js';
import type { TrainingConfig } from '../config/config.js';
import { UsageError } from '../errors.js';
import type { PennyModel } from '../model/model.js';
import type { Metrics } from './metrics.js';
import type { Schedule } from './schedule.js';

export interface RunPosition {
  /** completed epochs */
  epoch: number;
  /** batches done in the epoch after those (a checkpoint taken on interrupt) */
  batch: number;
  /** optimizer steps taken so far */
  step: number;
}

export interface Checkpoint {
  position: RunPosition;
  params: Record<string, Float32Array>;
  optimizer: Record<string, AdamState>;
  schedule: Schedule;
  bestValF1: number;
  config: TrainingConfig;
  labelMap: Record<string, string>;
  backbone: string;
  numClasses: number;
  pretrained: string | null;
  seed: number;
  /** the partial train tally of an interrupted epoch */
  progress: unknown;
  /** validation metrics of the last epoch done */
  valMetrics: Metrics | null;
  /** the best epoch's select_best_by score, higher is better (angle_mae: its negative) */
  bestScore: number;
  /** align_roi: the upright ROI aspect the run measured on its training ROIs */
  roiAspect: number | null;
}

const tensor = (shape: number[], data: Floats): TorchValueTensor => ({ kind: 'tensor', dtype: 'float32', shape, data });

export async function saveCheckpoint(file: string, model: PennyModel, c: Omit<Checkpoint, 'params' | 'optimizer'>): Promise<void> {
  const { params, optimizer } = model.getState();
  const shapes = new Map(model.graph.params.map((p) => [p.name, p.shape]));
  const index = new Map(model.paramNames.map((n, i) => [n, i]));
  const state = new Map<number, unknown>();
  for (const [name, s] of Object.entries(optimizer)) {
    state.set(index.get(name)!, { step: s.step, exp_avg: tensor(shapes.get(name)!, s.expAvg), exp_avg_sq: tensor(shapes.get(name)!, s.expAvgSq) });
  }
  const o = model.optimizerOptions;
  const group = (decay: boolean) => ({
    lr: o.lr, betas: [o.beta1, o.beta2], eps: o.eps, weight_decay: decay ? o.weightDecay : 0, amsgrad: false,
    params: model.graph.params.flatMap((p, i) => (p.decay === decay ? [i] : [])),
  });
  const payload = {
    epoch: c.position.epoch,
    model_state: Object.fromEntries(Object.entries(params).map(([k, v]) => [k, tensor(shapes.get(k)!, v)])),
    optimizer_state: { state, param_groups: [group(true), group(false)], param_names: model.paramNames },
    scheduler_state: {
      last_step: c.position.step, base_lr: c.schedule.baseLr, eta_min: c.schedule.etaMin,
      warmup_steps: c.schedule.warmupSteps, total_steps: c.schedule.totalSteps,
    },
    best_val_f1: c.bestValF1,
    config: c.config,
    label_map: c.labelMap,
    rng_state: { seed: c.seed, epoch: c.position.epoch, batch: c.position.batch },
    progress: c.progress ?? null,
    backbone: c.backbone,
    num_classes: c.numClasses,
    pretrained: c.pretrained,
    val_metrics: c.valMetrics,
    best_score: c.bestScore,
    roi_aspect: c.roiAspect,
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await writeTorchFile(tmp, payload);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`cannot write checkpoint ${file}: ${(e as Error).message}`);
  }
}

type Dict = Record<string, unknown>;

/** Reads a penny-train checkpoint; a foreign or unreadable file is a UsageError naming it. */
export async function loadCheckpoint(file: string): Promise<Checkpoint> {
  if (!fs.existsSync(file)) throw new UsageError(`checkpoint not found: ${file}`);
  let raw: unknown;
  try {
    raw = await readTorchFile(file);
  } catch (e) {
    throw new UsageError(`cannot read checkpoint ${file}: ${(e as Error).message}`);
  }
  const d = raw as Dict;
  const missing = ['epoch', 'model_state', 'optimizer_state', 'scheduler_state', 'best_val_f1', 'config', 'label_map', 'backbone', 'num_classes']
    .filter((k) => typeof d !== 'object' || d === null || !(k in d));
  if (missing.length) throw new UsageError(`${file} is not a penny-train checkpoint (no ${missing.map((k) => `'${k}'`).join(', ')})`);
  const modelState = d.model_state as Record<string, TorchValueTensor>;
  const params = Object.fromEntries(Object.entries(modelState).map(([k, t]) => [k, t.data as Float32Array]));
  const opt = d.optimizer_state as { state: Record<string, Dict>; param_names: string[] };
  const optimizer: Record<string, AdamState> = {};
  for (const [i, s] of Object.entries(opt.state ?? {})) {
    const name = opt.param_names[Number(i)];
    optimizer[name] = {
      step: s.step as number,
      expAvg: (s.exp_avg as TorchValueTensor).data,
      expAvgSq: (s.exp_avg_sq as TorchValueTensor).data,
    };
  }
  const sched = d.scheduler_state as Dict;
  const rng = (d.rng_state ?? {}) as Dict;
  return {
    position: { epoch: d.epoch as number, batch: (rng.batch as number) ?? 0, step: sched.last_step as number },
    params,
    optimizer,
    schedule: { baseLr: sched.base_lr as number, etaMin: sched.eta_min as number, warmupSteps: sched.warmup_steps as number, totalSteps: sched.total_steps as number },
    bestValF1: d.best_val_f1 as number,
    config: d.config as TrainingConfig,
    labelMap: d.label_map as Record<string, string>,
    backbone: d.backbone as string,
    numClasses: d.num_classes as number,
    pretrained: (d.pretrained as string | null) ?? null,
    seed: (rng.seed as number) ?? (d.config as TrainingConfig).seed,
    progress: d.progress ?? null,
    valMetrics: (d.val_metrics as Metrics | null) ?? null,
    // checkpoints from before select_best_by chose by macro-F1
    bestScore: typeof d.best_score === 'number' ? d.best_score : d.best_val_f1 as number,
    roiAspect: typeof d.roi_aspect === 'number' ? d.roi_aspect : null,
  };
}
