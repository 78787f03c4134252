// Checkpoints: a dict that Python's torch.load(path, weights_only=True) reads, written atomically (src/util/atomic.ts).
// Keys: epoch, model_state, optimizer_state, scheduler_state, best_val_f1, config, label_map (the original's), plus
// rng_state, progress, backbone, num_classes, pretrained, val_metrics (the epoch's), best_score (select_best_by's,
// higher is better), best_val_loss (its tie-break), roi_aspect (align_roi's upright ROI aspect) and run_id (the run
// that wrote it: a _best.pt of another run is never tested or exported in this one's place).
import fs from 'node:fs';
import { readTorchFile, writeTorchFile, type TorchValueTensor } from '../backend/native.js';
import type { AdamState, Floats } from '../backend/types.js';
import type { TrainingConfig } from '../config/config.js';
import { listProblems, UsageError } from '../errors.js';
import { writeAtomic } from '../util/atomic.js';
import { adamGroup, numel } from '../model/graph.js';
import type { PennyModel } from '../model/model.js';
import { verifyZip, ZipError } from '../util/zip.js';
import type { RoiTemplate } from '../predict/locate.js';
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
  /** the best epoch's validation loss, which breaks a tie of bestScore (Infinity before the first epoch, and in older checkpoints) */
  bestValLoss: number;
  /** align_roi: the upright ROI aspect the run measured on its training ROIs */
  roiAspect: number | null;
  /** the run that wrote it (absent in checkpoints from before run ids: '') */
  runId: string;
  /** date and mint: where the ROI lies on a coin, learned from the training ROIs (src/predict/locate.ts) */
  roiLocator: RoiTemplate | null;
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
    params: model.graph.params.flatMap((p, i) => (adamGroup(p) === (decay ? 'decay' : 'no_decay') ? [i] : [])),
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
    best_val_loss: c.bestValLoss,
    roi_aspect: c.roiAspect,
    roi_locator: c.roiLocator,
    run_id: c.runId,
  };
  await writeAtomic(file, (tmp) => writeTorchFile(tmp, payload));
}

type Dict = Record<string, unknown>;

/** The run that wrote a checkpoint (its run_id), or null where the file cannot be read or predates run ids. */
export async function runIdOf(file: string): Promise<string | null> {
  try {
    const d = (await readTorchFile(file)) as Dict;
    return typeof d.run_id === 'string' && /^[\w.-]+$/.test(d.run_id) ? d.run_id : null;
  } catch {
    return null;
  }
}

const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
const isInt = (v: unknown, min: number): v is number => Number.isSafeInteger(v) && (v as number) >= min;
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const fmt = (s: number[]) => `[${s.join(', ')}]`;

/** A value as an error shows it: short, and a tensor by its dtype and shape rather than its data. */
function show(v: unknown): string {
  if (isDict(v) && v.kind === 'tensor') return `a ${String(v.dtype)} tensor of shape ${Array.isArray(v.shape) ? fmt(v.shape) : '?'}`;
  if (typeof v === 'number') return String(v);   // JSON would write NaN and Infinity as null
  const j = JSON.stringify(v);
  return j === undefined ? String(v) : j.length > 60 ? `${j.slice(0, 57)}...` : j;
}

/** Why `v` is not a float32 tensor whose data fills its shape (undefined when it is). */
function tensorProblem(v: unknown): string | undefined {
  if (!isDict(v) || v.kind !== 'tensor') return `is ${show(v)}, not a tensor`;
  // the addon reads LibTorch's scalar type names ('Float'); writeTorchFile takes 'float32'
  if (!(v.data instanceof Float32Array) || (v.dtype !== 'Float' && v.dtype !== 'float32')) return `is ${show(v)}, not float32`;
  if (!Array.isArray(v.shape) || !v.shape.every((n) => isInt(n, 0))) return `has shape ${show(v.shape)}, not a list of sizes`;
  const count = numel(v.shape as number[]);
  if (v.data.length !== count) return `has ${v.data.length} values, but its shape ${fmt(v.shape)} needs ${count}`;
  return undefined;
}

/**
 * Every field's problem, each naming the field: a checkpoint that fails here would otherwise train on garbage
 * (a negative epoch, a batch past the epoch, NaN state) or crash far from the cause.
 */
