// The CLI end to end on data_examples with the tiny backbone, and its exit statuses on bad input.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { metadataOf, readModel } from '../src/export/onnx-proto.js';
import { listFiles, ROOT, runCli, scratchRun, waitForFile } from './helpers.js';

const SANITY = ['-m', 'side', '--epochs', '1', '--batch_size', '8', '--device', 'cpu', '--data_examples'];

describe('penny-train CLI', () => {
  it('runs the sanity command: the console lines of the original, checkpoints, log, label map', async () => {
    const { cwd, config } = scratchRun();
    const r = await runCli([...SANITY, '--config-file', config], cwd);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/^Loaded PennyDataset: \d+ train \/ \d+ val \/ \d+ test$/m);
    expect(out).toMatch(/^Model head: Linear\(in_features=64, out_features=5\)$/m);
    expect(out).toMatch(/^Epoch 1\/1 Summary: Train Loss: \d+\.\d{4}, Val Loss: \d+\.\d{4}, Val Acc: [01]\.\d{4}, Val F1 \(Macro\): [01]\.\d{4}, Duration: \d+\.\ds$/m);
    expect(r.stderr).toMatch(/WARNING: no pretrained weights for clip_vit_tiny/);
    const exported = [...out.matchAll(/^Exported: (models\/side\/side_\d{8}-\d{6}_(fp32|int8)\.onnx)$/gm)];
    expect(exported.map((m) => m[2])).toEqual(['fp32', 'int8']);
    for (const [, file] of exported) expect(fs.statSync(path.join(cwd, file)).size).toBeGreaterThan(1000);
    const files = listFiles(path.join(cwd, 'output'));
    expect(files).toEqual(expect.arrayContaining(['checkpoints/side_last.pt', 'checkpoints/side_best.pt', 'label_maps/side_label_map.json']));
    const logFile = files.find((f) => /^training_logs\/side_\d{8}-\d{6}\.log$/.test(f));
    expect(logFile).toBeDefined();
    const logged = fs.readFileSync(path.join(cwd, 'output', logFile!), 'utf8');
    for (const line of out.trim().split('\n')) expect(logged).toContain(line);
    expect(logged).toMatch(/WARNING: no pretrained weights/);
    expect(JSON.parse(fs.readFileSync(path.join(cwd, 'output/label_maps/side_label_map.json'), 'utf8'))['4']).toBe('bicentennial');

    // the run record, and the closing block naming every file
    expect(out).toMatch(/^penny-train \d+\.\d+\.\d+: side, clip_vit_tiny \([\d,]+ parameters\), cpu, native backend \(\d+ threads\), LibTorch \d/m);
    const run = /^Run record: (output\/runs\/side_\d{8}-\d{6})\/ \(config\.yaml, metrics\.csv, results\.json, (\d+) plots\); open (\S+)$/m.exec(out);
    expect(run, out).not.toBeNull();
    const [, dir, plots, report] = run!;
    expect(report).toBe(`${dir}/report.html`);
    expect(Number(plots)).toBeGreaterThanOrEqual(4);   // loss, accuracy, lr, confusion (+ the worst misclassified, if any)
    const csv = fs.readFileSync(path.join(cwd, dir, 'metrics.csv'), 'utf8').trim().split('\n');
    expect(csv).toHaveLength(2);   // the header and the one epoch
    const results = JSON.parse(fs.readFileSync(path.join(cwd, dir, 'results.json'), 'utf8'));
    expect(results.test.acc.toFixed(4)).toBe(/^Test \(best weights\): Loss: [\d.]+, Acc: ([\d.]+)/m.exec(out)![1]);
    expect(results.test.per_class.map((c: { label: string }) => c.label)).toEqual(Object.values(JSON.parse(fs.readFileSync(path.join(cwd, 'output/label_maps/side_label_map.json'), 'utf8'))));
    const block = /^Files written:\n((?: {2}\S+\n)+)/m.exec(out + '\n');
    expect(block).not.toBeNull();
    const listed = block![1].trim().split('\n').map((l) => l.trim());
    expect(listed).toEqual(expect.arrayContaining(['output/checkpoints/side_best.pt', exported[0][1], `${dir}/report.html`, logFile && `output/${logFile}`]));
    for (const f of listed) expect(fs.existsSync(path.join(cwd, f)), f).toBe(true);
    expect(out).toMatch(/^Total time: \d+:\d\d$/m);
  });

  it('re-exports a checkpoint with `export`: from its stored config, with or without the data, and refuses one that does not fit a config', async () => {
    const { cwd, config } = scratchRun();
    expect((await runCli([...SANITY, '-m', 'mint', '--config_file', config], cwd)).code).toBe(0);
    const r = await runCli(['export', '--checkpoint', 'output/checkpoints/mint_best.pt', '--config_file', config, '--data_examples'], cwd);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ONNX parity \(onnxruntime vs native, \d+ val images\): max \|diff\| /m);
    expect(r.stdout).toMatch(/^Exported: models\/mint\/mint_\d{8}-\d{6}_fp32\.onnx$/m);
    expect(r.stdout).toMatch(/^Exported: models\/mint\/mint_\d{8}-\d{6}_int8\.onnx$/m);
    // from the checkpoint alone (its stored config), in a folder without the training data
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-export-'));
    fs.cpSync(path.join(cwd, 'output/checkpoints/mint_best.pt'), path.join(bare, 'mint_best.pt'));
    const alone = await runCli(['export', '--checkpoint', 'mint_best.pt', '--output', 'fp32-only'], bare);
    expect(alone.code, alone.stderr).toBe(0);
    expect(alone.stderr).toMatch(/ONNX parity: no images to check it on/);
    expect(alone.stdout).toMatch(/^INT8: skipped, no images to calibrate on \(the training data is absent\)/m);
    expect(listFiles(path.join(bare, 'fp32-only'))).toEqual([expect.stringMatching(/^mint_\d{8}-\d{6}_fp32\.onnx$/)]);
    const examples = path.join(ROOT, 'data_examples');
    const calibrated = await runCli(['export', '--checkpoint', 'mint_best.pt', '--output', 'both', '--calibration', examples, '--set', 'calibration_method=percentile'], bare);
    expect(calibrated.code, calibrated.stderr).toBe(0);
    expect(calibrated.stdout).toContain(`ONNX parity (onnxruntime vs native, 8 images of ${examples}): max |diff| `);
    expect(listFiles(path.join(bare, 'both')).map((f) => f.replace(/\d{8}-\d{6}/, 'T')).sort()).toEqual(['mint_T_fp32.onnx', 'mint_T_int8.onnx']);
    const int8File = listFiles(path.join(bare, 'both')).find((f) => f.endsWith('_int8.onnx'))!;
    expect(metadataOf(readModel(path.join(bare, 'both', int8File))).quantization).toMatch(/^static QDQ, percentile on /);   // --set reached the config
    const noInt8 = await runCli(['export', '--checkpoint', 'output/checkpoints/mint_best.pt', '--output', 'no-int8', '--no-int8', '--data_examples'], cwd);
    expect(noInt8.code, noInt8.stderr).toBe(0);
    expect(listFiles(path.join(cwd, 'no-int8'))).toEqual([expect.stringMatching(/_fp32\.onnx$/)]);

    const other = scratchRun((y) => y.replaceAll('backbone: clip_vit_tiny', 'backbone: coin_clip_vit_b32'));
    fs.cpSync(path.join(cwd, 'output'), path.join(other.cwd, 'output'), { recursive: true });
    const bad = await runCli(['export', '--checkpoint', 'output/checkpoints/mint_best.pt', '--config_file', other.config, '--data_examples'], other.cwd);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/mint_best\.pt holds a clip_vit_tiny model, but the config asks for coin_clip_vit_b32/);
    expect(listFiles(path.join(other.cwd, 'models'))).toEqual([]);
  });

  it('prints its version with --version and exits 0', async () => {
    const r = await runCli(['--version'], process.cwd());
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
  });

  it('prints a true --help and exits 0', async () => {
    const r = await runCli(['--help'], process.cwd());
    expect(r.code).toBe(0);
    for (const flag of ['--model_key', '--epochs', '--resume', '--device', '--config_file', '--data_examples', '--batch_size', '--batch-size', 'export']) {
      expect(r.stdout).toContain(flag);
    }
  });

  const bad: [string, string[], (y: string) => string, RegExp][] = [
    ['an unknown model', ['-m', 'coin'], (y) => y, /argument 'coin' is invalid/],
    ['no model', [], (y) => y, /required option '-m, --model_key <key>' not specified/],
    ['a bad --epochs', ['-m', 'side', '--epochs', '0'], (y) => y, /--epochs must be a positive integer/],
    ['a config typo', ['-m', 'side'], (y) => y.replace('  seed: 42\n', '  sed: 42\n'), /unknown key 'sed' \(did you mean 'seed'\?\)/],
    ['a model_type mismatch', ['-m', 'date'], (y) => y.replace('model_type: date', 'model_type: side'), /date\.model_type is 'side'/],
    ['qat', ['-m', 'side'], (y) => y.replace('  qat: false\n', '  qat: true\n'), /quantization-aware training is not available yet/],
    ['bad metadata', ['-m', 'side'], (y) => y.replace(/metadata_json_path: .*/g, 'metadata_json_path: data_examples/UID000001.jpg'), /metadata .*UID000001\.jpg is not valid JSON/],
    ['a foreign checkpoint', ['-m', 'side', '--resume', 'config.yaml'], (y) => y, /cannot read checkpoint config\.yaml/],
    ['a bad device', ['-m', 'side', '--device', 'gpu'], (y) => y, /--device "gpu": not a valid device/],
    ['a GPU this CPU build cannot give', ['-m', 'side', '--device', 'cuda:7'], (y) => y, /device 'cuda:7' asked for, but (penny-train was built against a CPU-only LibTorch|only \d+ CUDA device)/],
    ['a bad --set', ['-m', 'side', '--set', 'lr=fast', '--set', 'augment.hux=1'], (y) => y,
      /with --set: side\.lr must be a number, got "fast"[\s\S]*side\.augment: unknown key 'hux' \(did you mean 'hue'\?\)/],
    ['rotate_relabel on date', ['-m', 'date'], (y) => y.replace(/(date:[\s\S]*?hflip_p: 0\.0\n)/, '$1    rotate_relabel: true\n'),
      /date\.augment\.rotate_relabel applies to orientation only/],
    ['an img_size the backbone cannot take', ['-m', 'side'], (y) => y.replace('img_size: [32, 32]', 'img_size: [32, 40]'),
      /side\.img_size: clip_vit_tiny reads 16x16 patches: height and width must be multiples of 16, got \[32, 40\]/],
    ['a date sample without an angle under align_roi', ['-m', 'date'], (y) => y
      .replace(/(date:[\s\S]*?)( {2}output_dir)/, '$1  align_roi: true\n$2')
      .replace(/(date:[\s\S]*?metadata_json_path: ).*/, '$1no-angle.json'),
    /no-angle\.json: UID UID\d+\.jpg: no angle, which align_roi needs to read its date_roi upright/],
  ];
  for (const [what, args, edit, message] of bad) {
    it(`exits 2 on ${what}, leaving no output files`, async () => {
      const { cwd, config } = scratchRun(edit);
      const meta = JSON.parse(fs.readFileSync(path.join(cwd, 'metadata', 'metadata.json'), 'utf8')) as { side: string; angle?: number }[];
      delete meta.find((m) => m.side === 'obverse')!.angle;
      fs.writeFileSync(path.join(cwd, 'no-angle.json'), JSON.stringify(meta));
      const r = await runCli([...args, '--data_examples', '--config_file', config], cwd);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);   // no stack trace for the user's mistakes
      expect(listFiles(path.join(cwd, 'output'))).toEqual([]);
      expect(listFiles(path.join(cwd, 'models'))).toEqual([]);
    });
  }

  it('exits 130 on Ctrl-C after writing _last.pt, which --resume continues from', async () => {
    const { cwd, config } = scratchRun((y) => y.replace(/num_epochs: \d+/g, 'num_epochs: 30'));
    const child = runCli(['-m', 'side', '--batch_size', '8', '--data_examples', '--config_file', config], cwd);
    await waitForFile(path.join(cwd, 'output/checkpoints/side_last.pt'));
    child.child.kill('SIGINT');
    const r = await child;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/interrupted; state saved to output\/checkpoints\/side_last\.pt/);
    const resumed = await runCli(['-m', 'side', '--batch_size', '8', '--epochs', '30', '--data_examples', '--config_file', config,
      '--resume', 'output/checkpoints/side_last.pt'], cwd);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/^Resumed from output\/checkpoints\/side_last\.pt: epoch \d+/m);
    expect(resumed.stdout).toMatch(/^Epoch 30\/30 Summary/m);
  });
});
