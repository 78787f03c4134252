// One rank of `npm run bench -- distributed` (distributed.ts starts them): a JSON job on argv[2], one JSON line of
// figures on stdout.
//   allreduce: { sizes } -> seconds per allreduce of each size (Float64 values; the copy into and out of the tensor
//              included, which the 1-rank run measures alone)
//   step:      { backbone, imageSize, batch (this rank's), steps, buckets: 'overlap' | 'one' | 'none' } -> seconds
//              per train step; 'overlap' = 25 MB buckets launched during backward, 'one' = a single bucket after it,
//              'none' = no group (each rank alone: the compute-only baseline)
import { loadAddon } from '../../src/backend/native.js';
import { createModel } from '../../src/model/model.js';
import { randomNormal } from './common.js';

interface Job {
  mode: 'allreduce' | 'step';
  rank: number;
  size: number;
  port: number;
  threads: number;
  sizes?: number[];
  backbone?: string;
  imageSize?: number;
  batch?: number;
  steps?: number;
  buckets?: 'overlap' | 'one' | 'none';
}

const job = JSON.parse(process.argv[2]) as Job;
const addon = loadAddon();
addon.setNumThreads(job.threads);
const group = job.mode === 'step' && job.buckets === 'none' ? undefined
  : new addon.NativeGroup!({ rank: job.rank, size: job.size, masterAddr: '127.0.0.1', masterPort: job.port, timeoutMs: 600_000 });
await group?.connect();

if (job.mode === 'allreduce') {
  const out: Record<number, number> = {};
  for (const bytes of job.sizes!) {
    const v = new Float64Array(bytes / 8).fill(job.rank);
    const reps = Math.max(3, Math.min(200, Math.round(2e8 / bytes)));
    await group!.allreduce(v, 'sum');
    await group!.barrier();
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) await group!.allreduce(v, 'sum');
    out[bytes] = (performance.now() - t0) / 1000 / reps;
  }
  console.log(JSON.stringify(out));
} else {
  const size = job.imageSize!;
  const model = await createModel({ backbone: job.backbone!, numClasses: 5, seed: 1, imageSize: size, threads: job.threads });
  if (group) {
    const huge = 2 ** 40;
    await model.joinGroup(group, job.buckets === 'one' ? { bucketBytes: huge, firstBucketBytes: huge } : { bucketBytes: 25 * 2 ** 20, firstBucketBytes: 2 ** 20 });
  }
  const shape = [job.batch!, 3, size, size];
  const pixels = randomNormal(job.batch! * 3 * size * size, 7 + job.rank);
  const labels = Int32Array.from({ length: job.batch! }, (_, i) => (i + job.rank) % 5);
  await model.trainStep(pixels, shape, labels, { lr: 1e-5 });   // warm-up
  await group?.barrier();
  const t0 = performance.now();
  for (let i = 0; i < job.steps!; i++) await model.trainStep(pixels, shape, labels, { lr: 1e-5 });
  console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000 / job.steps! }));
  model.dispose();
}
group?.close();
