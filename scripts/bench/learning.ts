// `npm run bench -- learning`: all four models trained from scratch on generated pennies with the shipped edge recipe
// (configs/edge.yaml, backbone cnn_small) on this CPU, each read the way its users measure it, plus the variants that
// show what each part of the recipe buys. Targets (issue 9), on the generated test split, each run <= 15 minutes:
//   side acc >= 99%; orientation angle MAE <= 1.2 deg and accWithin1 >= 99%; date acc >= 99% and accWithin1 >= 99.5%;
//   mint acc >= 99%; for the four main runs the int8 ONNX within 1 point of fp32 and top-1 agreement >= 99%.
// BENCH_LEARNING_RUNS=date,date-flat runs only the named runs (names: the table's first column).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { train, type TrainResult } from '../../src/index.js';
import type { BenchContext, PartResult } from './index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUDGET_MINUTES = 15;
const SEED = 7;

interface Run {
  name: string;
  model: 'side' | 'orientation' | 'date' | 'mint';
  /** images of the generated set this run reads (the first N; 60% obverse, which orientation/date/mint read) */
  images: number;
  /** changes to the model's edge.yaml section */
  edit?: Record<string, unknown>;
  /** the main run of its model: targets apply, int8 is exported and compared */
  main: boolean;
  why: string;
}

/**
 * How many images each model reads: side tells five designs apart over the whole set; orientation, date and mint
 * read the obverses only (60%). Date has 116 classes but reads digits, so ~20 obverses per year are enough.
 */
const RUNS: Run[] = [
  { name: 'side', model: 'side', images: 4000, main: true, why: 'five designs by faint relief: more coins than the obverse-only models' },
  { name: 'orientation', model: 'orientation', images: 5000, main: true, why: 'rotate_relabel makes every coin show every angle; 3,000 obverses' },
  { name: 'orientation-no-relabel', model: 'orientation', images: 5000, main: false, edit: { 'augment.rotate_relabel': false, 'augment.rotation_deg': 0, label_smoothing_bins: 0 }, why: 'the same without rotate_relabel and soft labels: each angle seen only as drawn' },
  { name: 'orientation-bf16', model: 'orientation', images: 5000, main: false, edit: { precision: 'bf16' }, why: 'the main orientation run in bf16 autocast (a CPU with bf16 instructions): its minutes and figures beside fp32\'s' },
  { name: 'date', model: 'date', images: 5000, main: true, why: '3,000 obverses, ~26 per year: the digits are shared across years, and the jittered boxes need more of them' },
  { name: 'date-no-align', model: 'date', images: 5000, main: false, edit: { align_roi: false }, why: 'the ROI as it lies (digits at any angle)' },
  { name: 'date-flat', model: 'date', images: 5000, main: false, edit: { date_head: 'flat' }, why: 'one 116-way head' },
  { name: 'mint', model: 'mint', images: 4000, main: true, why: 'four marks, 600 obverses each' },
];

/** The main runs' exported models (fp32 and int8) are kept here, models/<model>/ style, for `npm run bench -- predict`. */
export const LEARNED_MODELS = path.join(os.tmpdir(), 'penny-learning-models');

/** A generated set of `count` pennies (cached in the temp folder by count and seed). */
export function generate(count: number, log: (m: string) => void, seed = SEED): string {
  const dir = path.join(os.tmpdir(), `penny-synth-${count}-seed${seed}`);
  if (fs.existsSync(path.join(dir, 'metadata.json'))) return dir;
  log(`generating ${count} synthetic pennies into ${dir}`);
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'synth-pennies.ts'), '--count', String(count), '--out', dir, '--seed', String(seed)],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`synth-pennies failed (${r.status})`);
  log(`generated in ${((performance.now() - t0) / 60_000).toFixed(1)} min`);
  return dir;
}

/** The first `n` entries of the generated metadata, as the run's own metadata file. */
function subset(data: string, n: number, work: string): string {
  const all = JSON.parse(fs.readFileSync(path.join(data, 'metadata.json'), 'utf8')) as unknown[];
  const file = path.join(work, `metadata-${n}.json`);
  if (!fs.existsSync(file)) fs.writeFileSync(file, JSON.stringify(all.slice(0, n)));
  return file;
}

/** configs/edge.yaml with the run's model section pointed at the data and edited. */
function configFor(run: Run, data: string, metadata: string, work: string, quick: boolean): string {
  const doc = yaml.load(fs.readFileSync(path.join(ROOT, 'configs', 'edge.yaml'), 'utf8')) as Record<string, Record<string, unknown>>;
  const s = doc[run.model];
  Object.assign(s, { data_root: data, metadata_json_path: metadata, roi_json_path: path.join(data, 'roi_coordinates.json'), quantize: run.main });
  if (quick) s.num_epochs = 3;
  for (const [k, v] of Object.entries(run.edit ?? {})) {
    const [a, b] = k.split('.');
    if (b) (s[a] as Record<string, unknown>)[b] = v;
    else s[a] = v;
  }
  const file = path.join(work, `${run.name}.yaml`);
  fs.writeFileSync(file, yaml.dump(doc));
  return file;
}

