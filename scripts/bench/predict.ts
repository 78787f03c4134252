// `npm run bench -- predict`: the models `npm run bench -- learning` trained with configs/edge.yaml, reading coins
// they never saw (a generated set of another seed) through readCoins: side -> orientation -> date + mint, each answer
// fed by the ones before it, as a user's photo is. For fp32 and int8: accuracy of each answer and of all of them
// together, with the ROIs located on the coin (src/predict/locate.ts) and with the true ROIs from the ROI file, the
// located boxes' IoU against the true ones, and images/s at batch 1 and 16 (decode included).
// Targets (issue 12): located ROIs mean IoU >= 0.7; end-to-end accuracy located within 2 points of true ROIs; int8
// pipeline >= 200 images/s on 2 cores.
import fs from 'node:fs';
import path from 'node:path';
import { loadModels, readCoins, type CoinModels, type CoinReading, type KnownRois } from '../../src/predict/read-coin.js';
import { iou } from '../../src/predict/locate.js';
import { ORIENTATION_BIN_DEG, orientationBin } from '../../src/data/labels.js';
import type { Box } from '../../src/data/dataset.js';
import type { BenchContext, PartResult } from './index.js';
import { generate, LEARNED_MODELS } from './learning.js';

const SEED = 8;   // the learning bench trains on seed 7

interface Truth {
  file: string;
  side: string;
  angle?: number;
  year?: string;
  mint?: string;
  rois?: KnownRois;
}

function truths(data: string, n: number): Truth[] {
  const meta = JSON.parse(fs.readFileSync(path.join(data, 'metadata.json'), 'utf8')) as Record<string, unknown>[];
  const rois = JSON.parse(fs.readFileSync(path.join(data, 'roi_coordinates.json'), 'utf8')) as Record<string, { date_roi: Box; mint_mark_roi: Box }>;
  return meta.slice(0, n).map((e) => {
    const r = rois[String(e.uid).replace(/\.[^.]+$/, '')];
    return e.side === 'obverse'
      ? { file: path.join(data, String(e.uid)), side: 'obverse', angle: e.angle as number, year: String(e.year), mint: String(e.mint_mark), rois: { date: r.date_roi, mint: r.mint_mark_roi } }
      : { file: path.join(data, String(e.uid)), side: String(e.type) };
  });
}

/** |a - b| on the circle of bins, in bins */
const binDistance = (a: number, b: number) => {
  const n = 360 / ORIENTATION_BIN_DEG, d = Math.abs(a - b) % n;
  return Math.min(d, n - d);
};

function score(readings: CoinReading[], truth: Truth[]) {
  let side = 0, obverse = 0, angleErr = 0, within1 = 0, date = 0, mint = 0, all = 0;
  const ious = { date: [] as number[], mint: [] as number[] };
  readings.forEach((r, i) => {
    const t = truth[i];
    const sideOk = r.side?.label === t.side;
    side += Number(sideOk);
    if (t.side !== 'obverse') {
      all += Number(sideOk);
      return;
    }
    obverse++;
    const predBin = r.angle === undefined ? undefined : orientationBin(r.angle);
    const d = predBin === undefined ? 360 / ORIENTATION_BIN_DEG / 2 : binDistance(predBin, orientationBin(t.angle!));
    angleErr += d * ORIENTATION_BIN_DEG;
    within1 += Number(d <= 1);
    const dateOk = r.date?.label === t.year, mintOk = r.mint?.label === t.mint;
    date += Number(dateOk);
    mint += Number(mintOk);
    all += Number(sideOk && d <= 1 && dateOk && mintOk);
    for (const k of ['date', 'mint'] as const) if (r[k]?.roiSource === 'located') ious[k].push(iou(r[k]!.roi, t.rois![k]!));
  });
  const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined);
  return {
    images: readings.length, obverses: obverse, errors: readings.filter((r) => r.error).length,
    side: side / readings.length, angleMae: angleErr / obverse, within1: within1 / obverse, date: date / obverse, mint: mint / obverse,
    all: all / readings.length, iouDate: mean(ious.date), iouMint: mean(ious.mint),
  };
}

