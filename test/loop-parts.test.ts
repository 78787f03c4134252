// The training loop's parts: LR schedule, metrics, run log and progress bar.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { RunLog, timestamp } from '../src/train/log.js';
import { angleBetween, macroF1, metricsText, Tally } from '../src/train/metrics.js';
import { softTargets } from '../src/train/targets.js';
import { lrAt } from '../src/train/schedule.js';
import { betterEpoch } from '../src/train/train.js';

describe('schedule', () => {
  const s = { baseLr: 1e-3, etaMin: 1e-5, warmupSteps: 10, totalSteps: 110 };
  it('warms up linearly, then follows a cosine down to eta_min', () => {
    expect(lrAt(0, s)).toBeCloseTo(1e-4, 12);
    expect(lrAt(9, s)).toBeCloseTo(1e-3, 12);
    expect(lrAt(10, s)).toBeCloseTo(1e-3, 12);
    expect(lrAt(60, s)).toBeCloseTo((1e-3 + 1e-5) / 2, 12);
    expect(lrAt(110, s)).toBeCloseTo(1e-5, 12);
    expect(lrAt(0, { ...s, warmupSteps: 0 })).toBeCloseTo(1e-3, 12);
  });
});

describe('metrics', () => {
  it('computes macro-F1 as sklearn does (classes in labels or predictions)', () => {
    // sklearn.metrics.f1_score([0, 1, 2, 2], [0, 2, 2, 1], average='macro') == 0.5
    expect(macroF1([0, 1, 2, 2], [0, 2, 2, 1])).toBeCloseTo(0.5, 12);
    // a class only predicted counts with F1 0: f1_score([0, 0], [0, 1], average='macro') == 1/3
    expect(macroF1([0, 0], [0, 1])).toBeCloseTo(1 / 3, 12);
    const t = new Tally();
    t.add(2, [0, 1], [0, 0]);
    t.add(1, [1, 1], [1, 1]);
    expect([t.loss, t.acc, t.count]).toEqual([1.5, 0.75, 4]);
    expect(Tally.from(JSON.parse(JSON.stringify(t.toJSON()))).f1Macro).toBe(t.f1Macro);
  });
});

describe('task metrics', () => {
  it('orientation: circular angle error from the predicted bin centre to the true angle, and +-1 bin wrapping around', () => {
    expect(angleBetween(359, 1)).toBeCloseTo(2, 12);
    expect(angleBetween(10, 190)).toBeCloseTo(180, 12);
    const t = new Tally('orientation');
    // truth 359.0 (bin 119) predicted bin 0 (centre 1.5): 2.5 deg, within one bin across the wrap;
    // truth 100.2 (bin 33) predicted bin 33 (centre 100.5): 0.3 deg; truth 45 (bin 15) predicted 20 (61.5): 16.5 deg
    t.add(1, [119, 33, 15], [0, 33, 20], [359, 100.2, 45]);
    expect(t.angleMae).toBeCloseTo((2.5 + 0.3 + 16.5) / 3, 9);
    expect(t.accWithin1).toBeCloseTo(2 / 3, 12);
    const m = t.metrics();
    expect(Object.keys(m)).toEqual(['loss', 'acc', 'f1Macro', 'angleMae', 'accWithin1']);
    expect(metricsText(m)).toMatch(/Angle MAE: 6\.43 deg, Acc \+-1: 0\.6667$/);
    expect(Tally.from(JSON.parse(JSON.stringify(t.toJSON())), 'orientation').angleMae).toBeCloseTo(t.angleMae, 12);
  });

  it('date: +-1 year does not wrap; side and mint have no task figures', () => {
    const t = new Tally('date');
    t.add(1, [0, 115, 50], [115, 114, 52]);
    expect(t.accWithin1).toBeCloseTo(1 / 3, 12);
    expect(Object.keys(t.metrics())).toEqual(['loss', 'acc', 'f1Macro', 'accWithin1']);
    expect(Object.keys(new Tally('mint').metrics())).toEqual(['loss', 'acc', 'f1Macro']);
  });

  it('soft targets: rows sum to 1, wrap around the circle for orientation, centre on the exact angle', () => {
    const t = softTargets('orientation', new Int32Array([0, 60]), [1.5, 181.5], 120, 1);
    for (const row of [t.subarray(0, 120), t.subarray(120)]) expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(t[0]).toBeGreaterThan(t[1]);
    expect(t[1]).toBeCloseTo(t[119], 6);   // bin 0's neighbours, across the wrap
    expect(t[120 + 60]).toBeGreaterThan(t[120 + 59]);
    const edge = softTargets('orientation', new Int32Array([0]), [2.9], 120, 1);   // near bin 1: it gets nearly as much
    expect(edge[1] / edge[0]).toBeGreaterThan(0.9);
    const d = softTargets('date', new Int32Array([0]), [NaN], 116, 1);
    expect(d[115]).toBeLessThan(1e-6);   // 1909's neighbour is 1910, not 2024
    expect(d[1]).toBeCloseTo(d[0] * Math.exp(-0.5), 6);
  });
});

