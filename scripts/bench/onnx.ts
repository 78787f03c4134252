// `onnx` part (issue 4): what deployment gets. ViT-B/32 + head exported as penny-train writes it with the master
// config (fp32, IMX500 pass when the side section asks for it) and quantized to int8 two ways (static QDQ with
// min-max calibration; dynamic): file sizes, onnxruntime-node img/s at batch 1 and 8 (same intra-op threads for
// all three), and top-1 agreement of each int8 model with fp32. ViT-B/32 here is random init (no pretrained weights on
// this machine), so agreement is also measured on a clip_vit_tiny trained in this run, on the upright mint-mark ROIs.
// Images: a generated set of its own seed, so the tiny model's held-out split is a couple of hundred images, not
// data_examples' 36.
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { buildIndex } from '../../src/data/dataset.js';
import { allBatches, evalOptions, type Batch } from '../../src/data/loader.js';
import {
  createSession, encodeModel, makeImx500Compatible, modelToOnnx, quantizeInt8, runOnnx, top1Agreement, type ModelProto,
} from '../../src/export/index.js';
import { createModel, setNumThreads, type PennyModel } from '../../src/index.js';
import { argmaxRows } from '../../src/train/metrics.js';
import { exampleConfig, fmt, pct, ratioStr, specOf, verdict } from './common.js';
import type { BenchContext, PartResult } from './index.js';
import { generate } from './learning.js';
import { summarize, type Stats } from './stats.js';

const CLASSES = 5;   // ViT-B/32's head: the side model's
const MINT_CLASSES = 4;   // the tiny stand-in's: D, S, P, none
const SIZE_TARGET = 0.27;
const SPEED_TARGET = 2.5;
const AGREE_TARGET = 0.99;
const SEED = 9;   // learning trains on seed 7, predict reads seed 8

const PLAN = {
  full: { images: 1500, calibration: 128, agreeImages: 64, b1: { warmup: 3, runs: 20 }, b8: { warmup: 3, runs: 30 }, tinySteps: 3000 },
  quick: { images: 600, calibration: 32, agreeImages: 64, b1: { warmup: 2, runs: 5 }, b8: { warmup: 1, runs: 3 }, tinySteps: 600 },
};

interface Variant {
  name: string;
  bytes: Uint8Array;
  session?: ort.InferenceSession;
  b1?: Stats;
  b8?: Stats;
  agreement?: number;
  accuracy?: number;
  /** how many distinct classes its top-1 takes on the images (1: agreement says little) */
  classesPredicted?: number;
  /** max |logit - fp32 logit| over the images */
  maxLogitDiff?: number;
}

async function logitsOf(session: ort.InferenceSession, data: Batch[]): Promise<Float32Array> {
  const out: number[] = [];
  for (const b of data) out.push(...await runOnnx(session, b.pixels, b.shape));
  return Float32Array.from(out);
}

/** Runs of one variant in a row per round: the first untimed, the rest timed. */
const BLOCK = 4;

/**
 * Times `run(v)` for every variant in turn, `runs` timed runs each after `warmup` untimed rounds, in blocks: a round
 * runs each variant BLOCK times in a row and times all but the first. Rounds interleave the variants, so drift hits
 * all alike; blocks time a model as it serves, its weights warm: a run straight after another model's was ~40 ms
 * slower at ViT-B/32 batch 8 for either precision (fp32 417 vs 375 ms, static int8 174 vs 129 ms, 2026-12-07),
 * which pulled their ratio from 2.9 to 2.4.
 */
async function roundRobin(variants: Variant[], run: (v: Variant) => Promise<unknown>, { warmup, runs }: { warmup: number; runs: number }): Promise<Stats[]> {
  const samples = variants.map(() => [] as number[]);
  for (let r = 0; samples.some((s) => s.length < runs); r++) {
    for (let i = 0; i < variants.length; i++) {
      for (let k = 0; k < BLOCK; k++) {
        const t0 = performance.now();
        await run(variants[i]);
        if (r >= warmup && k > 0 && samples[i].length < runs) samples[i].push(performance.now() - t0);
      }
    }
  }
  return samples.map((s) => summarize(s, warmup));
}

/** fp32 (as exported), int8 dynamic, int8 static min-max. */
async function variantsOf(fp32: ModelProto, calibration: Batch[], threads: number): Promise<Variant[]> {
  const cal = calibration.map((b) => ({ data: b.pixels, shape: b.shape }));
  const dynamic = await quantizeInt8(fp32, { mode: 'dynamic' });
  const stat = await quantizeInt8(fp32, { mode: 'static', method: 'minmax', calibration: cal, threads });
  return [
    { name: 'fp32', bytes: encodeModel(fp32) },
    { name: 'int8 dynamic', bytes: encodeModel(dynamic.model) },
    { name: 'int8 static minmax', bytes: encodeModel(stat.model) },
  ];
}