function checkpointProblems(d: Dict): string[] {
  const problems: string[] = [];
  const want = (ok: boolean, field: string, value: unknown, rule: string) => {
    if (!ok) problems.push(`'${field}' is ${show(value)}; it must be ${rule}`);
  };
  const cfg = isDict(d.config) ? d.config : undefined;
  want(cfg !== undefined, 'config', d.config, 'a dict');
  const epochs = cfg?.num_epochs;
  want(cfg === undefined || isInt(epochs, 1), 'config.num_epochs', epochs, 'a positive integer');
  const maxEpoch = isInt(epochs, 1) ? epochs : Infinity;
  want(isInt(d.epoch, 0) && d.epoch <= maxEpoch, 'epoch', d.epoch, `an integer from 0 to config.num_epochs (${show(epochs)})`);

  if (d.rng_state !== undefined) {   // absent in the earliest checkpoints: batch 0, the config's seed
    const rng = isDict(d.rng_state) ? d.rng_state : {};
    want(isDict(d.rng_state), 'rng_state', d.rng_state, 'a dict');
    if ('batch' in rng) want(isInt(rng.batch, 0), 'rng_state.batch', rng.batch, 'an integer >= 0');
    // all epochs done leaves no batch to resume at
    if (isInt(rng.batch, 1) && d.epoch === epochs) problems.push(`'rng_state.batch' is ${rng.batch} after the last epoch (${show(epochs)}); it must be 0`);
    if ('seed' in rng) want(isInt(rng.seed, 0), 'rng_state.seed', rng.seed, 'an integer >= 0');
  }

  const sched = isDict(d.scheduler_state) ? d.scheduler_state : undefined;
  want(sched !== undefined, 'scheduler_state', d.scheduler_state, 'a dict');
  if (sched) {
    want(isInt(sched.last_step, 0), 'scheduler_state.last_step', sched.last_step, 'an integer >= 0');
    want(finite(sched.base_lr) && sched.base_lr >= 0, 'scheduler_state.base_lr', sched.base_lr, 'a finite number >= 0');
    want(finite(sched.eta_min) && sched.eta_min >= 0, 'scheduler_state.eta_min', sched.eta_min, 'a finite number >= 0');
    want(isInt(sched.warmup_steps, 0), 'scheduler_state.warmup_steps', sched.warmup_steps, 'an integer >= 0');
    want(isInt(sched.total_steps, 1), 'scheduler_state.total_steps', sched.total_steps, 'an integer >= 1');
  }

  want(finite(d.best_val_f1) && d.best_val_f1 >= -1 && d.best_val_f1 <= 1, 'best_val_f1', d.best_val_f1, 'a number from -1 to 1');
  // -Infinity is "no best epoch yet": what a run interrupted in its first epoch saves
  if (d.best_val_loss !== undefined) want(typeof d.best_val_loss === 'number' && !Number.isNaN(d.best_val_loss), 'best_val_loss', d.best_val_loss, 'a number');
  if (d.best_score !== undefined) want(typeof d.best_score === 'number' && (finite(d.best_score) || d.best_score === -Infinity), 'best_score', d.best_score, 'a finite number (or -Infinity before the first epoch)');
  if (d.roi_aspect !== undefined && d.roi_aspect !== null) want(finite(d.roi_aspect) && d.roi_aspect > 0, 'roi_aspect', d.roi_aspect, 'a positive number or None');
  if (d.roi_locator !== undefined && d.roi_locator !== null) {
    const t = d.roi_locator as Record<string, unknown>;
    want(isDict(t) && ['u', 'v', 'width', 'height', 'boxes'].every((k) => finite(t[k])) && (t.width as number) > 0 && (t.height as number) > 0,
      'roi_locator', d.roi_locator, 'a dict of u, v, width, height (coin radii) and boxes, or None');
  }
  want(typeof d.backbone === 'string' && d.backbone !== '', 'backbone', d.backbone, 'a backbone name');
  if (d.pretrained !== undefined) want(d.pretrained === null || typeof d.pretrained === 'string', 'pretrained', d.pretrained, 'a path or None');

  const labels = isDict(d.label_map) ? d.label_map : undefined;
  want(labels !== undefined && Object.values(labels).every((v) => typeof v === 'string'), 'label_map', d.label_map, 'a dict of class index to name');
  const classes = labels ? Object.keys(labels).length : undefined;
  want(isInt(d.num_classes, 1) && (classes === undefined || d.num_classes === classes), 'num_classes', d.num_classes,
    `a positive integer equal to the number of entries in label_map (${classes ?? '?'})`);

  const state = isDict(d.model_state) ? d.model_state : undefined;
  want(state !== undefined, 'model_state', d.model_state, 'a dict of tensors');
  for (const [name, t] of Object.entries(state ?? {})) {
    const p = tensorProblem(t);
    if (p) problems.push(`'model_state.${name}' ${p}`);
  }

  const opt = isDict(d.optimizer_state) ? d.optimizer_state : undefined;
  want(opt !== undefined, 'optimizer_state', d.optimizer_state, 'a dict');
  if (opt) {
    const names = opt.param_names;
    const namesOk = Array.isArray(names) && names.every((n) => typeof n === 'string');
    want(namesOk, 'optimizer_state.param_names', names, 'a list of parameter names');
    want(isDict(opt.state), 'optimizer_state.state', opt.state, 'a dict');
    for (const [i, s] of Object.entries(isDict(opt.state) ? opt.state : {})) {
      const field = `optimizer_state.state[${i}]`;
      const name = namesOk && /^\d+$/.test(i) ? (names as string[])[Number(i)] : undefined;
      if (name === undefined) {
        problems.push(`'${field}': parameter index ${i} is not in optimizer_state.param_names (${namesOk ? (names as string[]).length : 0} names)`);
        continue;
      }
      const param = state?.[name] as TorchValueTensor | undefined;
      if (!param) problems.push(`'${field}' is for '${name}', which model_state does not hold`);
      if (!isDict(s)) {
        problems.push(`'${field}' (${name}) is ${show(s)}, not a dict`);
        continue;
      }
      want(isInt(s.step, 0), `${field}.step`, s.step, `an integer >= 0 (${name})`);
      for (const k of ['exp_avg', 'exp_avg_sq']) {
        const p = tensorProblem(s[k]);
        if (p) problems.push(`'${field}.${k}' (${name}) ${p}`);
        else if (param?.data && (s[k] as TorchValueTensor).data.length !== param.data.length) {
          problems.push(`'${field}.${k}' (${name}) has ${(s[k] as TorchValueTensor).data.length} values, the parameter ${param.data.length}`);
        }
      }
    }
  }
  return problems;
}

