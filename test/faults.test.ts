// Faults a run must survive or refuse cleanly: a full disk, signals at any phase, kill -9 at random points, another
// run's checkpoints, configs that expand without bound, runs that cannot fit in memory.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeInfo, readTorchFile } from '../src/backend/native.js';
import { InterruptedError } from '../src/errors.js';
import { train } from '../src/train/train.js';
import { cleanStaleTemps, writeFileAtomicSync, WriteError } from '../src/util/atomic.js';
import { listFiles, runCli, scratchRun, waitForFile } from './helpers.js';

const TINY = ['-m', 'side', '--batch_size', '8', '--threads', '1', '--data_examples'];
const temps = (dir: string) => listFiles(dir).filter((f) => /\.tmp-\d+/.test(f));
const paramsOf = async (file: string) => (await readTorchFile(file) as { model_state: Record<string, { data: Float32Array }> }).model_state;

/** A small file system of `bytes` (tmpfs) at a new folder, or null where this machine cannot mount one. */
function smallDisk(bytes: number): string | null {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    return null;
  }
}

describe('writes', () => {
  it('a file that cannot be written: WriteError naming it, the old file intact, no temporary left', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-atomic-'));
    const file = path.join(dir, 'a.json');
    writeFileAtomicSync(file, 'good');
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'sub', 'x'), '');
    // a file where a folder should be: ENOTDIR (root ignores permission bits, so this is the fault tests can make)
    const below = path.join(dir, 'sub', 'x', 'deeper', 'b.json');
    expect(() => writeFileAtomicSync(below, 'new')).toThrow(WriteError);
    expect(() => writeFileAtomicSync(below, 'new')).toThrow(/cannot write .*sub\/x\/deeper\/b\.json: a part of the path is not a folder \(ENOTDIR\)/);
    expect(fs.readFileSync(file, 'utf8')).toBe('good');
    expect(temps(dir)).toEqual([]);
  });

  it('removes the temporaries of dead processes only', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-stale-'));
    // a PID far above pid_max's default is no live process
    for (const name of ['side_last.pt.tmp-4194000', 'side_last.pt.tmp-4194001-0a1b2c3d', `side_best.pt.tmp-${process.pid}-00ff00ff`, 'notes.tmp', 'side_last.pt']) {
      fs.writeFileSync(path.join(dir, name), 'x');
    }
    const removed = cleanStaleTemps(dir).map((f) => path.basename(f)).sort();
    expect(removed).toEqual(['side_last.pt.tmp-4194000', 'side_last.pt.tmp-4194001-0a1b2c3d']);
    expect(fs.readdirSync(dir).sort()).toEqual(['notes.tmp', `side_best.pt.tmp-${process.pid}-00ff00ff`, 'side_last.pt']);
  });

  // Training resumed for one more epoch where the next checkpoint cannot be written whole.
  for (const fault of ['a full disk (tmpfs)', 'a file-size limit (ulimit -f)'] as const) {
    const tmpfs = fault.includes('tmpfs');
    it(`${fault} during training: exit 2 naming the checkpoint, the previous one intact, no temporary left`, async () => {
      const { cwd, config } = scratchRun((y) => y.replace(/quantize: true/g, 'quantize: false'));
      const first = await runCli([...TINY, '--epochs', '1', '--config_file', config], cwd);
      expect(first.code, first.stderr).toBe(0);
      const lastBytes = fs.readFileSync(path.join(cwd, 'output/checkpoints/side_last.pt'));
      const disk = tmpfs ? smallDisk(4 * lastBytes.length) : null;
      if (tmpfs && !disk) return console.warn('faults.test: no tmpfs mount on this machine; the ulimit case covers the write path');
      let runDir = cwd;
      if (disk) {
        // room for the log, not for one more checkpoint (the first run's record, plots and models stay behind)
        const skip = [path.join(cwd, 'output', 'runs'), path.join(cwd, 'models')];
        fs.cpSync(cwd, disk, { recursive: true, verbatimSymlinks: true, filter: (src) => !skip.includes(src) });
        fs.writeFileSync(path.join(disk, 'filler'), Buffer.alloc(Math.floor(1.5 * lastBytes.length)));
        runDir = disk;
      }
      try {
        const r = await runCli([...TINY, '--epochs', '2', '--config_file', path.join(runDir, 'config.yaml'), '--resume', 'output/checkpoints/side_last.pt'],
          runDir, {}, disk ? {} : { fileSizeKb: Math.floor(lastBytes.length / 2048) });
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toMatch(disk
          ? /cannot write output\/checkpoints\/side_(best|last)\.pt: no space left on the device \(ENOSPC\)/
          : /cannot write output\/checkpoints\/side_(best|last)\.pt: the file is larger than this file system or process allows \(EFBIG\)/);
        expect(r.stderr).not.toMatch(/\n\s+at /);
        expect(fs.readFileSync(path.join(runDir, 'output/checkpoints/side_last.pt')).equals(lastBytes)).toBe(true);
        expect(temps(path.join(runDir, 'output'))).toEqual([]);
      } finally {
        if (disk) execFileSync('umount', [disk]);
      }
    });
  }

  it('an output folder that cannot be created: exit 2 before any training', async () => {
    const { cwd, config } = scratchRun((y) => y.replace('output_dir: models/side', 'output_dir: blocked/side'));
    fs.writeFileSync(path.join(cwd, 'blocked'), 'a file, not a folder');
    const r = await runCli([...TINY, '--epochs', '1', '--config_file', config], cwd);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/cannot write blocked\/side: a part of the path is not a folder \(ENOTDIR\)/);
    expect(r.stdout).not.toMatch(/Epoch 1\/1/);
    expect(listFiles(path.join(cwd, 'output'))).toEqual([]);
  });
});

