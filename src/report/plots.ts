// The run's plots as vega-lite specs, rendered to SVG by vega (headless, no canvas) and rasterised to PNG by sharp.
import sharp from 'sharp';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { EpochRow } from './record.js';

type Spec = vl.TopLevelSpec;
type Layer = Extract<Spec, { layer: unknown }>['layer'][number];

const BASE = { background: 'white', config: { font: 'DejaVu Sans, Arial, sans-serif' } } as const;

/** PNG bytes of a vega-lite spec, drawn at 2x for sharp text. */
export async function renderPng(spec: Spec): Promise<Buffer> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await sharp(Buffer.from(await view.toSVG(2))).png().toBuffer();
  } finally {
    view.finalize();
  }
}

/** One line per series over the epochs, best epoch marked by a rule. */
function curves(title: string, rows: EpochRow[], series: [string, keyof EpochRow][], y: string, bestEpoch?: number, log = false): Spec {
  const values = rows.flatMap((r) => series.flatMap(([name, field]) =>
    typeof r[field] === 'number' && Number.isFinite(r[field]) ? [{ epoch: r.epoch, series: name, value: r[field] }] : []));
  const layers: Layer[] = [{
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', axis: { tickMinStep: 1, format: 'd' } },
      y: { field: 'value', type: 'quantitative', title: y, scale: log ? { type: 'log' } : { zero: false } },
      color: { field: 'series', type: 'nominal', title: null, sort: series.map(([n]) => n) },
    },
  }];
  if (bestEpoch !== undefined) {
    layers.push({ data: { values: [{ epoch: bestEpoch }] }, mark: { type: 'rule', strokeDash: [4, 4], color: '#888' }, encoding: { x: { field: 'epoch', type: 'quantitative' } } });
  }
  return { ...BASE, title, width: 480, height: 260, data: { values }, layer: layers };
}

export function lossPlot(rows: EpochRow[], bestEpoch?: number): Spec {
  return curves('Loss (dashed: best epoch)', rows, [['train', 'train_loss'], ['val', 'val_loss']], 'loss', bestEpoch);
}

export function accuracyPlot(rows: EpochRow[], bestEpoch?: number): Spec {
  return curves('Accuracy and macro-F1 (dashed: best epoch)', rows, [
    ['train acc', 'train_acc'], ['val acc', 'val_acc'], ['val F1 (macro)', 'val_f1'], ['val acc ±1', 'val_acc_within1'],
  ], 'fraction', bestEpoch);
}

export function angleMaePlot(rows: EpochRow[], bestEpoch?: number): Spec {
  return curves('Validation angle MAE (degrees)', rows, [['val angle MAE', 'val_angle_mae']], 'degrees', bestEpoch);
}

export function lrPlot(rows: EpochRow[]): Spec {
  return curves('Learning rate at the end of each epoch', rows, [['lr', 'lr']], 'learning rate', undefined, true);
}

/**
 * The confusion matrix normalised by row (each true class sums to 1), as a heat map. Past 30 classes (date's 116,
 * orientation's 120) the cells shrink and every tenth label is written, so the diagonal and its neighbours read.
 */
export function confusionPlot(confusion: number[][], labels: string[], title: string): Spec {
  const n = labels.length;
  const values = confusion.flatMap((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.flatMap((count, p) => (count ? [{ truth: labels[t], pred: labels[p], count, rate: count / total }] : []));
  });
  const cell = n <= 10 ? 48 : n <= 30 ? 20 : 6;
  const every = n <= 30 ? 1 : 10;
  const shown = labels.filter((_, i) => i % every === 0);
  const axis = { values: shown, labelFontSize: n <= 30 ? 11 : 9 };
  const layers: Layer[] = [{
    mark: { type: 'rect' },
    encoding: {
      x: { field: 'pred', type: 'ordinal', sort: labels, scale: { domain: labels }, title: 'predicted', axis: { ...axis, labelAngle: -45 } },
      y: { field: 'truth', type: 'ordinal', sort: labels, scale: { domain: labels }, title: 'true', axis },
      color: { field: 'rate', type: 'quantitative', scale: { scheme: 'blues', domain: [0, 1] }, title: 'share of row' },
      tooltip: [{ field: 'truth' }, { field: 'pred' }, { field: 'count' }],
    },
  }];
  if (n <= 10) {
    layers.push({
      mark: { type: 'text', fontSize: 12 },
      encoding: {
        x: { field: 'pred', type: 'ordinal', sort: labels }, y: { field: 'truth', type: 'ordinal', sort: labels },
        text: { field: 'count', type: 'quantitative' },
        color: { condition: { test: 'datum.rate > 0.5', value: 'white' }, value: 'black' },
      },
    });
  }
  return { ...BASE, title, width: cell * n, height: cell * n, data: { values }, layer: layers };
}

/** Orientation: how far each test prediction's bin centre lies from the true angle, in degrees (a log count axis shows the rare far misses). */
export function angleErrorPlot(errors: number[]): Spec {
  return {
    ...BASE, title: 'Test angle error: true angle - predicted bin centre (degrees)', width: 480, height: 240,
    data: { values: errors.map((e) => ({ error: e })) },
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'error', type: 'quantitative', bin: { step: 1.5, extent: [-180, 180] }, title: 'degrees', axis: { values: [-180, -135, -90, -45, 0, 45, 90, 135, 180] } },
      y: { aggregate: 'count', type: 'quantitative', title: 'images', scale: { type: 'symlog' }, axis: { tickMinStep: 1, format: 'd' } },
    },
  };
}