/** Agreement (and accuracy when labels are given) of each int8 variant with fp32 on `data`. */
async function agree(variants: Variant[], data: Batch[], classes: number): Promise<void> {
  const labels = data.flatMap((b) => [...b.labels]);
  let ref: Float32Array | null = null;
  for (const v of variants) {
    const logits = await logitsOf(v.session!, data);
    ref ??= logits;
    v.agreement = top1Agreement(logits, ref, classes);
    const pred = argmaxRows(logits, labels.length, classes);
    v.accuracy = labels.filter((l, i) => l === pred[i]).length / labels.length;
    v.classesPredicted = new Set(pred).size;
    v.maxLogitDiff = logits.reduce((m, x, i) => Math.max(m, Math.abs(x - ref![i])), 0);
  }
}

function flatImages(bs: Batch[]): { pixels: Float32Array; labels: Int32Array; per: number } {
  const per = bs[0].pixels.length / bs[0].labels.length;
  const pixels = new Float32Array(bs.reduce((n, b) => n + b.pixels.length, 0));
  let o = 0;
  for (const b of bs) { pixels.set(b.pixels, o); o += b.pixels.length; }
  return { pixels, labels: Int32Array.from(bs.flatMap((b) => [...b.labels])), per };
}

/** clip_vit_tiny trained on the in-memory train images (eval transform), AdamW lr 1e-3, batches of 32. */
async function trainTiny(train: Batch[], steps: number, threads: number, seed = 0): Promise<PennyModel> {
  const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: MINT_CLASSES, seed, threads });
  const { pixels, labels, per } = flatImages(train);
  const n = labels.length, B = 32;
  let order = Array.from({ length: n }, (_, i) => i);
  let s = seed + 1;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let step = 0, pos = n; step < steps; step++) {
    if (pos + B > n) {
      order = order.map((v) => [rand(), v] as const).sort((a, b) => a[0] - b[0]).map(([, v]) => v);
      pos = 0;
    }
    const x = new Float32Array(B * per), y = new Int32Array(B);
    for (let i = 0; i < B; i++, pos++) {
      x.set(pixels.subarray(order[pos] * per, (order[pos] + 1) * per), i * per);
      y[i] = labels[order[pos]];
    }
    await m.trainStep(x, [B, ...m.inputShape], y, { lr: 1e-3 });
  }
  return m;
}

