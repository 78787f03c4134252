// `pipeline` part (issue 3): does data loading keep up with training? Two questions, both answered in one run:
//  1. throughput: images/s of the real loader (batches(): the side model's train augmentations over the run's
//     decoded-image cache + normalise + batch, num_workers batches in flight) on data_examples/, against the
//     images/s the ViT-B/32 native train step consumes at batch 32. Target: loader >= 2x the step.
//  2. overlap: one epoch as src/train/train.ts runs it (batches prefetched while the step computes), against the
//     steps alone on the same, pre-built batches. Target: epoch <= 1.1x compute.
// On a small CPU the loader and the step share the cores, so (2) is the figure that says whether loading hides.
import { buildIndex } from '../../src/data/dataset.js';
import { ImageCache } from '../../src/data/images.js';
import { allBatches, batches, type BatchOptions } from '../../src/data/loader.js';
import { createModel, setNumThreads } from '../../src/index.js';
import { exampleConfig, fmt, pct, ratioStr, specOf, verdict } from './common.js';
import type { BenchContext, PartResult } from './index.js';
import { measure, summarize, type Stats } from './stats.js';

const BATCH = 32;
const LOADER_TARGET = 2;
const EPOCH_TARGET = 1.1;

// Sized for a quiet 2-core CPU (B/32 train b32 ~3 s/step): full ~5 min, --quick ~1.5 min; epoch runs come in pairs
// (compute first, then loader first).
const PLAN = {
  full: { loaderWarmup: 1, loaderEpochs: 8, stepWarmup: 2, stepRuns: 10, epochBatches: 8, epochRuns: 4 },
  quick: { loaderWarmup: 1, loaderEpochs: 3, stepWarmup: 1, stepRuns: 3, epochBatches: 4, epochRuns: 2 },
};

