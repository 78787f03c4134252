// `npm run bench -- distributed`: data-parallel training over c10d/Gloo on this machine's loopback (issue 16).
//   1. allreduce time and bandwidth against message size, 2 ranks, with the 1-rank time (the copies in and out of
//      the tensor, no communication) measured beside it;
//   2. ViT-B/32 train steps (--quick: the tiny ViT), global batch 32: 1 rank x all threads against 2 ranks x half
//      the threads each; and what overlapping the gradient allreduce with backward hides: the 2-rank step with 25 MB
//      buckets launched during backward, with one bucket after it, and with no allreduce at all.
// On a 2-core machine 2 ranks split the same 2 cores: they can show the engine's cost and the overlap, not a speed-up.
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/util/net.js';
import { fmt } from './common.js';
import type { BenchContext, PartResult } from './index.js';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'distributed-rank.ts');

/** Runs `size` ranks of one job; resolves with rank 0's figures. */
async function ranks<T>(size: number, job: Record<string, unknown>): Promise<T> {
  const port = await freePort();
  const outs = await Promise.all(Array.from({ length: size }, (_, rank) => new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), WORKER, JSON.stringify({ ...job, rank, size, port })],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`bench rank ${rank} exited with ${code}`))));
  })));
  return JSON.parse(outs[0].trim().split('\n').pop()!) as T;
}

export async function runDistributed(ctx: BenchContext): Promise<PartResult> {
  const cores = ctx.threads;
  const rows: string[][] = [];
  const notes: string[] = [];

  const sizes = (ctx.quick ? [2 ** 12, 2 ** 20, 2 ** 24] : [2 ** 12, 2 ** 16, 2 ** 20, 2 ** 22, 2 ** 24, 2 ** 26]);
  ctx.log(`allreduce: ${sizes.length} sizes, 1 and 2 ranks`);
  const one = await ranks<Record<number, number>>(1, { mode: 'allreduce', threads: 1, sizes });
  const two = await ranks<Record<number, number>>(2, { mode: 'allreduce', threads: 1, sizes });
  const allreduce = sizes.map((b) => {
    const comm = Math.max(1e-9, two[b] - one[b]);
    return { bytes: b, twoRanksMs: two[b] * 1000, copyOnlyMs: one[b] * 1000, gbPerS: b / comm / 1e9 };
  });
  for (const a of allreduce) {
    rows.push([`allreduce ${a.bytes >= 2 ** 20 ? `${a.bytes / 2 ** 20} MiB` : `${a.bytes / 2 ** 10} KiB`}`, `${fmt(a.twoRanksMs)} ms`,
      `${fmt(a.copyOnlyMs)} ms (1 rank)`, `${fmt(a.gbPerS)} GB/s`]);
  }

  const backbone = ctx.quick ? 'clip_vit_tiny' : 'coin_clip_vit_b32';
  const imageSize = ctx.quick ? 32 : 224;
  const global = 32, steps = ctx.quick ? 10 : 3;
  const half = Math.max(1, Math.floor(cores / 2));
  const step = async (size: number, threads: number, buckets: string) => {
    ctx.log(`${backbone}: ${size} rank(s) x ${threads} thread(s), buckets ${buckets}`);
    return (await ranks<{ seconds: number }>(size, { mode: 'step', backbone, imageSize, batch: global / size, steps, threads, buckets })).seconds;
  };
  const single = await step(1, cores, 'none');
  const overlap = await step(2, half, 'overlap');
  const oneBucket = await step(2, half, 'one');
  const alone = await step(2, half, 'none');
  const ips = (s: number) => global / s;
  rows.push([`${backbone} 1 rank x ${cores} threads`, `${fmt(single)} s/step`, `${fmt(ips(single))} img/s`, '']);
  rows.push([`${backbone} 2 ranks x ${half}, overlapped`, `${fmt(overlap)} s/step`, `${fmt(ips(overlap))} img/s`, `${(single / overlap).toFixed(2)}x 1 rank`]);
  rows.push([`${backbone} 2 ranks x ${half}, one bucket after backward`, `${fmt(oneBucket)} s/step`, `${fmt(ips(oneBucket))} img/s`, '']);
  rows.push([`${backbone} 2 ranks x ${half}, no allreduce`, `${fmt(alone)} s/step`, `${fmt(ips(alone))} img/s`, 'compute only']);
  notes.push(`global batch ${global} (${global / 2} per rank), ${steps} timed steps after one warm-up; machine: ${os.availableParallelism()} cores`);
  notes.push(`allreduce cost in the step: ${fmt((overlap - alone) * 1000)} ms overlapped, ${fmt((oneBucket - alone) * 1000)} ms after backward; ` +
    `overlap hides ${fmt((oneBucket - overlap) * 1000)} ms a step`);
  notes.push('GB/s: the message size over (2-rank time - 1-rank time): the copies in and out of the tensor are the 1-rank time');
  if (os.availableParallelism() <= 2) notes.push('2 cores: the 2 ranks share the cores 1 rank uses alone, so no speed-up is possible here; the figures show the cost of the engine');
  return {
    head: ['what', 'time', 'rate', 'vs'], rows, notes,
    data: { allreduce, steps: { backbone, imageSize, global, single, overlap, oneBucket, alone, cores } },
  };
}
