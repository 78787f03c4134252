// The training config's schema: every key with its type, range and default (zod), and the per-model defaults that are
// the original trainer's values (configs/training_config.yaml states them in full). A config file states only what
// differs; a full file of the original's 19 keys or of today's keys reads the same.
import { z } from 'zod';
import { ROI_PAD } from '../data/roi.js';
import { backboneNames } from '../model/backbones.js';
import { PRECISIONS } from '../backend/types.js';

export const MODEL_KEYS = ['side', 'orientation', 'date', 'mint'] as const;
export type ModelKey = (typeof MODEL_KEYS)[number];

// Each message ends where formatIssue (config.ts) adds ", got <the value>".
function num(min: number, max = Infinity, { int = false, minExclusive = false } = {}) {
  const range = `must be in ${minExclusive ? '(' : '['}${min}, ${max}]`;
  let s = z.number({ error: 'must be a number' });
  if (int) s = s.int({ error: 'must be an integer' });
  s = minExclusive ? s.gt(min, { error: range }) : s.gte(min, { error: range });
  return max === Infinity ? s : s.lte(max, { error: range });
}
const str = () => z.string({ error: 'must be a non-empty string' }).min(1, { error: 'must be a non-empty string' });
const bool = () => z.boolean({ error: 'must be true or false' });
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(', ')}` });
function pair<T extends z.ZodType>(each: T) {
  return z.tuple([each, each], { error: 'must be a list of 2 values' });
}
const triple = <T extends z.ZodType>(each: T) => z.tuple([each, each, each], { error: 'must be a list of 3 values' });
const prob = () => num(0, 1);
const DEVICE = 'must be cpu, cuda, cuda:N or null';

export const ROI_FITS = ['letterbox', 'stretch', 'crop'] as const;
/** How a date/mint ROI reaches the model: whole, scaled to fit and padded (letterbox) or stretched; or centre-cropped. */
export type RoiFit = (typeof ROI_FITS)[number];
export const BEST_BY = ['f1_macro', 'acc', 'angle_mae'] as const;
export type BestBy = (typeof BEST_BY)[number];

const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];
const ORIGINAL_EPOCHS: Record<ModelKey, number> = { side: 10, orientation: 15, date: 20, mint: 15 };

const isRoiModel = (key: string) => key === 'date' || key === 'mint';

/** The augment section of model `key`, each setting with its default. */
function augmentSchema(key: ModelKey) {
  return z.object({
    rotation_deg: num(0, 180).default(key === 'orientation' ? 0 : 3),
    crop_scale: pair(num(0, 1, { minExclusive: true }))
      .refine(([lo, hi]) => lo <= hi, { error: 'must be [min, max]' })
      .default([0.9, 1.0]),
    brightness: prob().default(0.15),
    contrast: prob().default(0.15),
    saturation: prob().default(0.1),
    hue: num(0, 0.5).default(0.05),
    blur_p: prob().default(0.25),
    /** side only: a mirrored date or mint mark is not a coin */
    hflip_p: prob().default(key === 'side' ? 0.5 : 0),
    /** orientation: the rotation (any angle up to rotation_deg) turns the label with the coin */
    rotate_relabel: bool().default(false),
    /**
     * date and mint: the ROI box moved by up to this fraction of its shorter side, across and along, and scaled by
     * 1 +- it (what falls outside the box reads its edge, as letterbox's fill), so a model reads boxes drawn less
     * exactly than the ROI file's, such as prediction's located ones; 0: the box as given
     */
    roi_jitter: num(0, 0.5).default(0),
  }, { error: 'must be a mapping of augmentation settings' }).strict();
}

/** Section `key` of a training config: every key, typed, with the default a section that leaves it out gets. */
export function sectionSchema(key: ModelKey) {
  const backbones = backboneNames() as [string, ...string[]];
  return z.object({
    data_root: str().default('data/'),
    metadata_json_path: str().default('metadata/metadata.json'),
    roi_json_path: str().default('metadata/roi_coordinates.json'),
    model_type: oneOf(MODEL_KEYS).default(key),
    backbone: oneOf(backbones).default('coin_clip_vit_b32'),
    pretrained_weights: str().nullable().default('pretrained/coin-clip-vit-base-patch32'),
    /** [height, width] */
    img_size: pair(num(16, 4096, { int: true })).default([224, 224]),
    roi_fit: oneOf(ROI_FITS).default(isRoiModel(key) ? 'letterbox' : 'crop'),
    /**
     * date/mint: each side of the ROI grown by this fraction of its width/height before it is read (the original's
     * 5%); a wider margin keeps the glyphs in view when a box is placed less exactly, as prediction's located ones are
     */
    roi_pad: num(0, 2).default(ROI_PAD),
    /** date/mint: read the ROI upright, turned back by the coin's angle */
    align_roi: bool().default(false),
    /** date: decade + unit digit heads (factorised) or one 116-way head (flat) */
    date_head: oneOf(['factorised', 'flat']).default(key === 'date' ? 'factorised' : 'flat'),
    /** soft labels: a Gaussian over neighbouring classes (orientation: wrapped, in bins; date: in years); 0 = one-hot */
    label_smoothing_bins: num(0, 60).default(0),
    select_best_by: oneOf(BEST_BY).default('f1_macro'),
    mean: triple(num(0, 1)).default(CLIP_MEAN),
    std: triple(num(0, Infinity, { minExclusive: true })).default(CLIP_STD),
    num_epochs: num(1, 100000, { int: true }).default(ORIGINAL_EPOCHS[key]),
    batch_size: num(1, 65536, { int: true }).default(32),
    lr: num(0, 10, { minExclusive: true }).default(1e-4),
    weight_decay: num(0, 10).default(0.05),
    optimizer_betas: pair(num(0, 1)).default([0.9, 0.999]),
    lr_scheduler_eta_min: num(0, 10).default(1e-6),
    lr_warmup_epochs: num(0, 100000, { int: true }).default(1),
    // prefault: a missing augment section is parsed as {}, so each setting takes its own default
    augment: augmentSchema(key).prefault({}),
    output_dir: str().default(`models/${key}`),
    quantize: bool().default(true),
    quantize_mode: oneOf(['static', 'dynamic']).default('static'),
    calibration_samples: num(1, 1e6, { int: true }).default(128),
    calibration_method: oneOf(['minmax', 'percentile']).default('minmax'),
    imx500_compatible: bool().default(true),
    qat: bool().default(false),
    seed: num(0, 2 ** 32 - 1, { int: true }).default(42),
    /** null: cuda when available, else cpu */
    device: z.string({ error: DEVICE }).regex(/^(cpu|cuda(:\d+)?)$/, { error: DEVICE }).nullable().default(null),
    backend: oneOf(['native', 'js']).default('native'),
    /** the forward's arithmetic: fp32, or bf16 / fp16 autocast (native; master weights stay fp32) */
    precision: oneOf(PRECISIONS).default('fp32'),
    /** LibTorch intra-op threads; null: the machine's cores */
    threads: num(1, 1024, { int: true }).nullable().default(null),
    /** batches prepared concurrently while the model computes */
    num_workers: num(0, 64, { int: true }).default(2),
    /** decoded images kept in memory across epochs (0: decode every epoch) */
    image_cache_mb: num(0, 1e7, { int: true }).default(2048),
    /** also write _last.pt every this many optimizer steps inside an epoch (0: at epoch ends only) */
    checkpoint_every_steps: num(0, 1e9, { int: true }).default(0),
    /** distributed runs: batch norm's batch statistics over every rank's images (false: each rank's own) */
    sync_bn: bool().default(false),
  }, { error: 'must be a mapping of keys to values' }).strict();
}

/** The keys of the section (path []) or of its augment mapping (path ['augment']). */
export function knownKeys(key: ModelKey, path: PropertyKey[]): string[] {
  return Object.keys(path.length ? augmentSchema(key).shape : sectionSchema(key).shape);
}

export type TrainingConfig = z.output<ReturnType<typeof sectionSchema>>;
export type Augment = TrainingConfig['augment'];
