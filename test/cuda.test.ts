// The CUDA path, where there is a GPU: PENNY_TEST_DEVICE=cuda (scripts/gpu-check.sh sets it) runs these; without it
// they are skipped (CI's machines have no GPU). What they pin: a train step on the GPU is the CPU's, checkpoints move
// between the two, and a CUDA-trained model exports (its ONNX parity checked on the GPU's own forward).
// PENNY_TEST_DEVICE=cpu runs the same comparisons CPU against CPU: how gpu-check.sh's dry run checks them here.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createModel, nativeInfo } from '../src/index.js';
import { runCli, scratchRun } from './helpers.js';

const DEVICE = process.env.PENNY_TEST_DEVICE;

function batch(n: number, size: number, seed: number) {
  const pixels = new Float32Array(n * 3 * size * size).map((_, i) => Math.sin(i * 0.113 + seed));
  return { pixels, shape: [n, 3, size, size], labels: Int32Array.from({ length: n }, (_, i) => (i + seed) % 5) };
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe.runIf(DEVICE)(`device ${DEVICE} against the CPU`, () => {
  it.runIf(DEVICE?.startsWith('cuda'))('sees the GPU', () => {
    expect(nativeInfo().cudaAvailable).toBe(true);
    expect(nativeInfo().cudaDeviceCount).toBeGreaterThan(0);
  });

  // clip_vit_tiny: matrix products only (its patch conv is one too), which LibTorch runs in full fp32 on CUDA (cuDNN's
  // convolutions may use TF32 on Ampere and later, which is why no CNN is compared here). The first step starts from
  // the same weights: only the kernels differ. After it AdamW, which moves a weight by ~lr whatever its gradient's
  // size, can turn a rounding difference in a near-zero gradient into up to 2 lr: so the weights are held to 1e-4 in
  // 99.9% of their values and to 2 lr x steps in all.
  it('train steps of clip_vit_tiny on the GPU follow the CPU\'s: losses, logits, weights', async () => {
    const make = (device: string) => createModel({ backbone: 'clip_vit_tiny', numClasses: 5, seed: 7, device });
    const [cpu, gpu] = [await make('cpu'), await make(DEVICE!)];
    const lr = 1e-3, steps = 5;
    try {
      expect(gpu.getParams()['head.weight']).toEqual(cpu.getParams()['head.weight']);
      for (let s = 0; s < steps; s++) {
        const { pixels, shape, labels } = batch(8, 64, s);
        const [a, b] = [await cpu.trainStep(pixels, shape, labels, { lr }), await gpu.trainStep(pixels, shape, labels, { lr })];
        expect(Math.abs(a.loss - b.loss) / a.loss, `step ${s + 1}`).toBeLessThan(s === 0 ? 1e-5 : 1e-3);
        expect(maxAbs(a.logits, b.logits), `step ${s + 1}`).toBeLessThan(s === 0 ? 1e-4 : 1e-2);
      }
      const [pc, pg] = [cpu.getParams(), gpu.getParams()];
      let n = 0, close = 0;
      for (const name of cpu.paramNames) {
        expect(maxAbs(pc[name], pg[name]), name).toBeLessThan(2 * lr * steps);
        for (let i = 0; i < pc[name].length; i++, n++) if (Math.abs(pc[name][i] - pg[name][i]) <= 1e-4) close++;
      }
      expect(close / n).toBeGreaterThan(0.999);
    } finally {
      cpu.dispose();
      gpu.dispose();
    }
  });

  it('bf16 and fp16 steps on the GPU follow fp32 (loss within 2%), the weights stay float32', async () => {
    for (const precision of ['bf16', 'fp16'] as const) {
      const make = (p: 'fp32' | typeof precision) => createModel({ backbone: 'clip_vit_tiny', numClasses: 5, seed: 7, device: DEVICE!, precision: p });
      const [f32, low] = [await make('fp32'), await make(precision)];
      try {
        const { pixels, shape, labels } = batch(16, 64, 1);
        const w0 = low.getParams()['head.weight'].slice();
        const [a, b] = [await f32.trainStep(pixels, shape, labels, { lr: 1e-3 }), await low.trainStep(pixels, shape, labels, { lr: 1e-3 })];
        expect(Math.abs(a.loss - b.loss) / a.loss, precision).toBeLessThan(0.02);
        // fp16's loss scale starts at 2^16: a first step may overflow and be skipped, the scale halving, as in PyTorch
        let stepped = !b.skipped;
        for (let s = 0; s < 3 && !stepped; s++) stepped = !(await low.trainStep(pixels, shape, labels, { lr: 1e-3 })).skipped;
        expect(stepped, precision).toBe(true);
        expect(low.getParams()['head.weight']).toBeInstanceOf(Float32Array);
        expect(low.getParams()['head.weight']).not.toEqual(w0);
      } finally {
        f32.dispose();
        low.dispose();
      }
    }
  });

  it('trains on the GPU, exports (parity on the GPU), resumes on the CPU from the GPU checkpoint and back', async () => {
    const { cwd, config } = scratchRun();
    const base = ['-m', 'side', '--batch_size', '8', '--data_examples', '--config_file', config];
    const gpu = await runCli([...base, '--epochs', '1', '--device', DEVICE!], cwd);
    expect(gpu.code, gpu.stderr).toBe(0);
    expect(gpu.stdout).toMatch(new RegExp(`^penny-train .*, ${DEVICE}, native backend`, 'm'));
    const parity = /^ONNX parity \(onnxruntime vs native, \d+ val images\): max \|diff\| (\S+)$/m.exec(gpu.stdout);
    expect(parity, gpu.stdout).not.toBeNull();
    expect(Number(parity![1])).toBeLessThan(1e-4);
    expect(gpu.stdout).toMatch(/^Exported: models\/side\/side_\d{8}-\d{6}_int8\.onnx$/m);
    const last = path.join(cwd, 'output/checkpoints/side_last.pt');
    // the GPU's checkpoint resumed on the CPU for epoch 2, that one on the GPU for epoch 3
    const cpu = await runCli([...base, '--epochs', '2', '--device', 'cpu', '--resume', last], cwd);
    expect(cpu.code, cpu.stderr).toBe(0);
    expect(cpu.stdout).toMatch(/^Resumed from .*side_last\.pt: epoch 1/m);
    expect(cpu.stdout).toMatch(/^Epoch 2\/2 Summary: /m);
    const back = await runCli([...base, '--epochs', '3', '--device', DEVICE!, '--resume', last], cwd);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toMatch(/^Epoch 3\/3 Summary: /m);
    expect(fs.existsSync(path.join(cwd, 'output/checkpoints/side_best.pt'))).toBe(true);
  }, 300_000);
});