/** Reads a penny-train checkpoint; a foreign, corrupt or unreadable file is a UsageError naming it (and the field). */
export async function loadCheckpoint(file: string): Promise<Checkpoint> {
  if (!fs.existsSync(file)) throw new UsageError(`checkpoint not found: ${file}`);
  // LibTorch's reader checks no CRC: a flipped byte in a tensor would load and train.
  try {
    verifyZip(file);
  } catch (e) {
    throw e instanceof ZipError ? new UsageError(`cannot read checkpoint ${file}: ${e.detail}`) : e;
  }
  let raw: unknown;
  try {
    raw = await readTorchFile(file);
  } catch (e) {
    throw new UsageError(`cannot read checkpoint ${file}: ${(e as Error).message}`);
  }
  const d = (isDict(raw) ? raw : {}) as Dict;
  const missing = ['epoch', 'model_state', 'optimizer_state', 'scheduler_state', 'best_val_f1', 'config', 'label_map', 'backbone', 'num_classes']
    .filter((k) => !(k in d));
  if (missing.length) throw new UsageError(`${file} is not a penny-train checkpoint (no ${missing.map((k) => `'${k}'`).join(', ')})`);
  const problems = checkpointProblems(d);
  if (problems.length) throw new UsageError(listProblems(`${file} is not a usable penny-train checkpoint`, problems));

  const modelState = d.model_state as Record<string, TorchValueTensor>;
  const params = Object.fromEntries(Object.entries(modelState).map(([k, t]) => [k, t.data as Float32Array]));
  const opt = d.optimizer_state as { state: Record<string, Dict>; param_names: string[] };
  const optimizer: Record<string, AdamState> = {};
  for (const [i, s] of Object.entries(opt.state)) {
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
    bestValLoss: typeof d.best_val_loss === 'number' ? d.best_val_loss : Infinity,
    roiAspect: typeof d.roi_aspect === 'number' ? d.roi_aspect : null,
    roiLocator: (d.roi_locator as RoiTemplate | undefined) ?? null,
    runId: typeof d.run_id === 'string' ? d.run_id : '',
  };
}

/**
 * Throws a UsageError naming `file` and every missing tensor (with the shape the model expects), every tensor the
 * model has no parameter for, and every size mismatch: call it with `model.graph.params` before setParams.
 */
export function checkParamsFit(file: string, params: Record<string, Float32Array>, expected: { name: string; shape: number[] }[]): void {
  const problems: string[] = [];
  const names = new Set(expected.map((p) => p.name));
  for (const { name, shape } of expected) {
    const count = numel(shape);
    const t = params[name];
    if (!t) problems.push(`missing tensor '${name}' (the model expects shape ${fmt(shape)})`);
    else if (t.length !== count) problems.push(`tensor '${name}' has ${t.length} values; the model's shape ${fmt(shape)} needs ${count}`);
  }
  for (const [name, t] of Object.entries(params)) {
    if (!names.has(name)) problems.push(`unexpected tensor '${name}' (${t.length} values): the model has no such parameter`);
  }
  if (problems.length) throw new UsageError(listProblems(`${file} does not fit the model`, problems));
}
