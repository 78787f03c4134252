// The training config: one section of configs/training_config.yaml, validated key by key.
import fs from 'node:fs';
import yaml from 'js-yaml';
import { backboneNames, sizeProblem } from '../model/backbones.js';
import { ConfigError, listProblems } from '../errors.js';

export const MODEL_KEYS = ['side', 'orientation', 'date', 'mint'] as const;
export type ModelKey = (typeof MODEL_KEYS)[number];
export const DEFAULT_CONFIG_FILE = 'configs/training_config.yaml';

export interface Augment {
  rotation_deg: number;
  crop_scale: [number, number];
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  blur_p: number;
  hflip_p: number;
  /** orientation: the rotation (any angle up to rotation_deg) turns the label with the coin */
  rotate_relabel: boolean;
  /**
   * date and mint: the ROI box moved by up to this fraction of its width/height and scaled by 1 +- it (what falls
   * outside the box reads its edge, as letterbox's fill), so a model reads boxes drawn less exactly than the ROI
   * file's, such as prediction's located ones; 0: the box as given
   */
  roi_jitter: number;
}

/** How a date/mint ROI reaches the model: whole, scaled to fit and padded (letterbox) or stretched; or centre-cropped. */
export type RoiFit = 'letterbox' | 'stretch' | 'crop';
export type BestBy = 'f1_macro' | 'acc' | 'angle_mae';

export interface TrainingConfig {
  data_root: string;
  metadata_json_path: string;
  roi_json_path: string;
  model_type: ModelKey;
  backbone: string;
  pretrained_weights: string | null;
  /** [height, width] */
  img_size: [number, number];
  roi_fit: RoiFit;
  /** date/mint: read the ROI upright, turned back by the coin's angle */
  align_roi: boolean;
  /** date: decade + unit digit heads (factorised) or one 116-way head (flat) */
  date_head: 'factorised' | 'flat';
  /** soft labels: a Gaussian over neighbouring classes (orientation: wrapped, in bins; date: in years); 0 = one-hot */
  label_smoothing_bins: number;
  select_best_by: BestBy;
  mean: [number, number, number];
  std: [number, number, number];
  num_epochs: number;
  batch_size: number;
  lr: number;
  weight_decay: number;
  optimizer_betas: [number, number];
  lr_scheduler_eta_min: number;
  lr_warmup_epochs: number;
  augment: Augment;
  output_dir: string;
  quantize: boolean;
  quantize_mode: 'static' | 'dynamic';
  calibration_samples: number;
  calibration_method: 'minmax' | 'percentile';
  imx500_compatible: boolean;
  qat: boolean;
  seed: number;
  device: string | null;
  backend: 'native' | 'js';
  threads: number | null;
  num_workers: number;
  image_cache_mb: number;
  /** also write _last.pt every this many optimizer steps inside an epoch (0: at epoch ends only) */
  checkpoint_every_steps: number;
}

/** A check returns a problem description, or null when the value is good. */
type Check = (v: unknown) => string | null;

const num = (min: number, max = Infinity, { int = false, minExclusive = false } = {}): Check => (v) =>
  typeof v !== 'number' || !Number.isFinite(v) ? `must be a number, got ${show(v)}`
    : int && !Number.isInteger(v) ? `must be an integer, got ${v}`
    : (minExclusive ? v <= min : v < min) || v > max ? `must be in ${minExclusive ? '(' : '['}${min}, ${max}], got ${v}` : null;
const str: Check = (v) => (typeof v === 'string' && v.length > 0 ? null : `must be a non-empty string, got ${show(v)}`);
const bool: Check = (v) => (typeof v === 'boolean' ? null : `must be true or false, got ${show(v)}`);
const oneOf = (...allowed: string[]): Check => (v) => (allowed.includes(v as string) ? null : `must be one of ${allowed.join(', ')}, got ${show(v)}`);
const nullable = (c: Check): Check => (v) => (v === null ? null : c(v));
const tuple = (n: number, each: Check): Check => (v) => {
  if (!Array.isArray(v) || v.length !== n) return `must be a list of ${n} values, got ${show(v)}`;
  for (const [i, x] of v.entries()) {
    const p = each(x);
    if (p) return `[${i}] ${p}`;
  }
  return null;
};
const device: Check = (v) => (v === null || (typeof v === 'string' && /^(cpu|cuda(:\d+)?)$/.test(v)) ? null : `must be cpu, cuda, cuda:N or null, got ${show(v)}`);
const prob = num(0, 1);

