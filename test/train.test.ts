// train() from Node: resume equivalence, interruption, callbacks, and where pretrained weights come from.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readTorchFile } from '../src/backend/native.js';
import { InterruptedError } from '../src/errors.js';
import { train, type EpochReport } from '../src/train/train.js';
import { resolvePretrained } from '../src/train/pretrained.js';
import { FIXTURE, scratchRun } from './helpers.js';

const home = process.cwd();
afterAll(() => process.chdir(home));

type Tensors = Record<string, { data: Float32Array }>;
const weightsOf = async (file: string) => ((await readTorchFile(file)) as { model_state: Tensors }).model_state;

describe('train()', () => {
  it('gives identical weights for 2 epochs straight and for 1 epoch + resume', async () => {
    const straight = scratchRun();
    process.chdir(straight.cwd);
    const reports: EpochReport[] = [];
    const r = await train('mint', { configFile: straight.config, dataExamples: true, batchSize: 16, quiet: true, onEpoch: (e) => { reports.push(e); } });
    expect(reports.map((e) => e.epoch)).toEqual([1, 2]);
    expect(r.checkpoints.last).toBe(path.join('output', 'checkpoints', 'mint_last.pt'));
    expect(r.labelMap).toEqual({ 0: 'D', 1: 'S', 2: 'P', 3: 'nomint' });
    expect(r.test.acc).toBeGreaterThanOrEqual(0);
    const a = await weightsOf(path.join(straight.cwd, r.checkpoints.last));

    const split = scratchRun();
    process.chdir(split.cwd);
    const stop = new AbortController();
    await expect(train('mint', { configFile: split.config, dataExamples: true, batchSize: 16, quiet: true, signal: stop.signal, onEpoch: () => stop.abort() }))
      .rejects.toBeInstanceOf(InterruptedError);
    const half = await readTorchFile('output/checkpoints/mint_last.pt') as { epoch: number };
    expect(half.epoch).toBe(1);
    await train('mint', { configFile: split.config, dataExamples: true, batchSize: 16, quiet: true, resume: 'output/checkpoints/mint_last.pt' });
    const b = await weightsOf(path.join(split.cwd, 'output/checkpoints/mint_last.pt'));
    for (const k of Object.keys(a)) expect(Buffer.compare(Buffer.from(a[k].data.buffer), Buffer.from(b[k].data.buffer)), k).toBe(0);
  });

  it('trains on the JS backend too, and its checkpoint resumes on native', async () => {
    const run = scratchRun();
    process.chdir(run.cwd);
    const stop = new AbortController();
    await expect(train('side', { configFile: run.config, dataExamples: true, backend: 'js', batchSize: 32, quiet: true, signal: stop.signal, onEpoch: () => stop.abort() }))
      .rejects.toThrow(InterruptedError);
    const r = await train('side', { configFile: run.config, dataExamples: true, backend: 'native', batchSize: 32, quiet: true, resume: 'output/checkpoints/side_last.pt' });
    expect(r.onnx.fp32).toBeDefined();
    expect(((await readTorchFile(r.checkpoints.last)) as { epoch: number }).epoch).toBe(2);
  });

  it('refuses to resume from a checkpoint of another model', async () => {
    const run = scratchRun();
    process.chdir(run.cwd);
    const stop = new AbortController();
    await expect(train('side', { configFile: run.config, dataExamples: true, epochs: 2, quiet: true, signal: stop.signal, onEpoch: () => stop.abort() })).rejects.toThrow(InterruptedError);
    await expect(train('mint', { configFile: run.config, dataExamples: true, quiet: true, resume: 'output/checkpoints/side_last.pt' }))
      .rejects.toThrow(/side_last\.pt has 5 classes, but the mint model has 4/);
  });
});

describe('pretrained weights', () => {
  it('downloads the backbone\'s Hugging Face weights from HF_ENDPOINT into the cache, once', async () => {
    const body = fs.readFileSync(path.join(FIXTURE, 'model.safetensors'));
    const requests: string[] = [];
    const server = http.createServer((req, res) => {
      requests.push(req.url!);
      if (req.url === '/breezedeus/coin-clip-vit-base-patch32/resolve/main/model.safetensors') res.end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-cache-'));
    Object.assign(process.env, { HF_ENDPOINT: `http://127.0.0.1:${(server.address() as { port: number }).port}`, PENNY_TRAIN_CACHE: cache });
    try {
      const got = await resolvePretrained('coin_clip_vit_b32', '/no/such/weights');
      expect(got.downloaded).toBe(true);
      expect(fs.readFileSync(got.weights!)).toEqual(body);
      expect((await resolvePretrained('coin_clip_vit_b32', null)).weights).toBe(got.weights);
      expect(requests).toHaveLength(1);
    } finally {
      server.close();
      delete process.env.HF_ENDPOINT;
      delete process.env.PENNY_TRAIN_CACHE;
    }
  });

  it('says why there are none when the hub cannot be reached', async () => {
    Object.assign(process.env, { HF_ENDPOINT: 'http://127.0.0.1:9', PENNY_TRAIN_CACHE: fs.mkdtempSync(path.join(os.tmpdir(), 'penny-cache-')) });
    try {
      const got = await resolvePretrained('coin_clip_vit_b32', 'pretrained/x');
      expect(got.weights).toBeNull();
      expect(got.reason).toMatch(/pretrained\/x not found; http:\/\/127\.0\.0\.1:9\/breezedeus\/coin-clip-vit-base-patch32\/resolve\/main\/model\.safetensors: /);
    } finally {
      delete process.env.HF_ENDPOINT;
      delete process.env.PENNY_TRAIN_CACHE;
    }
  });
});
