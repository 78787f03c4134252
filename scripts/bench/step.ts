// `step` part: train and eval step throughput of the native backend, side by side with PyTorch eager on the same
// model, batch, precision, device and thread count. The lead question is whether the N-API + graph-interpreter layer
// costs anything against plain PyTorch, so both sides time the same thing: one full step on fixed, pre-built inputs
// (a train step ends with its loss on the host, an eval step with its logits there: both wait for the GPU).
// `--device cuda` runs the GPU rows (ViT-B/32 at batch 64 and 256, fp32 and bf16) instead of the CPU ones.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuHasBf16 } from '../../src/backend/cpu-features.js';
import type { Precision } from '../../src/backend/types.js';
import { createModel, setNumThreads, type PennyModel } from '../../src/index.js';
import { fmt, pct, randomNormal, ratioStr, verdict } from './common.js';
import type { BenchContext, PartResult } from './index.js';
import { measure, type Stats } from './stats.js';

const TORCH_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'torch_eager_step.py');
/** native must reach this fraction of PyTorch eager's speed: on the CPU, and on a GPU (issue 15's target) */
const TARGET = { cpu: 0.95, cuda: 1.0 };
/** the Python that runs the PyTorch side (one with torch, and transformers where it can be had) */
const PYTHON = process.env.BENCH_PYTHON ?? 'python3';

interface Config {
  name: string;
  backbone: 'coin_clip_vit_b32' | 'clip_vit_tiny';
  /** the Python script's name for the same backbone */
  pyBackbone: 'b32' | 'tiny';
  mode: 'train' | 'eval';
  batch: number;
  precision: Precision;
  /** img/s for throughput; ms/step where the fixed per-step cost is the point (tiny model) */
  unit: 'img/s' | 'ms/step';
  warmup: number;
  runs: number;
  quick: { warmup: number; runs: number };
}

// Step counts sized for a quiet 2-core CPU (B/32 train b32 ~3-4 s/step): the full part takes ~5 min, --quick
// under 2; more runs would tighten the medians little, fewer let one slow step move them.
const b32 = (mode: Config['mode'], batch: number, precision: Precision, warmup: number, runs: number, quick: Config['quick']): Config =>
  ({ name: `ViT-B/32 ${mode} b${batch}${precision === 'fp32' ? '' : ` ${precision}`}`, backbone: 'coin_clip_vit_b32', pyBackbone: 'b32', mode, batch, precision, unit: 'img/s', warmup, runs, quick });
const CPU_CONFIGS: Config[] = [
  b32('train', 8, 'fp32', 2, 20, { warmup: 1, runs: 3 }),
  b32('train', 32, 'fp32', 1, 15, { warmup: 1, runs: 3 }),
  b32('eval', 8, 'fp32', 3, 50, { warmup: 1, runs: 5 }),
  b32('eval', 32, 'fp32', 2, 20, { warmup: 1, runs: 3 }),
  { name: 'tiny train b8 64px', backbone: 'clip_vit_tiny', pyBackbone: 'tiny', mode: 'train', batch: 8, precision: 'fp32', unit: 'ms/step', warmup: 20, runs: 200, quick: { warmup: 5, runs: 20 } },
];
/** bf16 rows where the CPU computes in bf16 (elsewhere penny-train refuses bf16 on the CPU) */
const CPU_BF16_CONFIGS: Config[] = [b32('train', 8, 'bf16', 2, 20, { warmup: 1, runs: 3 }), b32('eval', 8, 'bf16', 3, 50, { warmup: 1, runs: 5 })];
// An H100 takes ~0.1-0.2 s a b256 train step: 30 timed steps a row keep the part near a minute.
const CUDA_CONFIGS: Config[] = (['fp32', 'bf16'] as const).flatMap((p) => [
  b32('train', 64, p, 5, 30, { warmup: 2, runs: 5 }),
  b32('train', 256, p, 3, 30, { warmup: 2, runs: 5 }),
  b32('eval', 256, p, 3, 30, { warmup: 2, runs: 5 }),
]);