const AUGMENT: Record<keyof Augment, Check> = {
  rotation_deg: num(0, 180),
  crop_scale: (v) => tuple(2, num(0, 1, { minExclusive: true }))(v) ?? ((v as number[])[0] > (v as number[])[1] ? `must be [min, max], got ${show(v)}` : null),
  brightness: prob,
  contrast: prob,
  saturation: prob,
  hue: num(0, 0.5),
  blur_p: prob,
  hflip_p: prob,
  rotate_relabel: bool,
  roi_jitter: num(0, 0.5),
};

const SCHEMA: Record<Exclude<keyof TrainingConfig, 'augment'>, Check> = {
  data_root: str,
  metadata_json_path: str,
  roi_json_path: str,
  model_type: oneOf(...MODEL_KEYS),
  backbone: (v) => oneOf(...backboneNames())(v),
  pretrained_weights: nullable(str),
  img_size: tuple(2, num(16, 4096, { int: true })),
  roi_fit: oneOf('letterbox', 'stretch', 'crop'),
  align_roi: bool,
  date_head: oneOf('factorised', 'flat'),
  label_smoothing_bins: num(0, 60),
  select_best_by: oneOf('f1_macro', 'acc', 'angle_mae'),
  mean: tuple(3, num(0, 1)),
  std: tuple(3, num(0, Infinity, { minExclusive: true })),
  num_epochs: num(1, 100000, { int: true }),
  batch_size: num(1, 65536, { int: true }),
  lr: num(0, 10, { minExclusive: true }),
  weight_decay: num(0, 10),
  optimizer_betas: tuple(2, num(0, 1)),
  lr_scheduler_eta_min: num(0, 10),
  lr_warmup_epochs: num(0, 100000, { int: true }),
  output_dir: str,
  quantize: bool,
  quantize_mode: oneOf('static', 'dynamic'),
  calibration_samples: num(1, 1e6, { int: true }),
  calibration_method: oneOf('minmax', 'percentile'),
  imx500_compatible: bool,
  qat: bool,
  seed: num(0, 2 ** 32 - 1, { int: true }),
  device,
  backend: oneOf('native', 'js'),
  threads: nullable(num(1, 1024, { int: true })),
  num_workers: num(0, 64, { int: true }),
  image_cache_mb: num(0, 1e7, { int: true }),
  checkpoint_every_steps: num(0, 1e9, { int: true }),
};

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

/** The known key nearest to `key`, if it is near enough to be a typo. */
export function nearest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function checkKeys(obj: Record<string, unknown>, schema: Record<string, Check>, where: string, problems: string[]) {
  // A typo most likely stands for a key that is missing, so those are suggested first.
  const missing = Object.keys(schema).filter((k) => !(k in obj));
  for (const key of Object.keys(obj)) {
    if (!(key in schema)) {
      const near = nearest(key, missing) ?? nearest(key, Object.keys(schema));
      problems.push(`${where}: unknown key '${key}'${near ? ` (did you mean '${near}'?)` : ''}`);
    }
  }
  for (const [key, check] of Object.entries(schema)) {
    if (!(key in obj)) problems.push(`${where}: missing key '${key}'`);
    else {
      const p = check(obj[key]);
      if (p) problems.push(`${where}.${key} ${p}`);
    }
  }
}

/**
 * Keys added after the original trainer, with the value a section that leaves them out gets: configs written for
 * the original (and for earlier penny-train versions) keep their meaning.
 */
function defaultsFor(key: string) {
  const roi = key === 'date' || key === 'mint';
  return {
    section: { roi_fit: roi ? 'letterbox' : 'crop', align_roi: false, date_head: key === 'date' ? 'factorised' : 'flat', label_smoothing_bins: 0, select_best_by: 'f1_macro', checkpoint_every_steps: 0 },
    augment: { rotate_relabel: false, roi_jitter: 0 },
  };
}