describe('signals', () => {
  it('SIGTERM stops like Ctrl-C: the step finishes, _last.pt is written, exit 143', async () => {
    const { cwd, config } = scratchRun((y) => y.replace(/num_epochs: \d+/g, 'num_epochs: 30'));
    const child = runCli([...TINY, '--config_file', config], cwd);
    await waitForFile(path.join(cwd, 'output/checkpoints/side_last.pt'));
    child.child.kill('SIGTERM');
    const r = await child;
    expect(r.code, r.stderr).toBe(143);
    expect(r.stderr).toMatch(/interrupted; state saved to output\/checkpoints\/side_last\.pt/);
    expect(temps(path.join(cwd, 'output'))).toEqual([]);
  });

  for (const reason of ['SIGINT', 'SIGTERM'] as const) {
    it(`an abort (${reason}) after the last epoch stops before test and export: exit ${reason === 'SIGINT' ? 130 : 143}, no model files`, async () => {
      const { cwd, config } = scratchRun();
      const controller = new AbortController();
      const here = process.cwd();
      process.chdir(cwd);
      try {
        const run = train('side', {
          configFile: config, dataExamples: true, batchSize: 8, threads: 1, quiet: true, signal: controller.signal,
          onEpoch: (e) => { if (e.epoch === e.epochs) controller.abort(reason); },
        });
        const err = await run.then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(InterruptedError);
        expect((err as InterruptedError).exitCode).toBe(reason === 'SIGINT' ? 130 : 143);
        expect((err as InterruptedError).checkpoint).toBe(path.join('output', 'checkpoints', 'side_last.pt'));
      } finally {
        process.chdir(here);
      }
      expect(listFiles(path.join(cwd, 'models'))).toEqual([]);
      expect(listFiles(path.join(cwd, 'output'))).toContain('checkpoints/side_last.pt');
    });
  }
});

