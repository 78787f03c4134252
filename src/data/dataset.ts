// The dataset index: metadata + ROIs -> the samples of one model, split by UID hash, validated as a whole before
// training starts. Every problem found is reported at once (file, UID, field, value).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { ModelKey, TrainingConfig } from '../config/config.js';
import { DataError, listProblems } from '../errors.js';
import { mapLimit } from '../util/concurrency.js';
import { FIRST_YEAR, LAST_YEAR, labelOf, MINT_MARKS, REVERSE_TYPES, type Entry } from './labels.js';
import type { RoiTemplate } from '../predict/locate.js';
import { headerSize } from './image-files.js';
import { medianAspect, roiRegion, type View } from './roi.js';
import { splitOf, type Split } from './split.js';

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Sample {
  /** normalised (see normaliseUid) */
  uid: string;
  /** the image's real path (symlinks resolved), inside data_root */
  file: string;
  label: number;
  /** size of the whole image as displayed (EXIF orientation applied) */
  width: number;
  height: number;
  /** the region to decode (date and mint: the ROI padded 5% and clipped); absent: the whole image */
  crop?: Box;
  /** what the model sees of that region, in its pixels: an upright box turned by `angle` (align_roi); absent: all of it */
  view?: View;
  /** the coin's angle from metadata (degrees, counter-clockwise), where known */
  angle?: number;
  /** date and mint: the ROI file's box (image pixels, as displayed), from which crop and view are made */
  roi?: Box;
}

export type DatasetIndex = Record<Split, Sample[]> & {
  /** align_roi: the upright ROI aspect (width / height) used where a box's bounds do not decide it */
  roiAspect?: number;
  /** date and mint: where the ROI lies on a coin, for photos without an ROI (src/predict/locate.ts; set by train) */
  roiLocator?: RoiTemplate;
  /** what is odd but harmless (a file listed twice with the same labels, one picture twice in one split): to log */
  warnings: string[];
};

const ROI_FIELD: Partial<Record<ModelKey, 'date_roi' | 'mint_mark_roi'>> = { date: 'date_roi', mint: 'mint_mark_roi' };

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DataError(`${what} ${file} is not valid JSON: ${(e as Error).message}`);
  }
}

const show = (v: unknown) => JSON.stringify(v);

/**
 * A uid as the one spelling of its file: a POSIX path relative to data_root, normalised ('./a.jpg', 'd/../a.jpg'
 * -> 'a.jpg'), so that two spellings of one file are one sample with one split hash. A backslash is part of a name,
 * never a separator. Returns why not where the uid is absolute, climbs out of data_root or names no file.
 */
export function normaliseUid(uid: string): { uid: string } | { why: string } {
  if (path.posix.isAbsolute(uid)) return { why: 'is an absolute path (a uid is a path relative to data_root)' };
  const n = path.posix.normalize(uid);
  if (n === '..' || n.startsWith('../')) return { why: 'leads outside data_root' };
  if (n === '.' || n.endsWith('/')) return { why: 'names no file' };
  return { uid: n };
}

const FIELDS = ['side', 'type', 'angle', 'year', 'mint_mark'] as const;

