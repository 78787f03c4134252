// Config loading: every key of the original plus penny-train's, and errors that name file, section and key.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, MODEL_KEYS, parseSettings } from '../src/config/config.js';
import { ConfigError } from '../src/errors.js';
import { ROOT } from './helpers.js';

const MASTER = path.join(ROOT, 'configs', 'training_config.yaml');
const ORIGINAL_KEYS = ['data_root', 'metadata_json_path', 'roi_json_path', 'model_type', 'backbone', 'img_size', 'num_epochs',
  'batch_size', 'lr', 'weight_decay', 'optimizer_betas', 'lr_scheduler_eta_min', 'lr_warmup_epochs', 'output_dir', 'quantize',
  'qat', 'seed', 'device', 'num_workers'];

function variant(edit: (y: string) => string): string {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'penny-cfg-')), 'training_config.yaml');
  fs.writeFileSync(file, edit(fs.readFileSync(MASTER, 'utf8')));
  return file;
}

const failure = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('no error');
};

describe('config', () => {
  it('has every section with every key of the original', () => {
    for (const key of MODEL_KEYS) {
      const cfg = loadConfig(key, MASTER);
      for (const k of ORIGINAL_KEYS) expect(cfg, `${key}.${k}`).toHaveProperty(k);
      expect(cfg.model_type).toBe(key);
      expect(cfg.mean).toEqual([0.48145466, 0.4578275, 0.40821073]);
      expect(cfg.augment.hflip_p).toBe(key === 'side' ? 0.5 : 0);
    }
  });

  it('names a missing section and what the file has', () => {
    const file = variant((y) => y.replace(/^mint:[\s\S]*$/m, ''));
    expect(failure(() => loadConfig('mint', file))).toMatch(/has no section 'mint' \(it has: side, orientation, date\)/);
  });

  it('suggests the near key for an unknown one, naming file and section', () => {
    const file = variant((y) => y.replace('  batch_size: 32\n', '  batch_sise: 32\n'));
    const msg = failure(() => loadConfig('side', file));
    expect(msg).toContain(`${file}: side: unknown key 'batch_sise' (did you mean 'batch_size'?)`);
  });

  it('gives every key left out its default: a section states only what differs, and {} is the original\'s model', () => {
    for (const key of MODEL_KEYS) {
      expect(loadConfig(key, variant(() => `${key}: {}\n`)), key).toEqual(loadConfig(key, MASTER));
    }
    const cfg = loadConfig('date', variant(() => 'date:\n  lr: 2.0e-3\n  augment:\n    blur_p: 0\n'));
    expect([cfg.lr, cfg.augment.blur_p, cfg.augment.rotation_deg, cfg.num_epochs, cfg.output_dir]).toEqual([2e-3, 0, 3, 20, 'models/date']);
  });

  it('applies --set over the file: any key, dotted for nested ones, values read as YAML, checked like the file', () => {
    const file = variant(() => 'side:\n  lr: 1.0e-3\n  augment: {blur_p: 0}\n');
    const cfg = loadConfig('side', file, parseSettings(['lr=2e-3', 'augment.hue=0.1', 'img_size=[64, 64]', 'device=null', 'backbone=cnn_small']));
    expect([cfg.lr, cfg.augment.hue, cfg.augment.blur_p, cfg.img_size, cfg.device, cfg.backbone]).toEqual([2e-3, 0.1, 0, [64, 64], null, 'cnn_small']);
    const msg = failure(() => loadConfig('side', file, parseSettings(['augment.hux=0.2', 'lr=fast'])));
    expect(msg).toContain(`${file} with --set: side.augment: unknown key 'hux' (did you mean 'hue'?)`);
    expect(msg).toContain(`${file} with --set: side.lr must be a number, got "fast"`);
    expect(failure(() => parseSettings(['lr']))).toMatch(/--set 'lr': expected key=value/);
    expect(failure(() => loadConfig('side', file, parseSettings(['augment.blur_p.x=1'])))).toMatch(/--set augment\.blur_p\.x: augment\.blur_p is 0, not a mapping/);
  });

  it('names a wrong type or range', () => {
    const file = variant((y) => y.replace('  lr: 1.0e-4\n', "  lr: fast\n").replace(/ {2}num_workers: 2/, '  num_workers: -1'));
    const msg = failure(() => loadConfig('side', file));
    expect(msg).toContain(`${file}: side.lr must be a number, got "fast"`);
    expect(msg).toContain(`${file}: side.num_workers must be in [0, 64], got -1`);
    const aug = variant((y) => y.replace('  blur_p: 0.25\n', '  blur_p: 1.5\n'));
    expect(failure(() => loadConfig('side', aug))).toContain('side.augment.blur_p must be in [0, 1], got 1.5');
  });

  it('requires model_type to equal its section key, and no flip for mirrored-text models', () => {
    const file = variant((y) => y.replace('model_type: date', 'model_type: mint'));
    expect(failure(() => loadConfig('date', file))).toContain("date.model_type is 'mint' but the section is 'date'");
    const flip = variant((y) => y.replace(/(mint:[\s\S]*?hflip_p: )0\.0/, '$10.5'));
    expect(failure(() => loadConfig('mint', flip))).toContain('mint.augment.hflip_p must be 0 for mint');
  });

  it('gives the keys added after the original their defaults, so an older config keeps its meaning', () => {
    const date = loadConfig('date', MASTER), side = loadConfig('side', MASTER);
    expect([date.roi_fit, date.align_roi, date.date_head, date.label_smoothing_bins, date.select_best_by]).toEqual(['letterbox', false, 'factorised', 0, 'f1_macro']);
    expect([side.roi_fit, side.date_head, side.augment.rotate_relabel]).toEqual(['crop', 'flat', false]);
    const edge = path.join(ROOT, 'configs', 'edge.yaml');
    for (const key of MODEL_KEYS) {
      const cfg = loadConfig(key, edge);
      for (const k of ORIGINAL_KEYS) expect(cfg, `edge ${key}.${k}`).toHaveProperty(k);
      expect(cfg.backbone).toMatch(/^cnn_small/);
    }
    expect(loadConfig('date', edge).img_size).toEqual([48, 112]);
  });

  it('refuses settings a model cannot use, and an img_size the backbone cannot take, naming file, section and key', () => {
    const file = variant((y) => y
      .replace(/(side:[\s\S]*?)( {2}output_dir)/, '$1  align_roi: true\n  roi_pad: 0.2\n$2')
      .replace(/(side:[\s\S]*?hflip_p: 0\.5[^\n]*\n)/, '$1    roi_jitter: 0.1\n')
      .replace(/(mint:[\s\S]*?hflip_p: 0\.0\n)/, '$1    rotate_relabel: true\n')
      .replace(/(mint:[\s\S]*?)( {2}output_dir)/, '$1  date_head: factorised\n  select_best_by: angle_mae\n$2')
      .replace(/(orientation:[\s\S]*?)img_size: \[224, 224\]/, '$1img_size: [224, 200]'));
    const side = failure(() => loadConfig('side', file));
    expect(side).toContain(`${file}: side.align_roi applies to date and mint`);
    expect(side).toContain(`${file}: side.augment.roi_jitter applies to date and mint`);
    expect(side).toContain(`${file}: side.roi_pad applies to date and mint`);
    const mint = failure(() => loadConfig('mint', file));
    expect(mint).toContain(`${file}: mint.augment.rotate_relabel applies to orientation only`);
    expect(mint).toContain(`${file}: mint.date_head applies to the date model only`);
    expect(mint).toContain(`${file}: mint.select_best_by angle_mae applies to orientation only`);
    expect(failure(() => loadConfig('orientation', file))).toContain(
      `${file}: orientation.img_size: coin_clip_vit_b32 reads 32x32 patches: height and width must be multiples of 32, got [224, 200]`);
    const bad = variant((y) => y.replace(/(date:[\s\S]*?)( {2}output_dir)/, '$1  roi_fit: squash\n  label_smoothing_bins: -1\n$2'));
    const date = failure(() => loadConfig('date', bad));
    expect(date).toContain('date.roi_fit must be one of letterbox, stretch, crop, got "squash"');
    expect(date).toContain('date.label_smoothing_bins must be in [0, 60], got -1');
  });

  it('names an unreadable or malformed file', () => {
    expect(failure(() => loadConfig('side', '/nope.yaml'))).toMatch(/cannot read config file \/nope\.yaml: ENOENT/);
    expect(failure(() => loadConfig('side', variant(() => 'side: [1, 2\n')))).toMatch(/is not valid YAML/);
    expect(failure(() => loadConfig('coin', MASTER))).toMatch(/unknown model 'coin': choose one of side, orientation, date, mint/);
  });
});