/** The rows for `device`. */
export function stepConfigs(device: string, bf16 = cpuHasBf16()): Config[] {
  return device === 'cpu' ? [...CPU_CONFIGS, ...(bf16 ? CPU_BF16_CONFIGS : [])] : CUDA_CONFIGS;
}

const NUM_CLASSES = 5;

interface Side {
  stats: Stats;
  /** the figure in the row's unit */
  value: number;
}

interface RowResult {
  name: string;
  backbone: string;
  mode: string;
  batch: number;
  precision: Precision;
  unit: string;
  native: Side;
  eager: (Side & Omit<EagerRun, 'stats'>) | null;
  eagerError?: string;
  /** native speed / eager speed (>1: native is faster), whatever the unit */
  ratio: number | null;
}

function figure(stats: Stats, batch: number, unit: Config['unit']): number {
  return unit === 'img/s' ? (batch * 1000) / stats.median : stats.median;
}

/** torch's version when the Python can import it (with ", transformers" where that imports too), else null. */
function probeTorch(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import importlib.util as u, torch; print(torch.__version__ + (", transformers" if u.find_spec("transformers") else ""))'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

interface EagerJson {
  ms_per_step_median: number;
  ms_per_step_min: number;
  ms_per_step_max: number;
  steps: number;
  threads: number;
  impl: 'hf' | 'torch';
  peak_memory_mib: number | null;
}

function runEager(cfg: Config, device: string, threads: number, warmup: number, runs: number): EagerRun {
  const args = [TORCH_SCRIPT, '--backbone', cfg.pyBackbone, '--mode', cfg.mode, '--batch', String(cfg.batch),
    '--threads', String(threads), '--steps', String(runs), '--warmup', String(warmup), '--classes', String(NUM_CLASSES),
    '--device', device, '--precision', cfg.precision];
  const r = spawnSync(PYTHON, args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) {
    const tail = (r.stderr || String(r.error ?? '')).trim().split('\n').slice(-3).join(' | ');
    throw new Error(`torch_eager_step.py exited ${r.status}: ${tail}`);
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const j = JSON.parse(line) as EagerJson;
  if (j.threads !== threads) throw new Error(`PyTorch ran on ${j.threads} threads, not ${threads}`);
  // The script reports median/min/max only; the spread is computed from them the same way as for native.
  const med = j.ms_per_step_median;
  return { stats: { median: med, min: j.ms_per_step_min, max: j.ms_per_step_max, spread: (j.ms_per_step_max - j.ms_per_step_min) / med,
    runs: j.steps, warmup, samples: [] }, impl: j.impl, peakMemoryMiB: j.peak_memory_mib };
}

interface EagerRun {
  stats: Stats;
  /** HF transformers' CLIP, or the torch-only one of the script (a machine without transformers) */
  impl: 'hf' | 'torch';
  /** CUDA: torch.cuda.max_memory_allocated over the timed steps */
  peakMemoryMiB: number | null;
}

async function runNative(m: PennyModel, cfg: Config, warmup: number, runs: number): Promise<Stats> {
  const [c, h, w] = m.inputShape;
  const shape = [cfg.batch, c, h, w];
  const pixels = randomNormal(cfg.batch * c * h * w, 1234 + cfg.batch);
  const labels = Int32Array.from({ length: cfg.batch }, (_, i) => i % NUM_CLASSES);
  const fn = cfg.mode === 'train'
    ? () => m.trainStep(pixels, shape, labels, { lr: 1e-4 })
    : () => m.predict(pixels, shape);
  return measure(fn, { warmup, runs });
}


export async function runStep(ctx: BenchContext): Promise<PartResult> {
  const torchVersion = probeTorch();
  const device = ctx.device;
  const target = device === 'cpu' ? TARGET.cpu : TARGET.cuda;
  const notes: string[] = [];
  if (!torchVersion) notes.push(`PyTorch eager: not available to ${PYTHON} (pip install torch==2.13.0 transformers; BENCH_PYTHON picks another Python)`);
  else notes.push(`PyTorch eager: torch ${torchVersion} (${PYTHON}), run after native, never at the same time`);
  setNumThreads(ctx.threads);

  const results: RowResult[] = [];
  const models = new Map<string, PennyModel>();
  try {
    for (const cfg of stepConfigs(device)) {
      const { warmup, runs } = ctx.quick ? cfg.quick : cfg;
      let m = models.get(cfg.backbone);
      if (!m) {
        ctx.log(`creating ${cfg.backbone} on ${device} (random init, seed 0)`);
        m = await createModel({ backbone: cfg.backbone, numClasses: NUM_CLASSES, seed: 0, threads: ctx.threads, device });
        models.set(cfg.backbone, m);
      }
      m.setPrecision(cfg.precision);
      ctx.log(`${cfg.name}: native, ${warmup} warm-up + ${runs} runs`);
      const ns = await runNative(m, cfg, warmup, runs);
      const native = { stats: ns, value: figure(ns, cfg.batch, cfg.unit) };
      let eager: (Side & Omit<EagerRun, 'stats'>) | null = null;
      let eagerError: string | undefined;
      if (torchVersion) {
        ctx.log(`${cfg.name}: PyTorch eager, ${warmup} warm-up + ${runs} runs`);
        try {
          const { stats, impl, peakMemoryMiB } = runEager(cfg, device, ctx.threads, warmup, runs);
          eager = { stats, value: figure(stats, cfg.batch, cfg.unit), impl, peakMemoryMiB };
        } catch (e) {
          eagerError = (e as Error).message;
          notes.push(`${cfg.name}: PyTorch eager failed: ${eagerError}`);
        }
      }
      // Time per step either way: eager/native time is native's speed relative to eager's.
      const ratio = eager ? eager.stats.median / native.stats.median : null;
      results.push({ name: cfg.name, backbone: cfg.backbone, mode: cfg.mode, batch: cfg.batch, precision: cfg.precision, unit: cfg.unit,
        native, eager, eagerError, ratio });
    }
  } finally {
    for (const m of models.values()) m.dispose();
  }

  const head = ['config', 'unit', 'native', 'spread'];
  if (torchVersion) head.push('PyTorch eager', 'spread', 'native/eager', 'target');
  const rows = results.map((r) => {
    const row = [r.name, r.unit, fmt(r.native.value), pct(r.native.stats)];
    if (torchVersion) {
      if (r.eager && r.ratio !== null) {
        // rounded down, so a ratio shown as 0.95x never hides a miss of 0.947
        row.push(fmt(r.eager.value), pct(r.eager.stats), ratioStr(r.ratio), `>= ${target.toFixed(2)}x ${verdict(r.ratio >= target)}`);
      } else {
        row.push('error', '', '', `>= ${target.toFixed(2)}x`);
      }
    }
    return row;
  });
  notes.push(`device ${device}; threads: ${ctx.threads}${torchVersion ? ' (native and PyTorch)' : ''}; figures are medians, spread = (max-min)/median ` +
    'of the step times' + (torchVersion ? '; native/eager is a speed ratio (>1: native faster), also for ms/step' : ''));
  const impls = new Set(results.map((r) => r.eager?.impl).filter(Boolean));
  if (impls.has('torch')) notes.push("PyTorch eager ran the script's torch-only CLIP (transformers is not installed there): the same architecture, not HF's code");
  const peaks = results.filter((r) => r.eager?.peakMemoryMiB).map((r) => `${r.name} ${r.eager!.peakMemoryMiB} MiB`);
  if (peaks.length) notes.push(`PyTorch peak allocated memory: ${peaks.join(', ')}`);

  return { head, rows, notes, data: { device, threads: ctx.threads, quick: ctx.quick, target, torchPython: torchVersion, results } };
}