/** readCoins over `files`, `passes` times: the readings (the same every pass) and the median images/s. */
async function timed(models: CoinModels, files: string[], options: Parameters<typeof readCoins>[2], passes = 1) {
  let readings: CoinReading[] = [];
  const rates: number[] = [];
  for (let p = 0; p < passes; p++) {
    const t0 = performance.now();
    readings = await readCoins(files, models, options);
    rates.push(files.length / ((performance.now() - t0) / 1000));
  }
  return { readings, perSecond: rates.sort((a, b) => a - b)[(passes - 1) >> 1], rates };
}

/** Passes timed at batch 16 (the median is reported): one pass over 600 images is ~3 s, and these machines drift. */
const PASSES = 3;

export async function runPredict(ctx: BenchContext): Promise<PartResult> {
  const dir = process.env.BENCH_PREDICT_MODELS ?? LEARNED_MODELS;
  if (!fs.existsSync(dir)) throw new Error(`no models in ${dir}: run \`npm run bench -- learning\` first (or set BENCH_PREDICT_MODELS to a models folder)`);
  const count = ctx.quick ? 100 : 600;
  const data = generate(count, ctx.log, SEED);
  const truth = truths(data, count);
  const files = truth.map((t) => t.file);
  const pct = (x: number | undefined) => (x === undefined ? '' : (100 * x).toFixed(2));
  const rows: string[][] = [];
  const results: unknown[] = [];
  for (const precision of ['fp32', 'int8'] as const) {
    const models = await loadModels([dir], { precision, threads: ctx.threads });
    try {
      await readCoins(files.slice(0, 16), models, { batchSize: 16 });   // warm-up: sessions, thread pools, JIT
      const located = await timed(models, files, { batchSize: 16 }, PASSES);
      const known = await timed(models, files, { batchSize: 16, roi: truth.map((t) => t.rois) }, PASSES);
      const single = await timed(models, files.slice(0, ctx.quick ? 32 : 128), { batchSize: 1 });
      for (const [rois, r] of [['located', located], ['true', known]] as const) {
        const s = score(r.readings, truth);
        rows.push([`${precision} ${rois} ROIs`, `${s.images} (${s.obverses})`, pct(s.side), s.angleMae.toFixed(2), pct(s.within1), pct(s.date), pct(s.mint), pct(s.all),
          s.iouDate === undefined ? '' : `${s.iouDate.toFixed(3)} / ${s.iouMint!.toFixed(3)}`,
          rois === 'located' ? `${single.perSecond.toFixed(1)} / ${r.perSecond.toFixed(1)}` : `- / ${r.perSecond.toFixed(1)}`]);
        results.push({ precision, rois, ...s, perSecondBatch16: r.perSecond, passesBatch16: r.rates, ...(rois === 'located' && { perSecondBatch1: single.perSecond }) });
      }
      ctx.log(`${precision}: models ${Object.values(models).map((m) => path.basename(m.file)).join(', ')}`);
    } finally {
      await Promise.all(Object.values(models).map((m) => m.close()));
    }
  }
  return {
    head: ['pipeline', 'images (obverse)', 'side %', 'angle MAE deg', 'angle +-1 %', 'date %', 'mint %', 'all right %', 'IoU date / mint', 'img/s b1 / b16'],
    rows,
    notes: [
      `models: the newest <model>_*_<precision>.onnx under ${dir} (configs/edge.yaml, trained by \`npm run bench -- learning\` on seed 7); ` +
      `images: ${count} generated pennies of seed ${SEED} in ${data}, never seen in training`,
      'each answer is fed by the ones before it (side -> angle -> upright date and mint ROIs); "all right": side right and, for obverses, ' +
      'the angle within one 3-degree bin and date and mint right. IoU: located boxes against the ROI file\'s, on the obverses',
      `img/s: readCoins end to end (decode, coin finding, four models) on ${ctx.threads} threads; batch 16: the median of ${PASSES} passes; ` +
      `batch 1: one pass over the first ${ctx.quick ? 32 : 128} images`,
    ],
    data: { models: dir, data, results },
  };
}
