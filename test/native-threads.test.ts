// The native backend's threading: every LibTorch call runs on one compute thread (native/compute.h), in the order the
// calls were made, and results reach each JS environment (main thread, worker threads) through its own link.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createModel } from '../src/index.js';
import { ROOT } from './helpers.js';

const shape = [4, 3, 32, 32];
const pixels = Float32Array.from({ length: 4 * 3 * 32 * 32 }, (_, i) => Math.sin(i));
const labels = new Int32Array([0, 1, 2, 1]);
const tiny = () => createModel({ backbone: 'clip_vit_tiny', numClasses: 3, imageSize: 32, seed: 1 });

// A worker (ES module, run by eval) that predicts once, then queues steps for the test's terminate() to cut short.
const WORKER = `
  import { parentPort } from 'node:worker_threads';
  import { register } from ${JSON.stringify(import.meta.resolve('tsx/esm/api'))};
  register();
  const { createModel } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'src', 'index.ts')).href)});
  const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: 3, imageSize: 32 });
  const px = new Float32Array(4 * 3 * 32 * 32).fill(0.5);
  parentPort.postMessage('predicted ' + (await m.predict(px, [4, 3, 32, 32])).length);
  for (let i = 0; i < 300; i++) m.trainStep(px, [4, 3, 32, 32], new Int32Array(4), { lr: 1e-3 });
  parentPort.postMessage('queued');`;

const MAIN = `
  const { Worker } = require('node:worker_threads');
  const w = new Worker(new URL('data:text/javascript,' + encodeURIComponent(${JSON.stringify(WORKER)})));
  w.on('message', (msg) => {
    console.log(msg);
    if (msg === 'queued') setTimeout(() => w.terminate().then(() => console.log('terminated')), 20);
  });
  w.on('error', (e) => { console.log('worker error: ' + e.message); process.exitCode = 1; });`;

// Steps queued, then process.exit() while one runs: without the exit hook it crashed ~1 run in 2 (SIGSEGV in
// LibTorch's static destructors).
const EXIT_MID_STEP = `
  const { createModel } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'src', 'index.ts')).href)});
  const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: 3, imageSize: 32 });
  const px = new Float32Array(4 * 3 * 32 * 32).fill(0.5);
  for (let i = 0; i < 200; i++) m.trainStep(px, [4, 3, 32, 32], new Int32Array(4), { lr: 1e-3 });
  setTimeout(() => { console.log('exiting'); process.exit(0); }, 5 + 10 * Number(process.argv[1]));`;

describe('native threading', () => {
  it('runs calls in order: a synchronous call waits for the steps queued before it', async () => {
    const [queued, awaited] = [await tiny(), await tiny()];
    const steps = [1, 2, 3].map(() => queued.trainStep(pixels, shape, labels, { lr: 1e-3 }));
    const params = queued.getParams();   // no await in between: the three steps are still queued
    for (let i = 0; i < 3; i++) await awaited.trainStep(pixels, shape, labels, { lr: 1e-3 });
    expect(params['head.weight']).toEqual(awaited.getParams()['head.weight']);
    const losses = (await Promise.all(steps)).map((r) => r.loss);
    expect(losses[2]).toBeLessThan(losses[0]);
  });

  it('serves a worker thread, and survives the worker being terminated with steps still queued', () => {
    const r = spawnSync(process.execPath, ['-e', MAIN], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['predicted 12', 'queued', 'terminated']);
    expect(r.status).toBe(0);
  });

  it('exits cleanly on process.exit() while a step runs and more are queued', () => {
    for (let run = 0; run < 6; run++) {
      const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', EXIT_MID_STEP, String(run)],
        { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(r.stderr, `run ${run}`).toBe('');
      expect(r.stdout.trim(), `run ${run}`).toBe('exiting');
      expect([r.status, r.signal], `run ${run}`).toEqual([0, null]);
    }
  });
});
