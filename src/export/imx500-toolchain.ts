// Sony's IMX500 toolchain (model-compression-toolkit + imx500-converter) lives in its own Python environment, made
// by `npm run setup:imx500` (scripts/setup-imx500.sh) in penny-train's cache folder; training never needs it.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTorchFile } from '../backend/native.js';
import { UsageError } from '../errors.js';
import type { Graph } from '../model/graph.js';
import { cacheDir } from '../train/pretrained.js';
import { torchModuleSource } from './torch-module.js';

/** The IMX500 environment's folder: $PENNY_IMX500_VENV, else <cache>/imx500-venv. */
export function imx500Venv(): string {
  return process.env.PENNY_IMX500_VENV ?? path.join(cacheDir(), 'imx500-venv');
}

/** A Python that imports torch: $PENNY_TORCH_PYTHON, the IMX500 environment's, else python3 if it has torch; or null. */
export function torchPython(): string | null {
  const candidates = [process.env.PENNY_TORCH_PYTHON, path.join(imx500Venv(), 'bin', 'python'), 'python3'].filter((p): p is string => !!p);
  for (const p of candidates) {
    if (p.includes(path.sep) && !fs.existsSync(p)) continue;
    if (spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return p;
  }
  return null;
}

/** Whether a training run ends with Sony's toolchain: set up, switched off (PENNY_IMX500=off), or absent. */
export function imx500Status(): 'ready' | 'off' | 'absent' {
  if (process.env.PENNY_IMX500 === 'off') return 'off';
  return fs.existsSync(path.join(imx500Venv(), 'bin', 'imxconv-pt')) ? 'ready' : 'absent';
}

/** The IMX500 environment's python; a UsageError saying how to make it when there is none. */
export function imx500Python(): string {
  const python = path.join(imx500Venv(), 'bin', 'python');
  if (!fs.existsSync(path.join(imx500Venv(), 'bin', 'imxconv-pt'))) {
    throw new UsageError(`the IMX500 toolchain is not set up (no imxconv-pt in ${imx500Venv()}): run \`npm run setup:imx500\` (Python 3.11, Java 17)`);
  }
  return python;
}

/** What the IMX500 toolchain made of one model. */
export interface Imx500Conversion {
  dir: string;
  /** MCT's quantized ONNX (mct_quantizers custom ops), then the converter's outputs, relative to `dir` */
  onnx: string;
  packerOut?: string;
  dnnParams?: string;
  memoryReport?: string;
  /** the converter's memory report: bytes used of those available, and its "Fit In Chip" */
  memoryBytes?: number;
  availableBytes?: number;
  fits?: boolean;
  /** the converter's own reason when it refused the model */
  converterError?: string;
  /** MCT's own reason when it could not quantize the model (then there is no ONNX and no converter run) */
  mctError?: string;
  /** MCT int8 against fp32 (the PyTorch module) on the test images given */
  logits?: { fp32: Float32Array; int8: Float32Array };
  seconds: Record<string, number>;
}

const CONVERT_PY = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'imx500', 'convert.py');

/** "188.44KB" -> bytes */
function sizeOf(text: unknown): number | undefined {
  const m = /^([\d.]+)\s*(B|KB|MB|GB)$/i.exec(String(text ?? '').trim());
  return m ? Math.round(Number(m[1]) * { B: 1, KB: 2 ** 10, MB: 2 ** 20, GB: 2 ** 30 }[m[2].toUpperCase() as 'B']) : undefined;
}

/**
 * Runs scripts/imx500/convert.py in the IMX500 environment: the graph as a PyTorch module with the checkpoint's
 * weights, MCT post-training quantization on `calibration` (normalised model inputs), MCT's ONNX export, then
 * imxconv-pt; `test` inputs also get fp32 and MCT-int8 logits. Writes into `dir` (made here, or refused if present).
 */
export async function convertForImx500(o: { graph: Graph; checkpoint: string; calibration: Float32Array; test?: Float32Array; dir: string; name: string }): Promise<Imx500Conversion> {
  const python = imx500Python();
  if (fs.existsSync(o.dir)) throw new UsageError(`${o.dir} exists already: give another --output`);
  const [, h, w] = o.graph.inputShape;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-imx500-'));
  const staged = `${o.dir}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(path.join(work, 'net.py'), torchModuleSource(o.graph, { imx500: true }));
    const tensor = (data: Float32Array) => ({ kind: 'tensor', dtype: 'float32', shape: [data.length / (3 * h * w), 3, h, w], data });
    await writeTorchFile(path.join(work, 'calib.pt'), tensor(o.calibration));
    if (o.test) await writeTorchFile(path.join(work, 'test.pt'), tensor(o.test));
    const args = [CONVERT_PY, '--module', path.join(work, 'net.py'), '--checkpoint', o.checkpoint, '--calibration', path.join(work, 'calib.pt'),
      '--output', staged, '--result', path.join(work, 'result.json'), '--name', o.name,
      ...(o.test ? ['--test', path.join(work, 'test.pt'), '--logits', path.join(work, 'logits')] : [])];
    const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn(python, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-20_000); });
      child.on('close', (code) => resolve({ code, err }));
    });
    if (r.code !== 0) throw new Error(`the IMX500 toolchain failed (scripts/imx500/convert.py, exit ${r.code}):\n${r.err.trim().split('\n').slice(-15).join('\n')}`);
    const res = JSON.parse(fs.readFileSync(path.join(work, 'result.json'), 'utf8')) as Record<string, unknown> & { memory?: Record<string, unknown>; times_s: Record<string, number> };
    if (typeof res.mct_error === 'string') return { dir: o.dir, onnx: '', mctError: res.mct_error, seconds: res.times_s };
    const read = (f: string) => { const b = fs.readFileSync(path.join(work, 'logits', f)); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)); };
    fs.renameSync(staged, o.dir);
    const inConverter = (f: unknown) => (typeof f === 'string' ? path.join('imxconv', f) : undefined);
    return {
      dir: o.dir, onnx: String(res.onnx), packerOut: inConverter(res.packer_out), dnnParams: inConverter(res.dnn_params), memoryReport: inConverter(res.memory_report),
      memoryBytes: sizeOf(res.memory?.['Memory Usage']), availableBytes: sizeOf(res.memory?.['Total Memory Available On Chip']),
      fits: typeof res.memory?.['Fit In Chip'] === 'boolean' ? res.memory['Fit In Chip'] as boolean : undefined,
      ...(typeof res.converter_error === 'string' && { converterError: res.converter_error }),
      ...(o.test && { logits: { fp32: read('fp32.f32'), int8: read('mct_int8.f32') } }),
      seconds: res.times_s,
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(staged, { recursive: true, force: true });
  }
}
