// Mixed precision (precision: bf16 | fp16): autocast around the native forward, fp32 master weights, fp16's loss
// scale, and who may ask for what. The CUDA runs of the same are scripts/gpu-check.sh's (PENNY_TEST_DEVICE=cuda).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkPrecision } from '../src/backend/index.js';
import { bf16Instructions, cpuHasBf16 } from '../src/backend/cpu-features.js';
import type { Precision } from '../src/backend/types.js';
import { createModel, type PennyModel } from '../src/index.js';
import { listFiles, runCli, scratchRun } from './helpers.js';

const DEVICE = process.env.PENNY_TEST_DEVICE ?? 'cpu';

async function pair(backbone: string, size: number, precision: Precision): Promise<[PennyModel, PennyModel]> {
  const make = (p: Precision) => createModel({ backbone, numClasses: 5, imageSize: size, seed: 3, device: DEVICE, precision: p });
  return [await make('fp32'), await make(precision)];
}

function batch(n: number, size: number) {
  const pixels = new Float32Array(n * 3 * size * size).map((_, i) => Math.sin(i * 0.37) * 1.5);
  return { pixels, shape: [n, 3, size, size], labels: Int32Array.from({ length: n }, (_, i) => i % 5) };
}

const relDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; n += b[i] ** 2; }
  return Math.sqrt(d / n);
};

