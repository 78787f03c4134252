// The run record on its own: metrics.csv row by row, results.json's per-class figures and confusion matrix, plots
// that are real images, and report.html as a real browser (Debian's Chromium, headless) shows it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { labelMap } from '../src/data/labels.js';
import { RunRecord, type EpochRow, type ResultsJson } from '../src/report/record.js';
import { ROOT } from './helpers.js';

const CHROMIUM = process.env.PENNY_CHROMIUM ?? '/usr/bin/chromium';
// .ci/run installs Chromium and sets PENNY_TEST_BROWSER=1, so there the browser check cannot be skipped
const browserCheck = process.env.PENNY_TEST_BROWSER === '1' || fs.existsSync(CHROMIUM) ? it : it.skip;

/** A date run's record (116 classes) of three epochs, written in a scratch folder; returns the folder. */
async function writeRecord(): Promise<{ dir: string; rows: EpochRow[]; confusion: number[][] }> {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-report-'));
  const previous = process.cwd();
  process.chdir(cwd);
  try {
    const cfg = loadConfig('date', path.join(ROOT, 'configs', 'edge.yaml'));
    const labels = labelMap('date');
    const record = new RunRecord(cfg, '20261130-120000', labels);
    const rows: EpochRow[] = [1, 2, 3].map((e) => ({
      epoch: e, train_loss: 4 / e, train_acc: 0.3 * e, val_loss: 4.2 / e, val_acc: 0.28 * e, val_f1: 0.25 * e, val_acc_within1: 0.3 * e,
      lr: 2e-3 / e, seconds: 10 + e, img_per_s: 150, best: e === 3,
    }));
    for (const r of rows) record.epoch(r);
    const n = 116;
    const confusion: number[][] = Array.from({ length: n }, (_, t) => Array.from({ length: n }, (_, p) => (p === t ? 3 : p === (t + 1) % n && t % 7 === 0 ? 1 : 0)));
    const [height, width] = cfg.img_size;
    const mistakes = [0, 1, 2].map((i) => ({ uid: `UID00000${i}.jpg`, truth: i, pred: i + 1, pTruth: 0.1 * i, pPred: 0.8, pixels: new Float32Array(3 * height * width).fill(i / 3) }));
    await record.finish({
      runId: 'test-run', startedAt: new Date(Date.now() - 65_000), versions: { 'penny-train': '0.1.0' }, device: 'cpu',
      data: { train: 100, val: 20, test: 20 },
      test: { weights: 'best', images: confusion.flat().reduce((a, b) => a + b, 0), metrics: { loss: 0.5, acc: 0.95, f1Macro: 0.94, accWithin1: 0.99 }, confusion },
      mistakes, files: { log: 'output/training_logs/date_20261130-120000.log' },
    });
    return { dir: path.join(cwd, record.dir), rows, confusion };
  } finally {
    process.chdir(previous);
  }
}

describe('run record', () => {
  const written = writeRecord();

  it('writes config.yaml, a metrics.csv row per epoch, and results.json with per-class figures and the confusion matrix', async () => {
    const { dir, rows } = await written;
    expect(path.basename(dir)).toBe('date_20261130-120000');
    expect(fs.readFileSync(path.join(dir, 'config.yaml'), 'utf8')).toMatch(/^date:\n(.*\n)* {2}img_size:\n {4}- 48\n {4}- 112\n/m);
    const csv = fs.readFileSync(path.join(dir, 'metrics.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
    expect(csv[0]).toEqual(['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'val_f1', 'val_angle_mae', 'val_acc_within1', 'lr', 'seconds', 'img_per_s', 'best']);
    expect(csv.slice(1).map((r) => [Number(r[0]), Number(r[1]), r[6], r[11]])).toEqual(rows.map((r) => [r.epoch, Number(r.train_loss.toPrecision(6)), '', String(r.best)]));
    const results = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')) as ResultsJson;
    expect(results.best_epoch).toBe(3);
    expect(results.test.confusion.labels).toHaveLength(116);
    expect(results.test.confusion.labels[0]).toBe('1909');
    const first = results.test.per_class[0];   // 1909: 3 right, 1 more predicted as 1910
    expect(first).toEqual({ label: '1909', precision: 1, recall: 0.75, f1: expect.closeTo(6 / 7, 10), support: 4 });
    expect(results.test.per_class[1].precision).toBeCloseTo(0.75, 10);   // 1910: 3 right of 4 predicted
  });

  it('draws the plots as real images: a readable 116-class confusion heat map, curves, the worst misclassified images', async () => {
    const { dir } = await written;
    for (const name of ['loss.png', 'accuracy.png', 'lr.png', 'confusion.png', 'worst_val.png']) {
      const img = sharp(path.join(dir, name));
      const { width = 0, height = 0 } = await img.metadata();
      expect(width, name).toBeGreaterThan(300);
      expect(height, name).toBeGreaterThan(150);
      const { channels } = await img.stats();
      expect(Math.max(...channels.slice(0, 3).map((c) => c.stdev)), `${name} is not one flat colour`).toBeGreaterThan(10);
    }
    const { width = 0 } = await sharp(path.join(dir, 'confusion.png')).metadata();
    expect(width).toBeGreaterThan(2 * 116 * 6);   // 6 px cells at 2x: every class has a column
    expect(fs.existsSync(path.join(dir, 'angle_error.png'))).toBe(false);   // orientation only
  });

  browserCheck('shows report.html in headless Chromium: every plot loads, no console errors, a non-blank page', async () => {
    const { dir } = await written;
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const errors: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
      await page.goto(`file://${path.join(dir, 'report.html')}`);
      const images = await page.$$eval('img', (els) => els.map((e) => ({ alt: e.getAttribute('alt'), w: (e as HTMLImageElement).naturalWidth })));
      expect(images.length).toBe(5);
      for (const i of images) expect(i.w, i.alt ?? '').toBeGreaterThan(300);
      expect(await page.textContent('h1')).toContain('date');
      expect(await page.textContent('body')).toContain('acc 95.00%, macro-F1 0.9400');
      const shot = await page.screenshot({ fullPage: true });
      const { channels } = await sharp(shot).stats();
      expect(channels[0].stdev).toBeGreaterThan(10);
      fs.writeFileSync(path.join(dir, 'report-screenshot.png'), shot);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