/** Validates one section; returns it typed, or throws a ConfigError listing every problem. */
export function validateSection(section: unknown, key: string, file: string): TrainingConfig {
  const where = `${file}: ${key}`;
  if (typeof section !== 'object' || section === null || Array.isArray(section)) {
    throw new ConfigError(`${where}: the section must be a mapping of keys to values`);
  }
  const defaults = defaultsFor(key);
  const s: Record<string, unknown> = { ...defaults.section, ...section };
  if (typeof s.augment === 'object' && s.augment !== null && !Array.isArray(s.augment)) s.augment = { ...defaults.augment, ...s.augment };
  const problems: string[] = [];
  checkKeys(s, { ...SCHEMA, augment: () => null }, where, problems);
  if (typeof s.augment === 'object' && s.augment !== null && !Array.isArray(s.augment)) {
    checkKeys(s.augment as Record<string, unknown>, AUGMENT, `${where}.augment`, problems);
  } else if ('augment' in s) {
    problems.push(`${where}.augment must be a mapping of augmentation settings`);
  }
  if ('model_type' in s && s.model_type !== key) {
    problems.push(`${where}.model_type is '${String(s.model_type)}' but the section is '${key}': they must agree`);
  }
  const aug = s.augment as Partial<Augment> | undefined;
  if (key !== 'side' && typeof aug?.hflip_p === 'number' && aug.hflip_p > 0) {
    problems.push(`${where}.augment.hflip_p must be 0 for ${key}: a mirrored coin is not a coin (got ${aug.hflip_p})`);
  }
  problems.push(...taskProblems(s, key, where));
  if (problems.length) throw new ConfigError(listProblems(`invalid config ${file}, section '${key}'`, problems));
  return s as unknown as TrainingConfig;
}

/** Settings that only some models can use, and sizes the backbone cannot take. */
function taskProblems(s: Record<string, unknown>, key: string, where: string): string[] {
  const out: string[] = [];
  const roi = key === 'date' || key === 'mint';
  if (s.align_roi === true && !roi) out.push(`${where}.align_roi applies to date and mint (their ROI crops), not ${key}`);
  if (s.roi_fit !== 'crop' && !roi) out.push(`${where}.roi_fit applies to date and mint (their ROI crops), not ${key}: whole coins are resized and centre-cropped (leave it out)`);
  if (s.date_head !== 'flat' && key !== 'date') out.push(`${where}.date_head applies to the date model only (got ${show(s.date_head)})`);
  if ((s.augment as Partial<Augment> | undefined)?.rotate_relabel === true && key !== 'orientation') {
    out.push(`${where}.augment.rotate_relabel applies to orientation only: the other labels do not turn with the coin`);
  }
  if (((s.augment as Partial<Augment> | undefined)?.roi_jitter ?? 0) > 0 && !roi) {
    out.push(`${where}.augment.roi_jitter applies to date and mint (their ROI crops), not ${key}`);
  }
  if (s.select_best_by === 'angle_mae' && key !== 'orientation') out.push(`${where}.select_best_by angle_mae applies to orientation only`);
  if (typeof s.label_smoothing_bins === 'number' && s.label_smoothing_bins > 0 && key !== 'orientation' && key !== 'date') {
    out.push(`${where}.label_smoothing_bins applies to orientation and date (ordered classes), not ${key}`);
  }
  if (typeof s.backbone === 'string' && backboneNames().includes(s.backbone) && !SCHEMA.img_size(s.img_size)) {
    const p = sizeProblem(s.backbone, s.img_size as [number, number]);
    if (p) out.push(`${where}.img_size: ${p}`);
  }
  return out;
}

/**
 * YAML aliases share one object, so a few lines can describe a document of billions of values ("billion laughs"):
 * every walk of it (validation, JSON for a message) would take that long. Counted with a budget before any walk.
 */
const MAX_CONFIG_VALUES = 100_000;

/** Values in `v` counted as a walk meets them (shared ones each time), stopping past `limit`. */
function expandedSize(v: unknown, limit: number): number {
  let n = 0;
  const stack = [v];
  while (stack.length && n <= limit) {
    const x = stack.pop();
    n++;
    if (typeof x === 'object' && x !== null) for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push(c);
  }
  return n;
}

/** Reads `file` and returns section `modelKey`, validated. */
export function loadConfig(modelKey: string, file = DEFAULT_CONFIG_FILE): TrainingConfig {
  if (!(MODEL_KEYS as readonly string[]).includes(modelKey)) {
    throw new ConfigError(`unknown model '${modelKey}': choose one of ${MODEL_KEYS.join(', ')}`);
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: file });
  } catch (e) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(e as Error).message}`);
  }
  const size = expandedSize(doc, MAX_CONFIG_VALUES);
  if (size > MAX_CONFIG_VALUES) {
    throw new ConfigError(`config file ${file} expands to more than ${MAX_CONFIG_VALUES} values (YAML aliases referring to aliases?); ` +
      'a training config has about a hundred');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new ConfigError(`config file ${file} must be a mapping with sections ${MODEL_KEYS.join(', ')}`);
  }
  const sections = doc as Record<string, unknown>;
  if (!(modelKey in sections)) {
    const present = Object.keys(sections);
    throw new ConfigError(`config file ${file} has no section '${modelKey}'` +
      (present.length ? ` (it has: ${present.join(', ')})` : ''));
  }
  return validateSection(sections[modelKey], modelKey, file);
}