describe('run log', () => {
  it('writes every line to the log file with its time; the bar only to a terminal, fitted to its width; plain lines without one', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'penny-log-')), 'run.log');
    const written: string[] = [];
    const printed: string[] = [];
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (written.push(String(chunk)), true));
    const log = vi.spyOn(console, 'log').mockImplementation((line) => { printed.push(String(line)); });
    const [tty, columns] = [process.stdout.isTTY, process.stdout.columns];
    const at = (label: string) => ({ label, done: 5, total: 10, loss: 1.23456, imgPerSec: 42.5, epochEta: 70, runEta: 3725 });
    try {
      process.stdout.isTTY = true;
      process.stdout.columns = 120;
      const run = new RunLog(file, false, 0);
      run.progress(at('Epoch 1/3'));
      process.stdout.columns = 50;
      run.progress(at('Epoch 1/3'));
      run.info('Epoch 1/3 Summary: ...');
      process.stdout.isTTY = false;
      run.progress(at('Epoch 2/3'));
      run.record('config: {}');
    } finally {
      [process.stdout.isTTY, process.stdout.columns] = [tty, columns];
      write.mockRestore();
      log.mockRestore();
    }
    const bars = written.join('').split('\r').filter((l) => l.startsWith('Epoch'));
    expect(bars[0]).toBe('Epoch 1/3 5/10 [############            ] loss 1.2346, 42.5 img/s, ETA 1:10, run 1:02:05\x1b[K');
    expect(bars[1].replace('\x1b[K', '').length).toBeLessThanOrEqual(49);   // a 50-column terminal: no wrap
    expect(printed).toEqual(['Epoch 1/3 Summary: ...', 'Epoch 2/3: 5/10 batches, loss 1.2346, 42.5 img/s, ETA 1:10, run 1:02:05']);
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.map((l) => l.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /, ''))).toEqual([...printed, 'config: {}']);
    expect(timestamp(new Date(2026, 10, 28, 4, 45, 0))).toBe('20261128-044500');
  });
});

describe('the best epoch', () => {
  it('is a higher select_best_by score, or the same score at a lower validation loss', () => {
    expect(betterEpoch(0.2, 5, { score: -Infinity, loss: Infinity })).toBe(true);   // the first epoch
    expect(betterEpoch(0.9, 0.5, { score: 0.8, loss: 0.1 })).toBe(true);
    expect(betterEpoch(0.8, 0.01, { score: 0.9, loss: 0.9 })).toBe(false);
    expect(betterEpoch(1, 0.02, { score: 1, loss: 0.03 })).toBe(true);   // val all right again, and surer
    expect(betterEpoch(1, 0.03, { score: 1, loss: 0.03 })).toBe(false);
    expect(betterEpoch(1, 0.04, { score: 1, loss: 0.03 })).toBe(false);
  });
});
