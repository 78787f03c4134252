// Sony's own IMX500 toolchain on a model trained here: MCT's quantization, MCT's ONNX and imx500-converter's verdict
// (packerOut.zip, dnnParams.xml, the memory report), never a mock of it. Needs `npm run setup:imx500`; CI runs that
// and sets PENNY_TEST_IMX500=1, so there it cannot be skipped.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { imx500Venv } from '../src/export/imx500-toolchain.js';
import { listFiles, runCli, scratchRun } from './helpers.js';

const present = fs.existsSync(path.join(imx500Venv(), 'bin', 'imxconv-pt'));
const run = present || process.env.PENNY_TEST_IMX500 === '1' ? it : it.skip;

describe('penny-train imx500', () => {
  /** The converter's verdict line and the files of the folder it names. */
  const verdict = (out: string, cwd: string) => {
    const m = /^IMX500 \(imx500-converter\): ([\d.]+) (KB|MB) of 8\.00 MB used, fits in the chip; packerOut\.zip for imx500-package in (\S+)$/m.exec(out);
    expect(m, out).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(out).toMatch(/^MCT int8 vs fp32 on \d+ test images: acc [\d.]+ vs [\d.]+, F1 \(Macro\) [\d.]+ vs [\d.]+, top-1 agreement [\d.]+$/m);
    const files = listFiles(path.join(cwd, m![3]));
    expect(files).toEqual(expect.arrayContaining([
      expect.stringMatching(/^mint_\d{8}-\d{6}_mct\.onnx$/), 'imxconv/packerOut.zip', 'imxconv/dnnParams.xml', expect.stringMatching(/^imxconv\/.*_MemoryReport\.json$/),
    ]));
    expect(fs.statSync(path.join(cwd, m![3], 'imxconv/packerOut.zip')).size).toBeGreaterThan(10_000);
    return m![3];
  };

  run('ends a training run of a cnn_small (imx500_compatible) and runs on its checkpoint: MCT, imx500-converter, packerOut.zip, memory of 8 MB, int8 vs fp32', async () => {
    const { cwd, config } = scratchRun((y) => y.replace(/(mint:[\s\S]*?)backbone: clip_vit_tiny/, '$1backbone: cnn_small'));
    const trained = await runCli(['-m', 'mint', '--epochs', '1', '--batch_size', '8', '--data_examples', '--config_file', config], cwd, { PENNY_IMX500: 'on' });
    expect(trained.code, trained.stderr).toBe(0);
    const dir = verdict(trained.stdout, cwd);
    expect(dir).toMatch(/^models\/mint\/mint_\d{8}-\d{6}_imx500$/);
    const record = /^Run record: (\S+)\//m.exec(trained.stdout)![1];
    const results = JSON.parse(fs.readFileSync(path.join(cwd, record, 'results.json'), 'utf8'));
    expect(results.imx500_converter).toMatchObject({ dir, fits: true, error: null });

    // the command, on the checkpoint, calibrated on a folder of images
    const r = await runCli(['imx500', '--checkpoint', 'output/checkpoints/mint_best.pt', '--data_examples', '--output', 'sensor',
      '--calibration', path.join(cwd, 'data_examples')], cwd);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/through MCT \(IMX500 target platform, \d+ images of .*data_examples\)/);
    expect(verdict(r.stdout, cwd)).toMatch(/^sensor\/mint_\d{8}-\d{6}_imx500$/);
    expect(listFiles(path.join(cwd, 'sensor')).every((f) => !f.includes('.tmp-'))).toBe(true);
  }, 1_200_000);

  run("a model the toolchain cannot take (a ViT): the tool's own reason and penny-train's explanation, exit 2, no traceback", async () => {
    const { cwd, config } = scratchRun();
    const trained = await runCli(['-m', 'side', '--epochs', '1', '--batch_size', '8', '--data_examples', '--config_file', config, '--set', 'quantize=false'], cwd);
    expect(trained.code, trained.stderr).toBe(0);
    const r = await runCli(['imx500', '--checkpoint', 'output/checkpoints/side_best.pt', '--data_examples', '--output', 'sensor'], cwd);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^penny-train: IMX500: (imx500-converter refused the model|MCT \(model-compression-toolkit\) could not quantize the model)/m);
    expect(r.stderr).toMatch(/The IMX500 runs int8 CNNs whose weights and activations fit its 8 MB; clip_vit_tiny has [\d,]+ parameters/);
    expect(r.stdout + r.stderr).not.toMatch(/Traceback|at convertForImx500|\.py", line/);
    expect(listFiles(path.join(cwd, 'sensor')).filter((f) => f.endsWith('packerOut.zip'))).toEqual([]);
  }, 600_000);

  it('without the toolchain: one line saying how to set it up, exit 2', async () => {
    const { cwd } = scratchRun();
    fs.mkdirSync(path.join(cwd, 'output'));
    const r = await runCli(['imx500', '--checkpoint', 'nothing.pt'], cwd, { PENNY_IMX500_VENV: path.join(cwd, 'no-venv') });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^penny-train: the IMX500 toolchain is not set up \(no imxconv-pt in .*no-venv\): run `npm run setup:imx500`/m);
    expect(listFiles(path.join(cwd, 'output'))).toEqual([]);
  });
});