describe('stale checkpoints', () => {
  it("a resume never tests or exports another run's _best.pt: it says so and uses its own last weights", async () => {
    const quick = (y: string) => y.replace(/quantize: true/g, 'quantize: false');
    const a = scratchRun(quick), b = scratchRun(quick);
    expect((await runCli([...TINY, '--epochs', '2', '--config_file', a.config], a.cwd)).code).toBe(0);
    expect((await runCli([...TINY, '--epochs', '1', '--config_file', b.config], b.cwd)).code).toBe(0);
    fs.copyFileSync(path.join(b.cwd, 'output/checkpoints/side_best.pt'), path.join(a.cwd, 'output/checkpoints/side_best.pt'));
    const r = await runCli([...TINY, '--epochs', '2', '--config_file', a.config, '--resume', 'output/checkpoints/side_last.pt'], a.cwd);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/WARNING: output\/checkpoints\/side_best\.pt was written by another run \(\d{8}-\d{6}-[0-9a-f]{8}\), not this one \(\d{8}-\d{6}-[0-9a-f]{8}\): testing and exporting this run's last weights instead/);
    expect(r.stdout).toMatch(/^Test \(last weights\): /m);
  });

  it("a fresh run keeps an earlier run's checkpoints under its run id; --overwrite replaces them", async () => {
    const { cwd, config } = scratchRun((y) => y.replace(/quantize: true/g, 'quantize: false'));
    const run = (...extra: string[]) => runCli([...TINY, '--epochs', '1', '--config_file', config, ...extra], cwd);
    expect((await run()).code).toBe(0);
    const ckpt = path.join(cwd, 'output/checkpoints');
    const first = fs.readFileSync(path.join(ckpt, 'side_best.pt'));
    const second = await run();
    expect(second.code, second.stderr).toBe(0);
    const kept = fs.readdirSync(ckpt).filter((f) => /^side_(last|best)\.\d{8}-\d{6}-[0-9a-f]{8}\.pt$/.test(f));
    expect(kept).toHaveLength(2);
    expect(fs.readFileSync(path.join(ckpt, kept.find((f) => f.startsWith('side_best'))!)).equals(first)).toBe(true);
    expect(second.stderr).toMatch(/output\/checkpoints\/side_best\.pt is an earlier run's \(\d{8}-\d{6}-[0-9a-f]{8}\): kept as output\/checkpoints\/side_best\.\d{8}-\d{6}-[0-9a-f]{8}\.pt \(--overwrite replaces it instead\)/);
    const third = await run('--overwrite');
    expect(third.code, third.stderr).toBe(0);
    expect(fs.readdirSync(ckpt).filter((f) => f.startsWith('side_')).sort()).toEqual([...kept, 'side_best.pt', 'side_last.pt'].sort());
  });
});

describe('kill -9', () => {
  it('at random points of a run: every resume ends bit-identical to an uninterrupted run, no temporary left', async () => {
    const edit = (y: string) => y.replace(/quantize: true/g, 'quantize: false').replace(/(side:\n)/, '$1  checkpoint_every_steps: 1\n');
    const args = (config: string) => [...TINY, '--epochs', '3', '--config_file', config];
    const clean = scratchRun(edit);
    const whole = await runCli(args(clean.config), clean.cwd);
    expect(whole.code, whole.stderr).toBe(0);
    const reference = await paramsOf(path.join(clean.cwd, 'output/checkpoints/side_last.pt'));

    const TRIALS = 10;
    let killedMidRun = 0;
    for (let t = 0; t < TRIALS; t++) {
      const { cwd, config } = scratchRun(edit);
      const last = path.join(cwd, 'output/checkpoints/side_last.pt');
      // the first run is killed once it has written a checkpoint, after a random further delay
      const first = runCli(args(config), cwd);
      await waitForFile(last, 20);
      await new Promise((r) => setTimeout(r, Math.floor(((t * 7919) % 1000) * 1.5)));
      first.child.kill('SIGKILL');
      const killed = await first;
      if (killed.code === null) killedMidRun++;
      const resumed = await runCli([...args(config), '--resume', 'output/checkpoints/side_last.pt'], cwd);
      expect(resumed.code, resumed.stderr).toBe(0);
      const params = await paramsOf(last);
      for (const [name, t0] of Object.entries(reference)) {
        expect(Buffer.from(params[name].data.buffer).equals(Buffer.from(t0.data.buffer)), `${name} after trial ${t}`).toBe(true);
      }
      expect(temps(path.join(cwd, 'output'))).toEqual([]);
    }
    expect(killedMidRun).toBeGreaterThanOrEqual(TRIALS / 2);   // most kills landed while the run was going
  }, 600_000);
});

describe('runs that cannot be', () => {
  it('a config whose YAML aliases expand without bound: exit 2 at once', async () => {
    const bomb = 'l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n' +
      Array.from({ length: 8 }, (_, i) => `l${i + 1}: &l${i + 1} [${Array(10).fill(`*l${i}`).join(', ')}]\n`).join('');
    const { cwd, config } = scratchRun((y) => bomb + y.replace(/(side:\n)/, '$1  seed: *l8\n').replace(/(side:\n[\s\S]*?)\n {2}seed: 42/, '$1'));
    const r = await runCli([...TINY, '--config_file', config], cwd);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/expands to more than 100000 values \(YAML aliases/);
  });

  it('an img_size that cannot fit in memory: exit 2 before the data is read', async () => {
    const { cwd, config } = scratchRun((y) => y.replace('img_size: [32, 32]', 'img_size: [4096, 4096]'));
    const r = await runCli([...TINY, '--config_file', config], cwd);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/a training step at img_size \[4096, 4096\] and batch_size 8 needs about [\d.]+ GB of memory .* this machine allows [\d.]+ GB/);
    expect(r.stdout).not.toMatch(/Loaded PennyDataset/);
  });

  it.skipIf(nativeInfo().cudaAvailable)('--device cuda on a CPU build: exit 2, one line, before the data is read', async () => {
    const { cwd, config } = scratchRun();
    const r = await runCli([...TINY, '--device', 'cuda', '--config_file', config], cwd);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim()).toMatch(/^penny-train: device 'cuda' asked for, but (penny-train was built against a CPU-only LibTorch|LibTorch .* sees no CUDA device)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).not.toMatch(/Loaded PennyDataset/);
  });
});