const pct = (x: number | undefined) => (x === undefined ? '' : (100 * x).toFixed(2));

function verdict(run: Run, r: TrainResult, minutes: number): string {
  if (!run.main) return '';
  const t = r.test;
  const checks: [string, boolean][] = [[`<= ${BUDGET_MINUTES} min`, minutes <= BUDGET_MINUTES]];
  if (run.model === 'orientation') checks.push(['MAE <= 1.2', t.angleMae! <= 1.2], ['+-1 >= 99%', t.accWithin1! >= 0.99]);
  else if (run.model === 'date') checks.push(['acc >= 99%', t.acc >= 0.99], ['+-1 >= 99.5%', t.accWithin1! >= 0.995]);
  else checks.push(['acc >= 99%', t.acc >= 0.99]);
  const q = r.int8VsFp32;
  checks.push(['int8', q !== undefined && q.fp32.acc - q.int8.acc <= 0.01 && q.top1Agreement >= 0.99]);
  const missed = checks.filter(([, ok]) => !ok).map(([n]) => n);
  return missed.length ? `MISS ${missed.join(', ')}` : 'ok';
}

function keepModels(model: string, r: TrainResult): void {
  const dir = path.join(LEARNED_MODELS, model);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const f of [r.onnx.fp32, r.onnx.int8]) if (f) fs.copyFileSync(f, path.join(dir, path.basename(f)));
}

export async function runLearning(ctx: BenchContext): Promise<PartResult> {
  const only = process.env.BENCH_LEARNING_RUNS?.split(',').filter(Boolean);
  const runs = RUNS.filter((r) => !only || only.includes(r.name));
  if (!runs.length) throw new Error(`BENCH_LEARNING_RUNS names no run; runs: ${RUNS.map((r) => r.name).join(', ')}`);
  const count = Math.max(...runs.map((r) => (ctx.quick ? 600 : r.images)));
  const data = generate(Math.max(count, ctx.quick ? 600 : 5000), ctx.log);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-learning-'));
  const home = process.cwd();
  const rows: string[][] = [];
  const results: unknown[] = [];
  try {
    process.chdir(work);
    for (const run of runs) {
      const images = ctx.quick ? 600 : run.images;
      const cfg = configFor(run, data, subset(data, images, work), work, ctx.quick);
      const section = (yaml.load(fs.readFileSync(cfg, 'utf8')) as Record<string, Record<string, unknown>>)[run.model];
      ctx.log(`${run.name}: ${images} images, ${section.num_epochs} epochs at ${JSON.stringify(section.img_size)}`);
      const t0 = performance.now();
      let counts = '';
      const r = await train(run.model, {
        configFile: cfg, quiet: true, threads: ctx.threads,
        onEpoch: (e) => ctx.log(`${run.name} epoch ${e.epoch}/${e.epochs}: val acc ${e.valAcc.toFixed(4)}` +
          (e.valAngleMae !== undefined ? `, MAE ${e.valAngleMae.toFixed(2)} deg` : '') +
          (e.valAccWithin1 !== undefined ? `, +-1 ${e.valAccWithin1.toFixed(4)}` : '') + ` (${e.seconds.toFixed(1)} s)`),
      });
      const minutes = (performance.now() - t0) / 60_000;
      if (run.main) keepModels(run.model, r);
      counts = fs.readFileSync(r.log, 'utf8').match(/Loaded PennyDataset: (\d+) train \/ (\d+) val \/ (\d+) test/)?.slice(1).join('/') ?? '?';
      const q = r.int8VsFp32;
      rows.push([run.name, counts, String(section.num_epochs), minutes.toFixed(1), pct(r.test.acc),
        r.test.angleMae === undefined ? '' : r.test.angleMae.toFixed(2), pct(r.test.accWithin1),
        q ? `${pct(q.int8.acc)} / ${pct(q.top1Agreement)}${q.int8.angleMae === undefined ? '' : ` (MAE ${q.int8.angleMae.toFixed(2)})`}` : '', verdict(run, r, minutes)]);
      results.push({ run: run.name, model: run.model, images, splits: counts, epochs: section.num_epochs, imgSize: section.img_size, edit: run.edit ?? {}, why: run.why, minutes, test: r.test, int8VsFp32: q, bestValF1: r.bestValF1 });
    }
  } finally {
    process.chdir(home);
  }
  return {
    head: ['run', 'train/val/test', 'epochs', 'minutes', 'test acc %', 'angle MAE deg', 'acc +-1 %', 'int8 acc / agree %', 'target'],
    rows,
    notes: [
      `synthetic pennies (scripts/synth-pennies.ts, seed ${SEED}) in ${data}; each run reads the first N images (side 4,000, orientation and date 5,000, mint 4,000): ${runs.map((r) => `${r.name}: ${r.why}`).join('; ')}`,
      `configs/edge.yaml (cnn_small from random init); ${ctx.threads} threads; minutes include evaluation and, for the main runs, the fp32 + int8 export and their comparison`,
      `the main runs' models are kept in ${LEARNED_MODELS} for \`npm run bench -- predict\``,
    ],
    data: { data, results },
  };
}