export async function runPipeline(ctx: BenchContext): Promise<PartResult> {
  const plan = ctx.quick ? PLAN.quick : PLAN.full;
  setNumThreads(ctx.threads);
  const cfg = exampleConfig('side');
  const index = await buildIndex(cfg);
  const all = [...index.train, ...index.val, ...index.test];
  const spec = specOf(cfg);
  const cache = new ImageCache(cfg.image_cache_mb);   // as train() runs: the warm-up epoch decodes, later ones reuse
  const loaderOpts = (epoch: number): BatchOptions => ({
    batchSize: BATCH, spec, augment: cfg.augment, seed: cfg.seed, epoch, workers: cfg.num_workers, cache,
  });

  // 1a. The loader alone: whole epochs over data_examples/, each a new epoch number (new order, new draws).
  ctx.log(`loader: ${all.length} images, ${plan.loaderWarmup} warm-up + ${plan.loaderEpochs} epochs, ${cfg.num_workers} workers, ${spec.height}x${spec.width} px`);
  const loaderMs: number[] = [];
  for (let e = 0; e < plan.loaderWarmup + plan.loaderEpochs; e++) {
    const t0 = performance.now();
    let n = 0;
    for await (const b of batches(all, loaderOpts(e))) n += b.labels.length;
    if (n !== all.length) throw new Error(`loader gave ${n} images, expected ${all.length}`);
    if (e >= plan.loaderWarmup) loaderMs.push(performance.now() - t0);
  }
  const loader = summarize(loaderMs, plan.loaderWarmup);
  const loaderImgS = (all.length * 1000) / loader.median;

  ctx.log('creating coin_clip_vit_b32 (random init, seed 0)');
  const model = await createModel({ backbone: 'coin_clip_vit_b32', numClasses: 5, seed: 0, threads: ctx.threads });
  try {
    // 1b. What the step consumes: train steps at batch 32 on one fixed, real batch.
    const [first] = await allBatches(all.slice(0, BATCH), loaderOpts(0));
    ctx.log(`ViT-B/32 train step b${BATCH}: ${plan.stepWarmup} warm-up + ${plan.stepRuns} runs`);
    const step = await measure(() => model.trainStep(first.pixels, first.shape, first.labels, { lr: 1e-4 }),
      { warmup: plan.stepWarmup, runs: plan.stepRuns });
    const stepImgS = (BATCH * 1000) / step.median;

    // 2. Epoch (loader + steps, prefetching as train.ts does) against compute only (the same batches, pre-built),
    //    alternating so that drift on the machine hits both alike.
    const epochSamples = Array.from({ length: plan.epochBatches * BATCH }, (_, i) => all[i % all.length]);
    const epochMs: number[] = [], computeMs: number[] = [], stallMs: number[] = [];
    for (let r = 0; r < plan.epochRuns; r++) {
      const opts = loaderOpts(1000 + r);
      const computeOnly = async () => {
        const built = await allBatches(epochSamples, opts);
        ctx.log(`run ${r + 1}/${plan.epochRuns}: compute only (${built.length} batches of ${BATCH})`);
        const t0 = performance.now();
        for (const b of built) await model.trainStep(b.pixels, b.shape, b.labels, { lr: 1e-4 });
        computeMs.push(performance.now() - t0);
      };
      const epochRun = async () => {
        ctx.log(`run ${r + 1}/${plan.epochRuns}: loader + steps`);
        let stall = 0;
        const t0 = performance.now();
        let waitFrom = t0;
        for await (const b of batches(epochSamples, opts)) {
          stall += performance.now() - waitFrom;
          await model.trainStep(b.pixels, b.shape, b.labels, { lr: 1e-4 });
          waitFrom = performance.now();
        }
        epochMs.push(performance.now() - t0);
        stallMs.push(stall);
      };
      // alternate which goes first, so neither always follows the other
      if (r % 2 === 0) { await computeOnly(); await epochRun(); } else { await epochRun(); await computeOnly(); }
    }
    const epoch = summarize(epochMs), compute = summarize(computeMs), stalls = summarize(stallMs);
    const loaderRatio = loaderImgS / stepImgS;
    const epochRatio = epoch.median / compute.median;
    const pairedRatios = epochMs.map((e, i) => e / computeMs[i]);

    const s = (st: Stats) => fmt(st.median / 1000);
    const rows = [
      [`loader: decode + augment + batch (${cfg.num_workers} workers)`, 'img/s', fmt(loaderImgS), pct(loader), ''],
      [`ViT-B/32 native train step b${BATCH} consumes`, 'img/s', fmt(stepImgS), pct(step), ''],
      ['loader / step consumption', 'ratio', ratioStr(loaderRatio), '', `>= ${LOADER_TARGET}x ${verdict(loaderRatio >= LOADER_TARGET)}`],
      [`epoch: loader + steps (${plan.epochBatches} x ${BATCH})`, 's', s(epoch), pct(epoch), ''],
      ['compute only, same batches', 's', s(compute), pct(compute), ''],
      ['epoch / compute', 'ratio', ratioStr(epochRatio, '<='), '', `<= ${EPOCH_TARGET}x ${verdict(epochRatio <= EPOCH_TARGET)}`],
    ];
    const notes = [
      `data_examples/: ${all.length} synthetic 256x256 JPEGs; side section's train augmentations (rotation, crop, colour jitter, ` +
        `blur, flip) at ${spec.height}x${spec.width} px; loader figure: median of ${plan.loaderEpochs} epochs after ${plan.loaderWarmup} warm-up, nothing else running`,
      `ViT-B/32 random init (seed 0), AdamW; ${ctx.threads} LibTorch threads; the loader uses sharp/libuv threads on the same cores`,
      `epoch: ${plan.epochBatches} batches (data_examples/ wrapped to fill them), the same batches both ways (same seed and epoch), ${plan.epochRuns} runs each way, alternating order; ` +
        `the loop waited for batches ${fmt(stalls.median / 1000)} s per epoch (median; includes the first batch, which nothing hides)`,
      'spread = (max-min)/median of the runs',
    ];
    return {
      head: ['figure', 'unit', 'value', 'spread', 'target'],
      rows,
      notes,
      data: {
        images: all.length, batch: BATCH, size: [spec.height, spec.width], workers: cfg.num_workers, threads: ctx.threads,
        loader: { stats: loader, imgPerSec: loaderImgS },
        step: { stats: step, imgPerSec: stepImgS },
        loaderOverStep: loaderRatio,
        epoch: { batches: plan.epochBatches, stats: epoch, stall: stalls },
        compute: { stats: compute },
        epochOverCompute: epochRatio, pairedRatios,
        targets: { loaderOverStep: LOADER_TARGET, epochOverCompute: EPOCH_TARGET },
      },
    };
  } finally {
    model.dispose();
  }
}
