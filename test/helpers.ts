import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

export function argmax(row: ArrayLike<number>, offset: number, n: number): number {
  let best = 0;
  for (let j = 1; j < n; j++) if (row[offset + j] > row[offset + best]) best = j;
  return best;
}

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

/** Runs the CLI from source in `cwd`; resolves with its exit status and output (`child` is there to signal it). */
export function runCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<CliRun> & { child: ChildProcess } {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src', 'cli.ts'), ...args],
    { cwd, env: { ...process.env, ...env } });
  const done = new Promise<CliRun>((resolve) => {
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return Object.assign(done, { child });
}

/** Every file under `dir`, relative to it. */
export function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}
