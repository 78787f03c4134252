import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { createModelFromGraph, GraphBuilder, type Graph } from '../src/index.js';
import { numel } from '../src/model/graph.js';
import { Rng } from '../src/util/rng.js';

export const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'hf-clip-tiny');

export function readF32(file: string): Float32Array {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

export function randomLabels(n: number, classes: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng.next() * classes));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

export { argmaxRow as argmax } from '../src/train/metrics.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * A scratch working directory for a training run: data_examples/ and metadata/ linked in, and a copy of the master
 * config switched to the tiny backend at 64 px (`edit` changes its text further).
 */
export function scratchRun(edit: (yaml: string) => string = (y) => y): { cwd: string; config: string } {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-run-'));
  fs.symlinkSync(path.join(ROOT, 'data_examples'), path.join(cwd, 'data_examples'));
  fs.symlinkSync(path.join(ROOT, 'metadata'), path.join(cwd, 'metadata'));
  const yaml = fs.readFileSync(path.join(ROOT, 'configs', 'training_config.yaml'), 'utf8')
    .replaceAll('backbone: coin_clip_vit_b32', 'backbone: clip_vit_tiny')
    .replaceAll('img_size: [224, 224]', 'img_size: [32, 32]')
    .replaceAll('pretrained_weights: pretrained/coin-clip-vit-base-patch32', 'pretrained_weights: null')
    .replace(/num_epochs: \d+/g, 'num_epochs: 2')
    .replace(/calibration_samples: \d+/g, 'calibration_samples: 16');
  const config = path.join(cwd, 'config.yaml');
  fs.writeFileSync(config, edit(yaml));
  return { cwd, config };
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** CLI runs still going: a test that timed out must not leave its run training on (one did, for 27 minutes). */
const running = new Set<ChildProcess>();
afterAll(() => { for (const c of running) c.kill('SIGKILL'); });

/** Runs the CLI from source in `cwd`; resolves with its exit status and output (`child` is there to signal it, `output` to read it meanwhile). */
export function runCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, limits: { fileSizeKb?: number } = {}): Promise<CliRun> & { child: ChildProcess; output(): string } {
  const argv = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src', 'cli.ts'), ...args];
  // a file-size limit (RLIMIT_FSIZE, as `ulimit -f`): writes past it fail with EFBIG, as on a full disk
  const child = limits.fileSizeKb === undefined
    ? spawn(process.execPath, argv, { cwd, env: { ...process.env, ...env } })
    : spawn('bash', ['-c', `ulimit -f ${limits.fileSizeKb}; exec "$0" "$@"`, process.execPath, ...argv], { cwd, env: { ...process.env, ...env } });
  running.add(child);
  child.on('close', () => running.delete(child));
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<CliRun>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return Object.assign(done, { child, output: () => stdout + stderr });
}

/** Resolves once `file` exists (polled every `pollMs`), or after 60 s in any case: the caller's assertions then tell. */
export async function waitForFile(file: string, pollMs = 100): Promise<void> {
  const started = Date.now();
  while (!fs.existsSync(file) && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, pollMs));
}

/** Every file under `dir`, relative to it. */
export function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

/**
 * The ops CLIP does not use: gelu, relu, relu6, mul, softmax, log_softmax (over the last axis and over a middle one),
 * conv with bias and padding. The log_softmaxes are multiplied by a softmax, not normalised next, so a wrong shift
 * term in their backward is not cancelled by what follows.
 */
export function otherOps(): Graph {
  const g = new GraphBuilder();
  const n = (std: number) => ({ kind: 'normal', std }) as const;
  const w = g.param('conv.weight', [4, 3, 3, 3], n(0.3), true);
  const b = g.param('conv.bias', [4], n(0.1), false);
  let x = g.op('conv2d', [g.input, w, b], { stride: 2, padding: 1 });          // [B, 4, 4, 4]
  x = g.op('transpose', [g.op('reshape', [x], { shape: [0, 4, -1] })], { perm: [0, 2, 1] });   // [B, 16, 4]
  const a = g.op('gelu', [g.linear(x, 'fc1', 4, 8, { weight: n(0.5), bias: n(0.1) })], {});
  const r = g.op('relu', [g.linear(x, 'fc2', 4, 8, { weight: n(0.5), bias: n(0.1) })], {});
  const r6 = g.op('relu6', [g.op('mul', [g.linear(x, 'fc3', 4, 8, { weight: n(2), bias: n(1) }), g.param('scale', [8], n(3), false)], {})], {});
  const h = g.op('add', [g.op('mul', [a, r], {}), r6], {});                    // [B, 16, 8]
  const logp = g.op('add', [g.op('log_softmax', [h], { axis: -1 }), g.op('log_softmax', [h], { axis: 1 })], {});
  x = g.op('mul', [g.op('softmax', [h], { axis: -1 }), logp], {});
  x = g.op('reshape', [g.op('slice', [x], { axis: 1, start: 2, end: 3 })], { shape: [0, 8] });
  const embeds = g.layerNorm(x, 'ln', 8, 1e-5);
  const logits = g.linear(embeds, 'head', 8, 3, { weight: n(0.5), bias: n(0.1) }, 'logits');
  return g.build([3, 8, 8], { embeds, logits });
}

/** The worst relative error of `backend`'s float64 gradients against central finite differences (3 entries per parameter). */
export async function gradcheck(graph: Graph, classes: number, backend: 'native' | 'js' = 'native'): Promise<number> {
  const m = await createModelFromGraph(graph, classes, { dtype: 'float64', seed: 3, backend });
  const [c, h, w] = graph.inputShape;
  const shape = [2, c, h, w];
  const pixels = Float64Array.from(randn(numel(shape), 11));
  const labels = randomLabels(2, classes, 12);
  const { grads } = await m.lossAndGrads(pixels, shape, labels);
  const params = m.getParams();
  const rng = new Rng(5);
  const eps = 1e-6;
  let worst = 0;
  for (const p of graph.params.filter((q) => !q.buffer)) {   // buffers (running statistics) get no gradient
    const values = params[p.name] as Float64Array;
    for (let t = 0; t < 3; t++) {
      const i = Math.floor(rng.next() * values.length);
      const orig = values[i];
      const at = async (v: number) => {
        values[i] = v;
        m.setParams({ [p.name]: values });
        return (await m.lossAndGrads(pixels, shape, labels)).loss;
      };
      const numeric = ((await at(orig + eps)) - (await at(orig - eps))) / (2 * eps);
      await at(orig);
      const analytic = grads[p.name][i];
      // relative, with a floor for gradients that are ~0 (finite differences carry ~1e-10 of rounding)
      worst = Math.max(worst, Math.abs(numeric - analytic) / Math.max(1e-4, Math.abs(numeric) + Math.abs(analytic)));
    }
  }
  m.dispose();
  console.log(`${backend} gradcheck worst relative error ${worst.toExponential(2)}`);
  return worst;
}