export async function runOnnxPart(ctx: BenchContext): Promise<PartResult> {
  const plan = ctx.quick ? PLAN.quick : PLAN.full;
  setNumThreads(ctx.threads);
  const set = generate(plan.images, ctx.log, SEED);
  // a section of the master config pointed at the generated set
  const configOn = (key: string) => ({ ...exampleConfig(key), data_root: set, metadata_json_path: path.join(set, 'metadata.json'),
    roi_json_path: path.join(set, 'roi_coordinates.json') });
  const cfg = configOn('side');
  const index = await buildIndex(cfg);
  const exportOnnx = (m: PennyModel) => {
    const fp32 = modelToOnnx(m);
    return cfg.imx500_compatible ? makeImx500Compatible(fp32, { batch: 'dynamic' }) : fp32;
  };
  const notes: string[] = [];

  // --- ViT-B/32 + head, random init.
  const spec = specOf(cfg);
  const calCount = Math.min(plan.calibration, index.train.length);
  // Calibration from the head of the train split (as penny-train does); agreement on other images: test, val, then
  // the rest of train.
  const calibration = await allBatches(index.train.slice(0, calCount), evalOptions({ batchSize: 8, spec, workers: 2 }));
  const agreeSamples = [...index.test, ...index.val, ...index.train.slice(calCount)].slice(0, plan.agreeImages);
  const agreeData = await allBatches(agreeSamples, evalOptions({ batchSize: 8, spec, workers: 2 }));
  ctx.log('creating coin_clip_vit_b32 (random init, seed 0) and exporting it');
  const model = await createModel({ backbone: 'coin_clip_vit_b32', numClasses: CLASSES, seed: 0, threads: ctx.threads });
  let fp32: ModelProto;
  let parity = 0;
  try {
    fp32 = exportOnnx(model);
    const ref = await model.predict(agreeData[0].pixels, agreeData[0].shape);
    const ort = await runOnnx(fp32, agreeData[0].pixels, agreeData[0].shape, { threads: ctx.threads });
    for (let i = 0; i < ref.length; i++) parity = Math.max(parity, Math.abs(ref[i] - ort[i]));
  } finally {
    model.dispose();
  }
  ctx.log(`quantizing: dynamic, static min-max on ${calCount} train images`);
  const variants = await variantsOf(fp32, calibration, ctx.threads);
  try {
    for (const v of variants) v.session = await createSession(v.bytes, { threads: ctx.threads });
    const one = agreeData[0].pixels.subarray(0, agreeData[0].pixels.length / agreeData[0].labels.length);
    const shape1 = [1, ...agreeData[0].shape.slice(1)];
    ctx.log(`onnxruntime b1: ${plan.b1.runs} timed runs of each of the 3 models, in blocks of ${BLOCK - 1} after one untimed`);
    const b1 = await roundRobin(variants, (v) => runOnnx(v.session!, one, shape1), plan.b1);
    ctx.log(`onnxruntime b8: ${plan.b8.runs} timed runs of each of the 3 models, in blocks of ${BLOCK - 1} after one untimed`);
    const b8 = await roundRobin(variants, (v) => runOnnx(v.session!, agreeData[0].pixels, agreeData[0].shape), plan.b8);
    variants.forEach((v, i) => { v.b1 = b1[i]; v.b8 = b8[i]; });
    ctx.log(`top-1 agreement on ${agreeSamples.length} images`);
    await agree(variants, agreeData, CLASSES);
  } finally {
    for (const v of variants) await v.session?.release();
    for (const v of variants) v.session = undefined;
  }

  // --- clip_vit_tiny trained here (64 px): agreement on held-out images (val + test) of a model that has learned.
  // The stand-in reads the mint mark's ROI upright (as configs/edge.yaml's mint model does): a task a 64 px tiny ViT
  // learns from these images. On side (five designs told apart by faint relief, which 64 px loses) it reached 47.6%
  // held-out: its near-ties, not int8, decided its agreement (static 98.2%, dynamic 98.5%, 2026-12-07).
  const mintCfg = { ...configOn('mint'), align_roi: true, roi_pad: 0.25 };
  const mintIndex = await buildIndex(mintCfg);
  ctx.log(`clip_vit_tiny: training ${plan.tinySteps} steps on the mint train split, in memory`);
  const tinySpec = specOf(mintCfg, 64);
  const tinyTrain = await allBatches(mintIndex.train, evalOptions({ batchSize: 32, spec: tinySpec, workers: 2 }));
  const heldOut = await allBatches([...mintIndex.val, ...mintIndex.test], evalOptions({ batchSize: 8, spec: tinySpec, workers: 2 }));
  const tinyCal = await allBatches(mintIndex.train.slice(0, calCount), evalOptions({ batchSize: 8, spec: tinySpec, workers: 2 }));
  const tiny = await trainTiny(tinyTrain, plan.tinySteps, ctx.threads);
  let tinyFp32: ModelProto;
  let tinyTrainAcc = 0;
  try {
    let right = 0, n = 0;
    for (const b of tinyTrain) {
      const pred = argmaxRows(await tiny.predict(b.pixels, b.shape), b.labels.length, MINT_CLASSES);
      right += b.labels.filter((l, i) => l === pred[i]).length;
      n += b.labels.length;
    }
    tinyTrainAcc = right / n;
    tinyFp32 = exportOnnx(tiny);
  } finally {
    tiny.dispose();
  }
  const tinyVariants = await variantsOf(tinyFp32, tinyCal, ctx.threads);
  try {
    for (const v of tinyVariants) v.session = await createSession(v.bytes, { threads: ctx.threads });
    await agree(tinyVariants, heldOut, MINT_CLASSES);
  } finally {
    for (const v of tinyVariants) await v.session?.release();
  }
  const heldOutCount = heldOut.reduce((n, b) => n + b.labels.length, 0);

  // --- table
  const f = variants[0];
  const mb = (v: Variant) => v.bytes.length / 2 ** 20;
  const imgS = (s: Stats, b: number) => (b * 1000) / s.median;
  const rows: string[][] = [];
  const data: unknown[] = [];
  for (const v of variants) {
    const size = v.bytes.length / f.bytes.length;
    const r1 = f.b1!.median / v.b1!.median, r8 = f.b8!.median / v.b8!.median;
    const targets: string[] = [];
    if (v !== f) {
      targets.push(`size <= ${SIZE_TARGET}x ${verdict(size <= SIZE_TARGET)}`);
      if (v.name.includes('static')) targets.push(`b8 >= ${SPEED_TARGET}x ${verdict(r8 >= SPEED_TARGET)}`);
      // a model whose top-1 is one class for every image agrees trivially: no verdict then
      targets.push(f.classesPredicted! < 2 ? 'agree: trivial (fp32 top-1 is 1 class)' : `agree >= ${AGREE_TARGET * 100}% ${verdict(v.agreement! >= AGREE_TARGET)}`);
    }
    rows.push([`ViT-B/32 ${v.name}`, fmt(mb(v)), v === f ? '' : ratioStr(size, '<='), fmt(imgS(v.b1!, 1)), pct(v.b1!),
      v === f ? '' : ratioStr(r1), fmt(imgS(v.b8!, 8)), pct(v.b8!), v === f ? '' : ratioStr(r8),
      v === f ? '' : `${(v.agreement! * 100).toFixed(1)}%`, targets.join('; ')]);
    data.push({ model: 'coin_clip_vit_b32', variant: v.name, bytes: v.bytes.length, sizeRatio: size, b1: v.b1, b8: v.b8,
      b1ImgPerSec: imgS(v.b1!, 1), b8ImgPerSec: imgS(v.b8!, 8), b1Ratio: r1, b8Ratio: r8, agreement: v.agreement, classesPredicted: v.classesPredicted, maxLogitDiff: v.maxLogitDiff, images: agreeSamples.length });
  }
  const tf = tinyVariants[0];
  for (const v of tinyVariants) {
    if (v === tf) continue;
    rows.push([`tiny (trained) ${v.name}`, fmt(mb(v)), ratioStr(v.bytes.length / tf.bytes.length, '<='), '', '', '', '', '', '',
      `${(v.agreement! * 100).toFixed(1)}%`, `agree >= ${AGREE_TARGET * 100}% ${verdict(v.agreement! >= AGREE_TARGET)}`]);
  }
  for (const v of tinyVariants) {
    data.push({ model: 'clip_vit_tiny', variant: v.name, bytes: v.bytes.length, agreement: v.agreement, heldOutAccuracy: v.accuracy, classesPredicted: v.classesPredicted, maxLogitDiff: v.maxLogitDiff, images: heldOutCount, trainAccuracy: tinyTrainAcc, steps: plan.tinySteps });
  }

  notes.push(`ViT-B/32 + head (5 classes) is RANDOM INIT (seed 0; no pretrained weights here): sizes and speed are what ` +
    `a trained model gets, but its agreement is on untrained logits; fp32 as exported${cfg.imx500_compatible ? ' after the IMX500 pass (side section: imx500_compatible: true)' : ''}; ` +
    `onnxruntime vs native on 8 images: max |diff| ${parity.toExponential(2)}`);
  const logitNote = (vs: Variant[], classes: number) => `fp32 top-1 takes ${vs[0].classesPredicted} of ${classes} classes; max |int8 - fp32| logit: ` +
    vs.slice(1).map((v) => `${v.name} ${fmt(v.maxLogitDiff!)}`).join(', ');
  notes.push(`int8 static: QDQ, per-channel int8 weights, min-max calibration on ${calCount} train images (eval transform); ` +
    `agreement on ${agreeSamples.length} other images (test, val, rest of train), eval transform, 224 px; ${logitNote(variants, CLASSES)}`);
  notes.push(`images: ${plan.images} generated pennies (scripts/synth-pennies.ts, seed ${SEED}) in ${set}, side labels, ` +
    `split ${index.train.length}/${index.val.length}/${index.test.length}`);
  notes.push(`issue 4 wants agreement on a trained model's test split: as a stand-in, clip_vit_tiny (64 px) trained here ` +
    `${plan.tinySteps} steps (b32, lr 1e-3, no augmentation) on the mint marks' upright ROIs (${mintIndex.train.length}/${mintIndex.val.length}/${mintIndex.test.length}; ` +
    `train acc ${(tinyTrainAcc * 100).toFixed(1)}%, ` +
    `fp32 held-out acc ${(tf.accuracy! * 100).toFixed(1)}%); its int8 agreement is on the ${heldOutCount} held-out images ` +
    `(val + test; one image is ${(100 / heldOutCount).toFixed(2)} points); ` +
    `tiny int8 acc ${tinyVariants.slice(1).map((v) => `${v.name} ${(v.accuracy! * 100).toFixed(1)}%`).join(', ')}; ${logitNote(tinyVariants, MINT_CLASSES)}`);
  notes.push(`onnxruntime-node CPU, ${ctx.threads} intra-op threads for every model; img/s medians of rounds that run the ` +
    `three models in turn, ${BLOCK} runs each in a row, the first untimed; MiB = 2^20 bytes of the serialised file; "x" columns are ratios to fp32`);

  return {
    head: ['model', 'MiB', 'size x', 'b1 img/s', 'spread', 'b1 x', 'b8 img/s', 'spread', 'b8 x', 'top-1 agree', 'target'],
    rows, notes,
    data: { threads: ctx.threads, calibration: calCount, imx500Compatible: cfg.imx500_compatible, parityMaxAbsDiff: parity, results: data,
      targets: { size: SIZE_TARGET, staticSpeedB8: SPEED_TARGET, agreement: AGREE_TARGET } },
  };
}
