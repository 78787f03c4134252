// Batches of one epoch, prepared ahead: up to `workers` batches decode (in sharp's threads) and augment while the
// model computes the current one. The order and every augmentation draw depend only on (seed, epoch, uid).
import type { Augment } from '../config/config.js';
import { hashSeed, Rng } from '../util/rng.js';
import type { Sample } from './dataset.js';
import { augmentRng, decode, render, type ImageCache, type ImageSpec } from './images.js';
import { orientationBin } from './labels.js';

export interface Batch {
  pixels: Float32Array;
  shape: [number, number, number, number];
  labels: Int32Array;
  uids: string[];
  /** each image's coin angle as it reaches the model (degrees CCW; NaN where unknown) */
  angles: Float64Array;
  /** the images of the whole batch across ranks (sharded: this is this rank's part; else the batch itself) */
  globalSize: number;
}

export interface BatchOptions {
  batchSize: number;
  spec: ImageSpec;
  /** train: shuffled and augmented; otherwise the given order, eval transform */
  augment: Augment | null;
  seed: number;
  epoch: number;
  workers: number;
  /** skip this many batches (resuming in the middle of an epoch) */
  startBatch?: number;
  /** decoded images kept across epochs; without one, every image is decoded anew */
  cache?: ImageCache;
  /** distributed training: this rank's part of every batch (shardRange); the order and draws stay the global ones */
  shard?: { rank: number; size: number };
}

/** Rank `rank`'s part [start, end) of a batch of n split over `size` ranks: as even as can be, in rank order. */
export function shardRange(n: number, rank: number, size: number): [number, number] {
  return [Math.floor((rank * n) / size), Math.floor(((rank + 1) * n) / size)];
}

/** Epoch order: a seeded Fisher-Yates shuffle for training, the index order otherwise. */
export function epochOrder(samples: readonly Sample[], shuffle: boolean, seed: number, epoch: number): Sample[] {
  const order = [...samples];
  if (!shuffle) return order;
  const rng = new Rng(hashSeed(seed, `order:${epoch}`));
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

export function batchCount(n: number, batchSize: number): number {
  return Math.ceil(n / batchSize);
}

async function makeBatch(samples: Sample[], o: BatchOptions, globalSize = samples.length): Promise<Batch> {
  // Start after the consumer has handed the current batch to the model: the augmentation's draws and the calls
  // that queue its pixel work run on the main thread, which should hand the step over first.
  await new Promise(setImmediate);
  const { height, width } = o.spec;
  const per = 3 * height * width;
  const pixels = new Float32Array(samples.length * per);
  const labels = Int32Array.from(samples, (s) => s.label);
  const angles = Float64Array.from(samples, (s) => s.angle ?? NaN);
  await Promise.all(samples.map(async (s, i) => {
    try {
      const decoded = await (o.cache ? o.cache.get(s, o.spec) : decode(s, o.spec));
      const { rotation } = await render(decoded, o.spec, o.augment, o.augment ? augmentRng(o.seed, o.epoch, s.uid) : null, pixels, i * per);
      // rotate_relabel: the picture turned clockwise by `rotation`, so the coin's counter-clockwise angle fell by it
      if (o.augment?.rotate_relabel && s.angle !== undefined) {
        angles[i] = (((s.angle - rotation) % 360) + 360) % 360;
        labels[i] = orientationBin(angles[i]);
      }
    } catch (e) {
      throw new Error(`image ${s.file} (UID ${s.uid}): ${(e as Error).message}`);
    }
  }));
  return { pixels, shape: [samples.length, 3, height, width], labels, uids: samples.map((s) => s.uid), angles, globalSize };
}

/** Batch options of the eval transform: index order, resize + centre crop (validation, test, calibration). */
export function evalOptions(o: Pick<BatchOptions, 'batchSize' | 'spec' | 'workers' | 'cache'>): BatchOptions {
  return { ...o, augment: null, seed: 0, epoch: 0 };
}

/** Every batch of one epoch, held at once: for small sets (parity checks, calibration, benchmarks). */
export async function allBatches(samples: readonly Sample[], o: BatchOptions): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of batches(samples, o)) out.push(b);
  return out;
}

/** Yields the batches of one epoch in order, keeping `workers` of them in preparation ahead of the consumer. */
export async function* batches(samples: readonly Sample[], o: BatchOptions): AsyncGenerator<Batch> {
  const order = epochOrder(samples, o.augment !== null, o.seed, o.epoch);
  const total = batchCount(order.length, o.batchSize);
  let next = o.startBatch ?? 0;
  const make = (b: number) => {
    const all = order.slice(b * o.batchSize, (b + 1) * o.batchSize);
    if (!o.shard) return makeBatch(all, o);
    const [start, end] = shardRange(all.length, o.shard.rank, o.shard.size);
    return makeBatch(all.slice(start, end), o, all.length);
  };
  if (o.workers === 0) {
    for (; next < total; next++) yield await make(next);
    return;
  }
  const pending: Promise<Batch>[] = [];
  const refill = () => {
    while (pending.length < o.workers && next < total) {
      const p = make(next);
      p.catch(() => {});   // surfaced when awaited; avoids an unhandled rejection while it waits in the queue
      pending.push(p);
      next++;
    }
  };
  refill();
  while (pending.length) {
    const b = await pending.shift()!;
    refill();
    yield b;
  }
}
