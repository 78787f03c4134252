// The record of one run, for people: output/runs/<model>_<YYYYMMDD-HHMMSS>/ with config.yaml (the resolved config,
// every default and override), metrics.csv (a row per epoch, appended as each ends, so a stopped run keeps its rows),
// results.json (test figures per class, confusion matrix, export figures, versions, paths), the plots as PNG and
// report.html, which shows all of it in one self-contained page.
import fs from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import type { TrainingConfig } from '../config/config.js';
import type { ExportResult } from '../export/deploy.js';
import type { Metrics } from '../train/metrics.js';
import { perClass, type ClassFigures } from '../train/metrics.js';
import type { Mistake } from '../train/mistakes.js';
import { writeFailure, writeFileAtomicSync } from '../util/atomic.js';
import { contactSheet } from './contact-sheet.js';
import { reportHtml } from './html.js';
import { accuracyPlot, angleErrorPlot, angleMaePlot, confusionPlot, lossPlot, lrPlot, renderPng } from './plots.js';

export interface EpochRow {
  epoch: number;
  train_loss: number;
  train_acc: number;
  val_loss: number;
  val_acc: number;
  val_f1: number;
  /** orientation */
  val_angle_mae?: number;
  /** orientation (+-1 bin) and date (+-1 year) */
  val_acc_within1?: number;
  lr: number;
  seconds: number;
  img_per_s: number;
  best: boolean;
}

const COLUMNS: (keyof EpochRow)[] = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'val_f1', 'val_angle_mae', 'val_acc_within1',
  'lr', 'seconds', 'img_per_s', 'best'];

/** What the end of a run knows, for results.json and the report. */
export interface RunOutcome {
  runId: string;
  startedAt: Date;
  versions: Record<string, string>;
  device: string;
  data: { train: number; val: number; test: number };
  /** resumed runs: the checkpoint and the epoch it continued from */
  resumedFrom?: { checkpoint: string; epoch: number };
  test: { weights: 'best' | 'last'; images: number; metrics: Metrics; confusion: number[][]; angleErrors?: number[] };
  /** the best epoch's worst misclassified validation images (absent when the best epoch was before a resume) */
  mistakes?: readonly Mistake[];
  export?: ExportResult;
  /** Sony's toolchain at the end of the run (imx500_compatible, set up) */
  imx500?: { dir: string; memoryBytes?: number; availableBytes?: number; fits?: boolean; converterError?: string; mctVsFp32?: ExportResult['int8VsFp32'] };
  /** every file the run wrote outside this folder: checkpoints, log, label map, ONNX */
  files: Record<string, string | undefined>;
}

export interface ResultsJson {
  model: string;
  run_id: string;
  started: string;
  finished: string;
  seconds: number;
  versions: Record<string, string>;
  device: string;
  backbone: string;
  data: RunOutcome['data'];
  resumed_from?: RunOutcome['resumedFrom'];
  select_best_by: string;
  best_epoch: number | null;
  epochs: number;
  test: Omit<Metrics, 'loss'> & { loss: number; weights: 'best' | 'last'; images: number; per_class: (ClassFigures & { label: string })[];
    confusion: { labels: string[]; counts: number[][] } };
  export: { parity_max_abs_diff: number | null; int8_vs_fp32: ExportResult['int8VsFp32'] | null; imx500: ExportResult['imx500'] | null } | null;
  /** imx500-converter's verdict and MCT's int8 figures, when the run ended with Sony's toolchain */
  imx500_converter: { dir: string; memory_bytes: number | null; available_bytes: number | null; fits: boolean | null; error: string | null;
    mct_int8_vs_fp32: ExportResult['int8VsFp32'] | null } | null;
  files: Record<string, string>;
}

export class RunRecord {
  readonly dir: string;
  private readonly rows: EpochRow[] = [];
  private readonly config: string;

  constructor(readonly cfg: TrainingConfig, stamp: string, readonly labels: Record<string, string>) {
    this.dir = path.join('output', 'runs', `${cfg.model_type}_${stamp}`);
    this.config = `# the resolved config of this run: every key, defaults and overrides applied\n${yaml.dump({ [cfg.model_type]: cfg }, { lineWidth: 120 })}`;
    this.write(this.file('config.yaml'), () => {
      fs.mkdirSync(this.dir, { recursive: true });
      writeFileAtomicSync(this.file('config.yaml'), this.config);
      fs.writeFileSync(this.file('metrics.csv'), COLUMNS.join(',') + '\n');
    });
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  private write(file: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      throw writeFailure(file, e);
    }
  }

