// `step` part: train and eval step throughput of the native backend, side by side with PyTorch eager on the same
// model, batch and thread count. The lead question is whether the N-API + graph-interpreter layer costs anything
// against plain PyTorch, so both sides time the same thing: one full step on fixed, pre-built inputs.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel, setNumThreads, type PennyModel } from '../../src/index.js';
import { fmt, pct, randomNormal, ratioStr, verdict } from './common.js';
import type { BenchContext, PartResult } from './index.js';
import { measure, type Stats } from './stats.js';

const TORCH_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'torch_eager_step.py');
/** native must reach this fraction of PyTorch eager's speed */
const TARGET = 0.95;

interface Config {
  name: string;
  backbone: 'coin_clip_vit_b32' | 'clip_vit_tiny';
  /** the Python script's name for the same backbone */
  pyBackbone: 'b32' | 'tiny';
  mode: 'train' | 'eval';
  batch: number;
  /** img/s for throughput; ms/step where the fixed per-step cost is the point (tiny model) */
  unit: 'img/s' | 'ms/step';
  warmup: number;
  runs: number;
  quick: { warmup: number; runs: number };
}

// Step counts sized for a quiet 2-core CPU (B/32 train b32 ~3-4 s/step): the full part takes ~5 min, --quick
// under 2; more runs would tighten the medians little, fewer let one slow step move them.
const CONFIGS: Config[] = [
  { name: 'ViT-B/32 train b8', backbone: 'coin_clip_vit_b32', pyBackbone: 'b32', mode: 'train', batch: 8, unit: 'img/s', warmup: 2, runs: 20, quick: { warmup: 1, runs: 3 } },
  { name: 'ViT-B/32 train b32', backbone: 'coin_clip_vit_b32', pyBackbone: 'b32', mode: 'train', batch: 32, unit: 'img/s', warmup: 1, runs: 15, quick: { warmup: 1, runs: 3 } },
  { name: 'ViT-B/32 eval b8', backbone: 'coin_clip_vit_b32', pyBackbone: 'b32', mode: 'eval', batch: 8, unit: 'img/s', warmup: 3, runs: 50, quick: { warmup: 1, runs: 5 } },
  { name: 'ViT-B/32 eval b32', backbone: 'coin_clip_vit_b32', pyBackbone: 'b32', mode: 'eval', batch: 32, unit: 'img/s', warmup: 2, runs: 20, quick: { warmup: 1, runs: 3 } },
  { name: 'tiny train b8 64px', backbone: 'clip_vit_tiny', pyBackbone: 'tiny', mode: 'train', batch: 8, unit: 'ms/step', warmup: 20, runs: 200, quick: { warmup: 5, runs: 20 } },
];

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
  unit: string;
  native: Side;
  eager: Side | null;
  eagerError?: string;
  /** native speed / eager speed (>1: native is faster), whatever the unit */
  ratio: number | null;
}

function figure(stats: Stats, batch: number, unit: Config['unit']): number {
  return unit === 'img/s' ? (batch * 1000) / stats.median : stats.median;
}

/** torch's version when python3 can import torch and transformers, else null. */
function probeTorch(): string | null {
  const r = spawnSync('python3', ['-c', 'import torch, transformers; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

interface EagerJson {
  ms_per_step_median: number;
  ms_per_step_min: number;
  ms_per_step_max: number;
  steps: number;
  threads: number;
}

function runEager(cfg: Config, threads: number, warmup: number, runs: number): Stats {
  const args = [TORCH_SCRIPT, '--backbone', cfg.pyBackbone, '--mode', cfg.mode, '--batch', String(cfg.batch),
    '--threads', String(threads), '--steps', String(runs), '--warmup', String(warmup), '--classes', String(NUM_CLASSES)];
  const r = spawnSync('python3', args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) {
    const tail = (r.stderr || String(r.error ?? '')).trim().split('\n').slice(-3).join(' | ');
    throw new Error(`torch_eager_step.py exited ${r.status}: ${tail}`);
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const j = JSON.parse(line) as EagerJson;
  if (j.threads !== threads) throw new Error(`PyTorch ran on ${j.threads} threads, not ${threads}`);
  // The script reports median/min/max only; the spread is computed from them the same way as for native.
  const med = j.ms_per_step_median;
  return { median: med, min: j.ms_per_step_min, max: j.ms_per_step_max, spread: (j.ms_per_step_max - j.ms_per_step_min) / med,
    runs: j.steps, warmup, samples: [] };
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
  const notes: string[] = [];
  if (!torchVersion) notes.push('PyTorch eager: not available (pip install torch==2.13.0 transformers)');
  else notes.push(`PyTorch eager: torch ${torchVersion} (python3), run after native, never at the same time`);
  setNumThreads(ctx.threads);

  const results: RowResult[] = [];
  const models = new Map<string, PennyModel>();
  try {
    for (const cfg of CONFIGS) {
      const { warmup, runs } = ctx.quick ? cfg.quick : cfg;
      let m = models.get(cfg.backbone);
      if (!m) {
        ctx.log(`creating ${cfg.backbone} (random init, seed 0)`);
        m = await createModel({ backbone: cfg.backbone, numClasses: NUM_CLASSES, seed: 0, threads: ctx.threads });
        models.set(cfg.backbone, m);
      }
      ctx.log(`${cfg.name}: native, ${warmup} warm-up + ${runs} runs`);
      const ns = await runNative(m, cfg, warmup, runs);
      const native = { stats: ns, value: figure(ns, cfg.batch, cfg.unit) };
      let eager: Side | null = null;
      let eagerError: string | undefined;
      if (torchVersion) {
        ctx.log(`${cfg.name}: PyTorch eager, ${warmup} warm-up + ${runs} runs`);
        try {
          const es = runEager(cfg, ctx.threads, warmup, runs);
          eager = { stats: es, value: figure(es, cfg.batch, cfg.unit) };
        } catch (e) {
          eagerError = (e as Error).message;
          notes.push(`${cfg.name}: PyTorch eager failed: ${eagerError}`);
        }
      }
      // Time per step either way: eager/native time is native's speed relative to eager's.
      const ratio = eager ? eager.stats.median / native.stats.median : null;
      results.push({ name: cfg.name, backbone: cfg.backbone, mode: cfg.mode, batch: cfg.batch, unit: cfg.unit,
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
        row.push(fmt(r.eager.value), pct(r.eager.stats), ratioStr(r.ratio), `>= ${TARGET.toFixed(2)}x ${verdict(r.ratio >= TARGET)}`);
      } else {
        row.push('error', '', '', `>= ${TARGET.toFixed(2)}x`);
      }
    }
    return row;
  });
  notes.push(`threads: ${ctx.threads}${torchVersion ? ' (native and PyTorch)' : ''}; figures are medians, spread = (max-min)/median ` +
    'of the step times' + (torchVersion ? '; native/eager is a speed ratio (>1: native faster), also for ms/step' : ''));

  return { head, rows, notes, data: { threads: ctx.threads, quick: ctx.quick, target: TARGET, torchPython: torchVersion, results } };
}
