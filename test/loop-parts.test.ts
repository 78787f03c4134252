// The training loop's parts: LR schedule, metrics, run log and progress bar.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { RunLog, timestamp } from '../src/train/log.js';
import { macroF1, Tally } from '../src/train/metrics.js';
import { lrAt } from '../src/train/schedule.js';

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

describe('run log', () => {
  it('writes every line to the log file, and the progress bar only to a terminal, never to the log', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'penny-log-')), 'run.log');
    const written: string[] = [];
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (written.push(String(chunk)), true));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const tty = process.stdout.isTTY;
    try {
      process.stdout.isTTY = true;
      const run = new RunLog(file);
      run.progress('Epoch 1/3', 5, 10, 42.5, 70);
      run.info('Epoch 1/3 Summary: ...');
      process.stdout.isTTY = false;
      run.progress('Epoch 2/3', 5, 10, 42.5, 70);
    } finally {
      process.stdout.isTTY = tty;
      write.mockRestore();
      log.mockRestore();
    }
    expect(written.join('')).toMatch(/\rEpoch 1\/3 5\/10 \[#{12} {12}\] 42\.5 img\/s ETA 1:10/);
    expect(written.join('')).not.toContain('Epoch 2/3');
    expect(fs.readFileSync(file, 'utf8')).toBe('Epoch 1/3 Summary: ...\n');
    expect(timestamp(new Date(2026, 10, 28, 4, 45, 0))).toBe('20261128-044500');
  });
});