/** Parses metadata (a list of entries, or a dict uid -> entry) into entries with normalised uids; problems and warnings are appended. */
export function parseMetadata(doc: unknown, file: string, model: ModelKey, problems: string[], warnings: string[] = []): Entry[] {
  let raw: [string, unknown][];
  if (Array.isArray(doc)) raw = doc.map((e, i) => [`entry #${i}`, e]);
  else if (typeof doc === 'object' && doc !== null) {
    raw = Object.entries(doc).map(([uid, e]) => [uid, typeof e === 'object' && e !== null ? { uid, ...e } : e]);
  } else {
    throw new DataError(`metadata ${file} must be a list of entries or a dict uid -> entry`);
  }
  const seen = new Map<string, { spelling: string; entry: Entry }>();   // normalised uid -> its first valid entry
  const entries: Entry[] = [];
  for (const [where, value] of raw) {
    if (typeof value !== 'object' || value === null) {
      problems.push(`${file}: ${where}: not an object (${show(value)})`);
      continue;
    }
    const e = value as Record<string, unknown>;
    if (typeof e.uid !== 'string' || !e.uid) {
      problems.push(`${file}: ${where}: missing uid`);
      continue;
    }
    const norm = normaliseUid(e.uid);
    if ('why' in norm) {
      problems.push(`${file}: UID ${e.uid}: ${norm.why}`);
      continue;
    }
    const uid = norm.uid;
    const bad = (field: string, why: string) => problems.push(`${file}: UID ${e.uid}: ${field} ${show(e[field])} ${why}`);
    const before = problems.length;
    if (e.side !== 'obverse' && e.side !== 'reverse') bad('side', 'is not obverse or reverse');
    if (e.type !== undefined && e.type !== null && !(REVERSE_TYPES as readonly unknown[]).includes(e.type)) bad('type', `is not one of ${REVERSE_TYPES.join(', ')}`);
    // a reverse type on an obverse: the side label would silently say obverse, whichever is wrong
    else if (e.side === 'obverse' && e.type !== undefined && e.type !== null) bad('type', 'is a reverse type, but side is obverse');
    if (model === 'side' && e.side === 'reverse' && (e.type === undefined || e.type === null)) problems.push(`${file}: UID ${e.uid}: a reverse needs a type (${REVERSE_TYPES.join(', ')})`);
    if (e.angle !== undefined && e.angle !== null && (typeof e.angle !== 'number' || !(e.angle >= 0 && e.angle < 360))) bad('angle', 'is not in [0, 360)');
    if (e.year !== undefined && e.year !== null && (!Number.isInteger(e.year) || (e.year as number) < FIRST_YEAR || (e.year as number) > LAST_YEAR)) bad('year', `is not a year in ${FIRST_YEAR}-${LAST_YEAR}`);
    let mint = e.mint_mark;
    if (mint === 'no_mint') mint = 'nomint';
    if (mint !== undefined && mint !== null && !(MINT_MARKS as readonly unknown[]).includes(mint)) bad('mint_mark', `is not one of ${MINT_MARKS.join(', ')} (or no_mint)`);
    if (problems.length > before) continue;
    const entry: Entry = {
      uid, side: e.side as Entry['side'],
      ...(e.type != null && { type: e.type as Entry['type'] }),
      ...(e.angle != null && { angle: e.angle as number }),
      ...(e.year != null && { year: e.year as number }),
      ...(mint != null && { mint_mark: mint as Entry['mint_mark'] }),
    };
    // One file listed twice would be one picture counted twice; with other labels, one of them is wrong.
    const first = seen.get(uid);
    if (first) {
      const spellings = `${show(first.spelling)} and ${show(e.uid)}`;
      const differ = FIELDS.filter((f) => first.entry[f] !== entry[f]).map((f) => `${f} ${show(first.entry[f] ?? null)} vs ${show(entry[f] ?? null)}`);
      if (differ.length) problems.push(`${file}: UID ${uid}: listed as ${spellings} with different ${differ.join(', ')}`);
      else warnings.push(`${file}: UID ${uid}: listed as ${spellings} with the same labels; indexed once`);
      continue;
    }
    seen.set(uid, { spelling: e.uid, entry });
    entries.push(entry);
  }
  return entries;
}

function parseBox(v: unknown): Box | null {
  if (typeof v !== 'object' || v === null) return null;
  const b = v as Record<string, unknown>;
  const ok = ['x', 'y', 'width', 'height'].every((k) => typeof b[k] === 'number' && Number.isFinite(b[k] as number));
  return ok && (b.width as number) > 0 && (b.height as number) > 0 && (b.x as number) >= 0 && (b.y as number) >= 0 ? (b as unknown as Box) : null;
}

/** Whether `p` is `root` or lies under it (both real, absolute paths). */
function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/**
 * Builds and validates the index of `cfg.model_type`; throws a DataError listing every problem found. What is odd
 * but harmless comes back in `warnings`, for the caller to log.
 */
