// Small helpers the benchmark parts share: seeded inputs, number formatting, the example data set.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type TrainingConfig } from '../../src/config/config.js';
import { imageSpec, type ImageSpec } from '../../src/data/images.js';
import { Rng } from '../../src/util/rng.js';
import type { Stats } from './stats.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Normal(0, std) values from the project's seeded generator: the same inputs every run. */
export function randomNormal(n: number, seed: number, std = 1): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * rng.normal();
  return out;
}

/** 3 significant-ish digits */
export const fmt = (x: number) => (x >= 100 ? x.toFixed(1) : x >= 10 ? x.toFixed(2) : x.toFixed(3));
export const pct = (s: Stats) => `±${(s.spread * 100).toFixed(0)}%`;
/** a ratio rounded towards the target's side, so a shown 2.50x never hides 2.497 (>=) or 1.103 (<=) */
export const ratioStr = (r: number, kind: '>=' | '<=' = '>=') =>
  `${(kind === '>=' ? Math.floor(r * 100) / 100 : Math.ceil(r * 100) / 100).toFixed(2)}x`;
export const verdict = (ok: boolean) => (ok ? 'ok' : 'MISS');

/** The master config's section `key`, pointed at data_examples/ with paths resolved against the project root. */
export function exampleConfig(key = 'side'): TrainingConfig {
  const cfg = loadConfig(key, path.join(ROOT, 'configs', 'training_config.yaml'));
  return {
    ...cfg,
    data_root: path.join(ROOT, 'data_examples'),
    metadata_json_path: path.resolve(ROOT, cfg.metadata_json_path),
    roi_json_path: path.resolve(ROOT, cfg.roi_json_path),
  };
}

export function specOf(cfg: TrainingConfig, size?: number): ImageSpec {
  const spec = imageSpec(cfg);
  return size === undefined ? spec : { ...spec, height: size, width: size };
}
