// Bad input from JS is a TypeError (a RangeError for values out of range) naming the argument; LibTorch's own errors
// arrive as Errors named NativeError with its message.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createModel, createModelFromGraph, GraphBuilder, readTorchFile } from '../src/index.js';
import { loadAddon } from '../src/backend/native.js';
import { lowerGraph } from '../src/model/lower.js';
import { ROOT } from './helpers.js';

const tiny = () => createModel({ backbone: 'clip_vit_tiny', numClasses: 3, imageSize: 32 });
const px = () => new Float32Array(2 * 3 * 32 * 32);

describe('errors', () => {
  it('rejects a wrong shape, dtype or length with a TypeError naming the argument', async () => {
    const m = await tiny();
    expect(() => m.predict(px(), [2, 3, 64, 64])).toThrow(TypeError);
    expect(() => m.predict(px(), [2, 3, 64, 64])).toThrow(/shape must be \[batch, 3, 32, 32\]/);
    expect(() => m.predict(new Float64Array(2 * 3 * 32 * 32) as never, [2, 3, 32, 32])).toThrow(/pixels must be a Float32Array, got Float64Array/);
    expect(() => m.predict(new Float32Array(10), [2, 3, 32, 32])).toThrow(/pixels has 10 values but shape \[2,3,32,32\] needs 6144/);
    expect(() => m.trainStep(px(), [2, 3, 32, 32], new Int32Array(3), { lr: 1e-3 })).toThrow(/labels has 3 entries for a batch of 2/);
    expect(() => m.trainStep(px(), [2, 3, 32, 32], [0, 1] as never, { lr: 1e-3 })).toThrow(/labels must be an Int32Array/);
    expect(() => m.trainStep(px(), [2, 3, 32, 32], new Int32Array([0, 3]), { lr: 1e-3 })).toThrow(RangeError);
    expect(() => m.trainStep(px(), [2, 3, 32, 32], new Int32Array([0, 1]), { lr: NaN })).toThrow(/lr must be a finite number/);
    expect(() => m.setParams({ 'head.bias': new Float32Array(4) })).toThrow(/params\['head.bias'\]: expected 3 values \(shape \[3\]\), got 4/);
    expect(() => m.setParams({ 'head.nope': new Float32Array(3) })).toThrow(/no parameter named 'head.nope'/);
    // every value is checked before any is copied: the good one in a bad call changes nothing
    const before = m.getParams(['head.bias'])['head.bias'];
    expect(() => m.setParams({ 'head.bias': new Float32Array([1, 2, 3]), 'head.weight': new Float32Array(1) })).toThrow(/head.weight/);
    expect(m.getParams(['head.bias'])['head.bias']).toEqual(before);
  });

  it('checks arguments in the addon too, for callers below the TypeScript API', async () => {
    const a = loadAddon();
    const g = new GraphBuilder();
    const logits = g.linear(g.op('reshape', [g.input], { shape: [0, -1] }), 'head', 12, 2, { weight: { kind: 'zeros' } }, 'logits');
    const graph = g.build([3, 2, 2], { embeds: logits, logits });
    const n = new a.NativeModel(lowerGraph(graph), graph.params, { device: 'cpu', dtype: 'float32' });
    expect(() => n.forward(new Float64Array(12), [1, 3, 2, 2], 'logits')).toThrow(new TypeError('pixels must be a Float32Array'));
    expect(() => n.forward(new Float32Array(11), [1, 3, 2, 2], 'logits')).toThrow(/pixels has 11 elements but its shape needs 12/);
    expect(() => n.forward(new Float32Array(12), [1, 3, 2.5, 2], 'logits')).toThrow(/shape\[2\] must be a positive integer/);
    expect(() => n.trainStep(new Float32Array(12), [1, 3, 2, 2], new Int32Array(1), {} as never)).toThrow(/options.lr must be a number/);
    expect(() => new a.NativeModel(lowerGraph(graph), [], { device: 'cpu', dtype: 'float32' })).toThrow(/the graph has 2 parameters, got 0/);
    expect(() => new a.NativeModel(lowerGraph(graph), graph.params, { device: 'cpu', dtype: 'int8' as never })).toThrow(TypeError);
  });

  it("turns LibTorch's errors into JS Errors carrying its message, and the process goes on", async () => {
    const g = new GraphBuilder();
    const flat = g.op('reshape', [g.input], { shape: [0, -1] });                  // 12 features
    const logits = g.linear(flat, 'head', 7, 2, { weight: { kind: 'zeros' } }, 'logits');   // expects 7
    const m = await createModelFromGraph(g.build([3, 2, 2], { embeds: flat, logits }), 2);
    await expect(m.predict(new Float32Array(12), [1, 3, 2, 2])).rejects.toThrow(/mat1 and mat2 shapes cannot be multiplied \(1x12 and 7x2\)/);
    await expect(m.trainStep(new Float32Array(12), [1, 3, 2, 2], new Int32Array([1]), { lr: 1 })).rejects.toThrow(/mat1 and mat2 shapes/);
    // the rejection says where it came from: LibTorch, not the caller's arguments
    await expect(m.predict(new Float32Array(12), [1, 3, 2, 2])).rejects.toMatchObject({ name: 'NativeError' });
    const ok = await tiny();
    expect((await ok.predict(px(), [2, 3, 32, 32])).length).toBe(6);
  });

  it('says clearly when a device cannot be had', async () => {
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 3, device: 'tpu' })).rejects.toThrow(/device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'/);
    if (!loadAddon().info().cudaAvailable) {
      await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 3, device: 'cuda' })).rejects.toThrow(/device 'cuda' asked for, but .*(CPU-only LibTorch|sees no CUDA device)/);
    }
  });

  it('refuses an optimizer state whose step is not a count (RangeError) or whose entry is not an object (TypeError)', async () => {
    const m = await tiny();
    await m.trainStep(px(), [2, 3, 32, 32], new Int32Array([0, 1]), { lr: 1e-3 });
    const { optimizer } = m.getState();
    const [name, s] = Object.entries(optimizer)[0];
    for (const step of [-1, 1.5, NaN, '3']) {
      expect(() => m.setState({ params: m.getParams(), optimizer: { [name]: { ...s, step: step as number } } })).toThrow(RangeError);
    }
    expect(() => m.setState({ params: m.getParams(), optimizer: { [name]: 7 as never } })).toThrow(TypeError);
    m.dispose();
  });

  it('after the compute thread has shut down, a call rejects at once and dispose throws, instead of a hang or an abort', () => {
    const script = `
      import { createModel } from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))};
      import { loadAddon } from ${JSON.stringify(path.join(ROOT, 'src/backend/native.ts'))};
      const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: 3, imageSize: 32, threads: 1 });
      loadAddon().shutdown();
      const timer = setTimeout(() => { console.log('HUNG'); process.exit(3); }, 10000);
      const r = await m.predict(new Float32Array(3 * 32 * 32), [1, 3, 32, 32]).then(() => 'resolved', (e) => e.message);
      clearTimeout(timer);
      let d = 'no error';
      try { m.dispose(); } catch (e) { d = e.message; }
      console.log(JSON.stringify({ r, d }));`;
    const out = execFileSync(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', script], { encoding: 'utf8', cwd: ROOT });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({
      r: 'penny-native: the process is exiting; no more work is taken', d: 'the process is exiting',
    });
  });

  it('refuses a disposed model, an unknown backbone and bad options', async () => {
    const m = await tiny();
    m.dispose();
    expect(() => m.predict(px(), [2, 3, 32, 32])).toThrow(/this model was disposed/);
    await expect(createModel({ backbone: 'resnet', numClasses: 3 })).rejects.toThrow(/unknown backbone 'resnet'; known: coin_clip_vit_b32, clip_vit_tiny, cnn_small, cnn_small_spatial, cnn_small_relief, cnn_small_spatial_relief/);
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 1 })).rejects.toThrow(/numClasses must be an integer >= 2/);
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 3, imageSize: 50 })).rejects.toThrow(/not a multiple of the patch size 16/);
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 3, threads: 0 })).rejects.toThrow(/threads must be a positive integer/);
    await expect(readTorchFile('/nonexistent.pt')).rejects.toThrow(/cannot open \/nonexistent.pt/);
  });

  it('rejects a file that is not a torch.save zip, or a truncated one, without reading past it', async () => {
    // LibTorch's in-memory reader read past the buffer on such files and crashed the process now and then; repeat
    // enough that an over-read would show, and end in the file's tail where miniz looks for the central directory.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-torchfile-'));
    const bin = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'hf-clip-tiny', 'pytorch_model.bin'));
    const files = {
      yaml: fs.readFileSync(path.join(ROOT, 'configs', 'training_config.yaml')),
      truncated: bin.subarray(0, Math.floor(bin.length * 0.6)),
      tail: Buffer.concat([Buffer.from('PK'), bin.subarray(bin.length - 100)]),
    };
    for (const [name, bytes] of Object.entries(files)) {
      const file = path.join(dir, `${name}.pt`);
      fs.writeFileSync(file, bytes);
      for (let i = 0; i < 20; i++) await expect(readTorchFile(file)).rejects.toThrow(/is not a readable torch\.save file/);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