  epoch(row: EpochRow): void {
    this.rows.push(row);
    const cell = (v: unknown) => (v === undefined ? '' : typeof v === 'number' ? String(Number(v.toPrecision(6))) : String(v));
    this.write(this.file('metrics.csv'), () => fs.appendFileSync(this.file('metrics.csv'), COLUMNS.map((c) => cell(row[c])).join(',') + '\n'));
  }

  /** results.json, the plots and report.html; returns the files written, report.html last. */
  async finish(o: RunOutcome): Promise<string[]> {
    const labelList = Object.keys(this.labels).sort((a, b) => Number(a) - Number(b)).map((k) => this.labels[k]);
    const best = [...this.rows].reverse().find((r) => r.best)?.epoch;
    const results = this.results(o, labelList, best);
    const written: string[] = [];
    const put = (name: string, data: string | Buffer) => {
      const file = this.file(name);
      this.write(file, () => writeFileAtomicSync(file, data));
      written.push(file);
    };
    put('results.json', JSON.stringify(results, null, 2) + '\n');
    const plots: [string, string][] = [];
    const plot = async (name: string, png: Promise<Buffer>, caption: string) => {
      put(name, await png);
      plots.push([name, caption]);
    };
    if (this.rows.length) {
      await plot('loss.png', renderPng(lossPlot(this.rows, best)), 'Train and validation loss per epoch');
      await plot('accuracy.png', renderPng(accuracyPlot(this.rows, best)), 'Accuracy and macro-F1 per epoch');
      if (this.rows.some((r) => r.val_angle_mae !== undefined)) await plot('angle_mae.png', renderPng(angleMaePlot(this.rows, best)), 'Validation angle error per epoch');
      await plot('lr.png', renderPng(lrPlot(this.rows)), 'Learning rate');
    }
    if (o.test.images) {
      await plot('confusion.png', renderPng(confusionPlot(o.test.confusion, labelList, `Test confusion matrix (${o.test.images} images, rows normalised)`)),
        'Test confusion matrix, each true class\'s row normalised to 1');
    }
    if (o.test.angleErrors?.length) await plot('angle_error.png', renderPng(angleErrorPlot(o.test.angleErrors)), 'Test angle error histogram');
    if (o.mistakes?.length) {
      const [height, width] = this.cfg.img_size;
      await plot('worst_val.png', contactSheet(o.mistakes, this.labels, { height, width, mean: this.cfg.mean, std: this.cfg.std }),
        `The ${o.mistakes.length} worst misclassified validation images of the best epoch, as the model read them`);
    }
    const html = reportHtml({ results, rows: this.rows, config: this.config, plots: plots.map(([name, caption]) => ({ caption, png: fs.readFileSync(this.file(name)) })) });
    put('report.html', html);
    return written;
  }

  private results(o: RunOutcome, labels: string[], best: number | undefined): ResultsJson {
    const { loss, ...figures } = o.test.metrics;
    const files: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.files)) if (v) files[k] = v;
    return {
      model: this.cfg.model_type, run_id: o.runId, started: o.startedAt.toISOString(), finished: new Date().toISOString(),
      seconds: Math.round((Date.now() - o.startedAt.getTime()) / 100) / 10, versions: o.versions, device: o.device, backbone: this.cfg.backbone,
      data: o.data, ...(o.resumedFrom && { resumed_from: o.resumedFrom }), select_best_by: this.cfg.select_best_by, best_epoch: best ?? null,
      epochs: this.cfg.num_epochs,
      test: {
        weights: o.test.weights, images: o.test.images, loss, ...figures,
        per_class: perClass(o.test.confusion).map((f, i) => ({ label: labels[i], ...f })),
        confusion: { labels, counts: o.test.confusion },
      },
      export: o.export ? { parity_max_abs_diff: o.export.parityMaxAbsDiff ?? null, int8_vs_fp32: o.export.int8VsFp32 ?? null, imx500: o.export.imx500 ?? null } : null,
      imx500_converter: o.imx500 ? { dir: o.imx500.dir, memory_bytes: o.imx500.memoryBytes ?? null, available_bytes: o.imx500.availableBytes ?? null,
        fits: o.imx500.fits ?? null, error: o.imx500.converterError ?? null, mct_int8_vs_fp32: o.imx500.mctVsFp32 ?? null } : null,
      files: { ...files, run: this.dir },
    };
  }
}
