// The training config: one section of a YAML file (configs/training_config.yaml), read against the schema
// (schema.ts: types, ranges, defaults), then the rules that tie keys to the model; `--set` overrides on top.
import fs from 'node:fs';
import yaml from 'js-yaml';
import type { z } from 'zod';
import { sizeProblem } from '../model/backbones.js';
import { ROI_PAD } from '../data/roi.js';
import { ConfigError, listProblems } from '../errors.js';
import { knownKeys, MODEL_KEYS, sectionSchema, type ModelKey, type TrainingConfig } from './schema.js';

export { MODEL_KEYS, type Augment, type BestBy, type ModelKey, type RoiFit, type TrainingConfig } from './schema.js';
export const DEFAULT_CONFIG_FILE = 'configs/training_config.yaml';

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

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `side.augment.blur_p`, `side.mean[1]` */
function keyPath(key: string, path: PropertyKey[]): string {
  return key + path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
}

/** One line per zod issue (the first of each key), naming where, the key, the rule and the value found. */
function describeIssues(issues: z.core.$ZodIssue[], input: unknown, key: ModelKey, where: string): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const issue of issues) {
    const at = keyPath(key, issue.path);
    if (issue.code === 'unrecognized_keys') {
      // a typo most likely stands for a key the section does not give otherwise: those win a tie
      const given = valueAt(input, issue.path);
      const known = knownKeys(key, issue.path).sort((a, b) => Number(isMapping(given) && a in given) - Number(isMapping(given) && b in given));
      for (const k of issue.keys) {
        const near = nearest(k, known);
        out.push(`${where}: ${at}: unknown key '${k}'${near ? ` (did you mean '${near}'?)` : ''}`);
      }
    } else if (!seen.has(at)) {
      seen.add(at);
      out.push(`${where}: ${at} ${issue.message}, got ${show(valueAt(input, issue.path))}`);
    }
  }
  return out;
}

function valueAt(v: unknown, path: PropertyKey[]): unknown {
  return path.reduce<unknown>((x, p) => (isMapping(x) || Array.isArray(x) ? (x as Record<PropertyKey, unknown>)[p] : undefined), v);
}

/**
 * Validates one section (null or {} is a section of defaults); returns it complete and typed, or throws a ConfigError
 * listing every problem, each naming `file` (or whatever the values came from), the section and the key.
 */
export function validateSection(section: unknown, key: string, file: string): TrainingConfig {
  if (!(MODEL_KEYS as readonly string[]).includes(key)) {
    throw new ConfigError(`unknown model '${key}': choose one of ${MODEL_KEYS.join(', ')}`);
  }
  const model = key as ModelKey;
  const parsed = sectionSchema(model).safeParse(section ?? {});
  const problems = parsed.success ? taskProblems(parsed.data, model, `${file}: ${key}`) : describeIssues(parsed.error.issues, section, model, file);
  if (problems.length) throw new ConfigError(listProblems(`invalid config ${file}, section '${key}'`, problems));
  return parsed.data!;
}

/** Settings that only some models can use, and sizes the backbone cannot take. */
function taskProblems(c: TrainingConfig, key: ModelKey, where: string): string[] {
  const out: string[] = [];
  const roi = key === 'date' || key === 'mint';
  if (c.model_type !== key) out.push(`${where}.model_type is '${c.model_type}' but the section is '${key}': they must agree`);
  if (key !== 'side' && c.augment.hflip_p > 0) {
    out.push(`${where}.augment.hflip_p must be 0 for ${key}: a mirrored coin is not a coin (got ${c.augment.hflip_p})`);
  }
  if (c.align_roi && !roi) out.push(`${where}.align_roi applies to date and mint (their ROI crops), not ${key}`);
  if (c.roi_fit !== 'crop' && !roi) out.push(`${where}.roi_fit applies to date and mint (their ROI crops), not ${key}: whole coins are resized and centre-cropped (leave it out)`);
  if (c.date_head !== 'flat' && key !== 'date') out.push(`${where}.date_head applies to the date model only (got ${show(c.date_head)})`);
  if (c.augment.rotate_relabel && key !== 'orientation') {
    out.push(`${where}.augment.rotate_relabel applies to orientation only: the other labels do not turn with the coin`);
  }
  if (c.roi_pad !== ROI_PAD && !roi) out.push(`${where}.roi_pad applies to date and mint (their ROI crops), not ${key}`);
  if (c.augment.roi_jitter > 0 && !roi) out.push(`${where}.augment.roi_jitter applies to date and mint (their ROI crops), not ${key}`);
  if (c.select_best_by === 'angle_mae' && key !== 'orientation') out.push(`${where}.select_best_by angle_mae applies to orientation only`);
  if (c.label_smoothing_bins > 0 && key !== 'orientation' && key !== 'date') {
    out.push(`${where}.label_smoothing_bins applies to orientation and date (ordered classes), not ${key}`);
  }
  const p = sizeProblem(c.backbone, c.img_size);
  if (p) out.push(`${where}.img_size: ${p}`);
  return out;
}

/**
 * `section` with `settings` applied: each a dotted key (`lr`, `augment.blur_p`) and its value, as `--set key=value`
 * gives them; the result is validated like a file's section (unknown keys fail with a suggestion).
 */
export function applySettings(section: Record<string, unknown>, settings: Record<string, unknown>): Record<string, unknown> {
  const out = structuredClone(section);
  for (const [dotted, value] of Object.entries(settings)) {
    const parts = dotted.split('.');
    if (parts.some((p) => p === '')) throw new ConfigError(`--set ${dotted}: not a key (use key=value, dotted for nested keys: augment.blur_p=0.1)`);
    let at: Record<string, unknown> = out;
    for (const [i, p] of parts.slice(0, -1).entries()) {
      at[p] ??= {};
      if (!isMapping(at[p])) throw new ConfigError(`--set ${dotted}: ${parts.slice(0, i + 1).join('.')} is ${show(at[p])}, not a mapping of keys`);
      at = at[p] as Record<string, unknown>;
    }
    at[parts[parts.length - 1]] = value;
  }
  return out;
}

/** `key=value` strings (the CLI's `--set`) as dotted keys and values, each value read as YAML: 0.1, true, null, [48, 112]. */
export function parseSettings(assignments: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of assignments) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set '${a}': expected key=value (dotted for nested keys: augment.blur_p=0.1)`);
    let value: unknown;
    try {
      value = yaml.load(a.slice(eq + 1));
    } catch (e) {
      throw new ConfigError(`--set '${a}': the value is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    out[a.slice(0, eq).trim()] = value === undefined ? null : value;
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

/**
 * Reads `file` and returns section `modelKey`, validated, every key left out given its default; `settings` (dotted
 * keys, as from `--set`) then override it and are validated as coming from `--set`.
 */
export function loadConfig(modelKey: string, file = DEFAULT_CONFIG_FILE, settings: Record<string, unknown> = {}): TrainingConfig {
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
  const section = sections[modelKey];
  const cfg = validateSection(section, modelKey, file);
  if (!Object.keys(settings).length) return cfg;
  return validateSection(applySettings(isMapping(section) ? section : {}, settings), modelKey, `${file} with --set`);
}