export async function buildIndex(cfg: TrainingConfig): Promise<DatasetIndex> {
  const model = cfg.model_type;
  // one message for a wrong data_root, not one per image
  if (!fs.existsSync(cfg.data_root) || !fs.statSync(cfg.data_root).isDirectory()) {
    throw new DataError(`data_root ${cfg.data_root} (the ${model} section's) ${fs.existsSync(cfg.data_root) ? 'is not a folder' : 'does not exist'}`);
  }
  const problems: string[] = [];
  const warnings: string[] = [];
  const entries = parseMetadata(readJson(cfg.metadata_json_path, 'metadata'), cfg.metadata_json_path, model, problems, warnings);
  const roiField = ROI_FIELD[model];
  const rois = roiField ? readJson(cfg.roi_json_path, 'ROI file') as Record<string, Record<string, unknown>> : {};
  if (roiField && (typeof rois !== 'object' || rois === null || Array.isArray(rois))) {
    throw new DataError(`ROI file ${cfg.roi_json_path} must be a dict "<uid stem>" -> { date_roi, mint_mark_roi }`);
  }

  const candidates = entries.flatMap((e) => {
    const label = labelOf(model, e);
    return label === null ? [] : [{ e, label }];
  });
  if (roiField && cfg.align_roi) {
    const noAngle = candidates.filter(({ e }) => e.angle === undefined);
    for (const { e } of noAngle.slice(0, 20)) problems.push(`${cfg.metadata_json_path}: UID ${e.uid}: no angle, which align_roi needs to read its ${roiField} upright`);
    if (noAngle.length > 20) problems.push(`… and ${noAngle.length - 20} more ${model} samples without an angle`);
  }
  // Uids cannot name a file outside data_root: normaliseUid refuses '..' and absolute paths, and here a symlink's
  // target must lie inside it too.
  const root = fs.realpathSync(cfg.data_root);
  type Found = { s: Sample; split: Split; sha256: string };
  const samples = await mapLimit(candidates, 8, async ({ e, label }): Promise<Found | null> => {
    const named = path.join(cfg.data_root, e.uid);
    let file: string;
    try {
      file = await fs.promises.realpath(named);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(`UID ${e.uid}: image ${named} ${code === 'ENOENT' ? 'not found' : `cannot be read (${code ?? (err as Error).message})`}`);
      return null;
    }
    if (!inside(root, file)) {
      problems.push(`UID ${e.uid}: image ${named} resolves to ${file}, outside data_root ${root}`);
      return null;
    }
    let width = 0, height = 0, sha256: string;
    try {
      const bytes = await fs.promises.readFile(file);   // read once: hashed for duplicates, then decoded
      sha256 = createHash('sha256').update(bytes).digest('hex');
      [width, height] = await headerSize(bytes);
      await sharp(bytes, { failOn: 'truncated' }).resize(8, 8, { fit: 'fill' }).raw().toBuffer();   // decodes it all (JPEG shrink-on-load keeps it cheap)
    } catch (err) {
      problems.push(`UID ${e.uid}: image ${named} cannot be decoded (${(err as Error).message})`);
      return null;
    }
    const s: Sample = { uid: e.uid, file, label, width, height, ...(e.angle !== undefined && { angle: e.angle }) };
    if (roiField) {
      // ROI boxes are in pixels of the image as displayed (EXIF orientation applied): the frame of width and height.
      const stem = e.uid.replace(/\.[^.]+$/, '');
      const entry = rois[stem] ?? rois[e.uid];
      const roi = parseBox(entry?.[roiField]);
      if (!entry || entry[roiField] === undefined) {
        problems.push(`${cfg.roi_json_path}: UID ${e.uid}: no ${roiField} for this ${model} sample`);
        return null;
      }
      if (!roi) {
        problems.push(`${cfg.roi_json_path}: UID ${e.uid}: ${roiField} ${show(entry[roiField])} is not {x, y, width, height} with x, y >= 0 and a positive size`);
        return null;
      }
      if (roi.x + roi.width > width || roi.y + roi.height > height) {
        problems.push(`${cfg.roi_json_path}: UID ${e.uid}: ${roiField} ${show(roi)} lies outside the ${width}x${height} image`);
        return null;
      }
      s.roi = roi;
      return { s, split: splitOf(e.uid), sha256 };
    }
    return { s, split: splitOf(e.uid), sha256 };
  });

  // One picture under two uids: in two splits it leaks the test into training; in one split it only counts twice.
  const byContent = new Map<string, Found[]>();
  for (const r of samples) if (r) byContent.set(r.sha256, [...(byContent.get(r.sha256) ?? []), r]);
  for (const same of byContent.values()) {
    if (same.length < 2) continue;
    const uids = same.map((r) => `${r.s.uid} (${r.split})`).join(', ');
    if (same.some((r) => r.split !== same[0].split)) problems.push(`the same image under UIDs ${uids}: one picture in two splits leaks between them`);
    else warnings.push(`the same image under UIDs ${uids}`);
  }

  const index: DatasetIndex = { train: [], val: [], test: [], warnings };
  for (const r of samples) if (r) index[r.split].push(r.s);
  if (roiField && !problems.length) {
    const aspect = cfg.align_roi ? medianAspect(index.train.map((s) => ({ roi: s.roi!, angle: s.angle! }))) : undefined;
    if (aspect !== undefined) index.roiAspect = aspect;
    for (const s of [...index.train, ...index.val, ...index.test]) {
      Object.assign(s, roiRegion(s.roi!, s.width, s.height, aspect === undefined ? undefined : { angle: s.angle!, aspect }, cfg.roi_pad));
    }
  }
  if (!problems.length) {
    for (const split of ['train', 'val'] as const) {
      if (!index[split].length) problems.push(`the ${split} split of the ${model} model is empty (${candidates.length} ${model} samples in ${cfg.metadata_json_path})`);
    }
  }
  if (problems.length) throw new DataError(listProblems(`bad data for the ${model} model`, problems));
  return index;
}