describe('precision', () => {
  it('reads bf16 instructions from /proc/cpuinfo flags (x86) and features (Arm)', () => {
    expect(bf16Instructions('processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n')).toBe(true);
    expect(bf16Instructions('flags\t\t: fpu amx_bf16 amx_tile\n')).toBe(true);
    expect(bf16Instructions('Features\t: fp asimd bf16 i8mm\n')).toBe(true);
    expect(bf16Instructions('flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n')).toBe(false);
    expect(bf16Instructions('model name\t: bf16 marketing name\nflags\t\t: fpu avx2\n')).toBe(false);
  });

  it('refuses what would not run well: js backend below fp32, fp16 on the CPU, bf16 on a CPU without bf16 instructions', () => {
    expect(() => checkPrecision('js', 'cpu', 'bf16', () => true)).toThrow(/precision bf16 needs backend 'native'/);
    expect(() => checkPrecision('native', 'cpu', 'fp16', () => true)).toThrow(/precision fp16 is for CUDA devices/);
    expect(() => checkPrecision('native', 'cpu', 'bf16', () => false)).toThrow(/no bf16 instructions .* use precision fp32/);
    expect(() => checkPrecision('native', 'cpu', 'bf16', () => true)).not.toThrow();
    expect(() => checkPrecision('native', 'cuda', 'fp16', () => false)).not.toThrow();
    expect(() => checkPrecision('js', 'cpu', 'fp32', () => false)).not.toThrow();
  });

  for (const [backbone, size] of [['clip_vit_tiny', 32], ['cnn_small', 32]] as const) {
    it(`bf16 autocast on ${backbone}: loss, logits and the step follow fp32's; weights and outputs stay float32`, async () => {
      const [f32, b16] = await pair(backbone, size, 'bf16');
      try {
        const { pixels, shape, labels } = batch(8, size);
        const [lf, lb] = [await f32.predict(pixels, shape), await b16.predict(pixels, shape)];
        expect(lb).toBeInstanceOf(Float32Array);
        expect(relDiff(lb, lf)).toBeLessThan(0.05);   // bf16 keeps 8 bits of mantissa: ~0.4% per product
        expect(relDiff(lb, lf)).toBeGreaterThan(0);   // it did compute in bf16
        const before = f32.getParams();
        const [sf, sb] = [await f32.trainStep(pixels, shape, labels, { lr: 1e-3 }), await b16.trainStep(pixels, shape, labels, { lr: 1e-3 })];
        expect(Math.abs(sb.loss - sf.loss) / sf.loss).toBeLessThan(0.02);
        expect(sb.skipped).toBe(false);
        const [pf, pb] = [f32.getParams(), b16.getParams()];
        // AdamW's first step moves each weight by about lr in the sign of its gradient: the same signs, nearly all
        let same = 0, moved = 0;
        for (const name of f32.paramNames) {
          expect(pb[name]).toBeInstanceOf(Float32Array);
          for (let i = 0; i < pf[name].length; i++) {
            const df = pf[name][i] - before[name][i], db = pb[name][i] - before[name][i];
            if (Math.abs(df) < 1e-4) continue;
            moved++;
            if (Math.sign(df) === Math.sign(db)) same++;
          }
        }
        expect(moved).toBeGreaterThan(100);
        expect(same / moved).toBeGreaterThan(0.9);
      } finally {
        f32.dispose();
        b16.dispose();
      }
    });
  }

  it('setPrecision(fp32) computes exactly as a model made in fp32 (the test figures and export of a bf16 run)', async () => {
    const [f32, b16] = await pair('cnn_small', 32, 'bf16');
    try {
      const { pixels, shape } = batch(4, 32);
      b16.setPrecision('fp32');
      expect(await b16.predict(pixels, shape)).toEqual(await f32.predict(pixels, shape));
      b16.setPrecision('bf16');
      expect(await b16.predict(pixels, shape)).not.toEqual(await f32.predict(pixels, shape));
      expect(() => b16.setPrecision('fp8' as never)).toThrow(/precision must be 'fp32', 'bf16' or 'fp16', got 'fp8'/);
    } finally {
      f32.dispose();
      b16.dispose();
    }
  });

  it('fp16 skips a step whose gradients overflow, leaving the weights, and steps again on the next good batch', async () => {
    const [, m] = await pair('cnn_small', 32, 'fp16');
    try {
      const { pixels, shape, labels } = batch(4, 32);
      const w0 = m.getParams(['head.bias'])['head.bias'].slice();
      const huge = pixels.map((v) => v * 1e6);   // activations past fp16's 65504: inf, then NaN gradients
      const bad = await m.trainStep(huge, shape, labels, { lr: 1e-2 });
      expect(bad.skipped).toBe(true);
      expect(m.getParams(['head.bias'])['head.bias']).toEqual(w0);
      expect(Object.keys(m.getState().optimizer)).toHaveLength(0);   // AdamW took no step
      const good = await m.trainStep(pixels, shape, labels, { lr: 1e-2 });
      expect(good.skipped).toBe(false);
      expect(Number.isFinite(good.loss)).toBe(true);
      expect(m.getParams(['head.bias'])['head.bias']).not.toEqual(w0);
    } finally {
      m.dispose();
    }
  });

  it('the js backend has fp32 only', async () => {
    await expect(createModel({ backbone: 'cnn_small', numClasses: 2, imageSize: 16, backend: 'js', precision: 'bf16' }))
      .rejects.toThrow(/precision bf16 needs backend 'native'/);
  });

  it("penny-train --precision: bf16 trains where the CPU has bf16 instructions (else exit 2, nothing written); fp16 on the CPU is exit 2", async () => {
    const { cwd, config } = scratchRun();
    const args = ['-m', 'side', '--epochs', '1', '--batch_size', '8', '--device', 'cpu', '--data_examples', '--config_file', config];
    const fp16 = await runCli([...args, '--precision', 'fp16'], cwd);
    expect(fp16.code).toBe(2);
    expect(fp16.stderr).toMatch(/precision fp16 is for CUDA devices/);
    expect(listFiles(path.join(cwd, 'output'))).toEqual([]);
    const bf16 = await runCli([...args, '--precision', 'bf16'], cwd);
    if (cpuHasBf16()) {
      expect(bf16.code, bf16.stderr).toBe(0);
      expect(bf16.stdout).toMatch(/^Plan: .*, precision bf16 \(autocast, fp32 weights\)$/m);
      expect(bf16.stdout).toMatch(/^ONNX parity \(onnxruntime vs native, \d+ val images\): max \|diff\| \d\.\d+e-\d+$/m);
      expect(fs.existsSync(path.join(cwd, 'output/checkpoints/side_best.pt'))).toBe(true);
    } else {
      expect(bf16.code).toBe(2);
      expect(bf16.stderr).toMatch(/no bf16 instructions/);
      expect(listFiles(path.join(cwd, 'output'))).toEqual([]);
    }
  }, 120_000);
});
