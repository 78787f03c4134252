// Corrupt weights are refused, naming the file and what is wrong (issue 10): zip CRCs and layout, checkpoint fields,
// parameters that do not fit, safetensors headers. Every fixture is made here, in a temp dir.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTorchFile, writeTorchFile } from '../src/backend/native.js';
import type { TrainingConfig } from '../src/config/config.js';
import { UsageError } from '../src/errors.js';
import { createModel, type PennyModel } from '../src/index.js';
import { readSafetensors, resolveWeightFiles } from '../src/model/weights.js';
import { checkParamsFit, loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.js';
import { verifyZip } from '../src/util/zip.js';
import { FIXTURE } from './helpers.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-verify-'));
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const LABELS = { 0: 'a', 1: 'b', 2: 'c', 3: 'd', 4: 'e' };
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Byte offset and length of an entry's data in a small (non-zip64-sized) zip, read from its central directory. */
function entryData(buf: Buffer, suffix: string): { start: number; length: number; name: string } {
  const eocd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  let p = buf.readUInt32LE(eocd + 16);
  for (let i = 0; i < buf.readUInt16LE(eocd + 10); i++) {
    const nameLen = buf.readUInt16LE(p + 28);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    if (name.endsWith(suffix)) {
      const local = buf.readUInt32LE(p + 42);
      return { start: local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28), length: buf.readUInt32LE(p + 20), name };
    }
    p += 46 + nameLen + buf.readUInt16LE(p + 30) + buf.readUInt16LE(p + 32);
  }
  throw new Error(`no entry ending in ${suffix}`);
}

function writeCopy(name: string, bytes: Buffer | string): string {
  const f = path.join(dir, name);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, bytes);
  return f;
}

describe('checkpoints', () => {
  let model: PennyModel;
  let good: string;
  let goodBytes: Buffer;

  beforeAll(async () => {
    model = await createModel({ backbone: 'cnn_small', numClasses: 5, imageSize: 32, seed: 1, threads: 1 });
    // one step, so the optimizer has state to save
    await model.trainStep(new Float32Array(2 * 3 * 32 * 32).fill(0.5), [2, 3, 32, 32], new Int32Array([0, 1]), { lr: 1e-3 });
    good = path.join(dir, 'ckpt', 'side_last.pt');
    // what a run interrupted in its first epoch saves: batch > 0, best_score -Infinity
    await saveCheckpoint(good, model, {
      position: { epoch: 0, batch: 1, step: 1 }, schedule: { baseLr: 1e-3, etaMin: 1e-6, warmupSteps: 2, totalSteps: 40 },
      bestValF1: -1, config: { num_epochs: 4, seed: 1, model_type: 'side' } as TrainingConfig, labelMap: LABELS, backbone: 'cnn_small',
      numClasses: 5, pretrained: null, seed: 1, progress: null, valMetrics: null, bestScore: -Infinity, bestValLoss: Infinity, roiAspect: null, roiLocator: { u: 0.5, v: 0.25, width: 0.4, height: 0.2, boxes: 10 }, runId: 'test-run',
    });
    goodBytes = fs.readFileSync(good);
  });
  afterAll(() => model.dispose());

  /** The checkpoint re-written by writeTorchFile after `edit` changed its payload. */
  async function rewritten(name: string, edit: (d: Record<string, any>) => void): Promise<string> {
    const d = (await readTorchFile(good)) as Record<string, any>;
    edit(d);
    const f = path.join(dir, 'ckpt', name);
    await writeTorchFile(f, d);
    return f;
  }

  it('loads what saveCheckpoint wrote (mid-epoch, best_score -Infinity), and its params fit the model', async () => {
    const c = await loadCheckpoint(good);
    expect(c.position).toEqual({ epoch: 0, batch: 1, step: 1 });
    expect(c.bestScore).toBe(-Infinity);
    expect(c.bestValLoss).toBe(Infinity);
    expect(c.roiLocator).toEqual({ u: 0.5, v: 0.25, width: 0.4, height: 0.2, boxes: 10 });
    expect(Object.keys(c.optimizer).length).toBeGreaterThan(0);
    expect(() => checkParamsFit(good, c.params, model.graph.params)).not.toThrow();
    // the re-writing the field tests use keeps a checkpoint loadable: their failures are the field's
    await expect(loadCheckpoint(await rewritten('same.pt', () => {}))).resolves.toMatchObject({ numClasses: 5 });
  });

  it("rejects a byte flipped inside a tensor's data, naming the file and the entry (LibTorch alone reads it)", async () => {
    const bytes = Buffer.from(goodBytes);
    const e = entryData(bytes, '/data/3');
    bytes[e.start + Math.floor(e.length / 2)] ^= 0x04;
    const bad = writeCopy('ckpt/flipped.pt', bytes);
    await expect(readTorchFile(bad)).resolves.toBeTruthy();
    const err = await loadCheckpoint(bad).catch((x: Error) => x);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(new RegExp(`^cannot read checkpoint ${esc(bad)}: entry '${esc(e.name)}' fails its CRC-32 check ` +
      '\\(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\\): the file is corrupt$'));
  });

  it("param_groups are AdamW's: decay, no decay, and batch norm's running statistics in neither", async () => {
    const d = await readTorchFile(good) as { optimizer_state: { param_groups: { weight_decay: number; params: number[] }[]; param_names: string[] } };
    const [decay, none] = d.optimizer_state.param_groups;
    const names = (g: { params: number[] }) => g.params.map((i) => d.optimizer_state.param_names[i]);
    expect(decay.weight_decay).toBeGreaterThan(0);
    expect(names(decay)).toContain('stem.conv.weight');
    expect(names(none)).toContain('stem.bn.bias');
    const grouped = [...names(decay), ...names(none)];
    expect(grouped.filter((n) => /running_(mean|var)/.test(n))).toEqual([]);
    expect(grouped.length).toBe(model.graph.params.filter((p) => !p.buffer).length);
  });

  it('a byte flipped anywhere: refused, or (zip padding, unread header fields) the same weights and state; never wrong weights', async () => {
    const ref = await loadCheckpoint(good);
    let refused = 0, harmless = 0;
    const TRIALS = 120;
    for (let i = 0; i < TRIALS; i++) {
      const bytes = Buffer.from(goodBytes);
      const at = Math.floor(((i + 0.5) / TRIALS) * bytes.length + ((i * 7919) % 997)) % bytes.length;   // spread over the file
      bytes[at] ^= 1 << (i % 8);
      const f = writeCopy(`fuzz/${i}.pt`, bytes);
      const got = await loadCheckpoint(f).catch((e: unknown) => e);
      if (got instanceof UsageError) {
        expect(got.message).toContain(f);
        refused++;
        continue;
      }
      expect(got, `flip at byte ${at} of ${bytes.length}: neither refused nor a checkpoint`).not.toBeInstanceOf(Error);
      const c = got as Awaited<ReturnType<typeof loadCheckpoint>>;
      for (const [name, t] of Object.entries(ref.params)) expect(Buffer.from(c.params[name].buffer).equals(Buffer.from(t.buffer)), `${name}, flip at ${at}`).toBe(true);
      expect(c.position).toEqual(ref.position);
      harmless++;
    }
    expect(refused + harmless).toBe(TRIALS);
    expect(refused).toBeGreaterThanOrEqual(TRIALS * 0.9);
  });

  it('rejects a truncated checkpoint, at any length', async () => {
    for (const keep of [0.6, 0.999]) {
      const bad = writeCopy(`ckpt/cut-${keep}.pt`, goodBytes.subarray(0, Math.floor(goodBytes.length * keep)));
      await expect(loadCheckpoint(bad)).rejects.toThrow(new RegExp(`cannot read checkpoint ${esc(bad)}: not a zip archive \\(no end-of-central-directory record\\)`));
    }
    // the tail kept, a middle cut out: the central directory points past the end
    const e = entryData(goodBytes, '/data/3');
    const bad = writeCopy('ckpt/cut-middle.pt', Buffer.concat([goodBytes.subarray(0, e.start + 8), goodBytes.subarray(e.start + 8 + 64)]));
    await expect(loadCheckpoint(bad)).rejects.toThrow(new RegExp(`cannot read checkpoint ${esc(bad)}: .*(past|overlaps|no local header|CRC)`));
  });

  const fields: [string, (d: Record<string, any>) => void, RegExp][] = [
    ['epoch -3', (d) => (d.epoch = -3), /'epoch' is -3; it must be an integer from 0 to config\.num_epochs \(4\)/],
    ['epoch past num_epochs', (d) => (d.epoch = 5), /'epoch' is 5; it must be an integer from 0 to config\.num_epochs \(4\)/],
    ['a fractional epoch', (d) => (d.epoch = 1.5), /'epoch' is 1\.5/],
    ['a negative batch', (d) => (d.rng_state.batch = -1), /'rng_state\.batch' is -1; it must be an integer >= 0/],
    ['a batch after the last epoch', (d) => (d.epoch = 4), /'rng_state\.batch' is 1 after the last epoch \(4\); it must be 0/],
    ['a negative last_step', (d) => (d.scheduler_state.last_step = -2), /'scheduler_state\.last_step' is -2/],
    ['total_steps 0', (d) => (d.scheduler_state.total_steps = 0), /'scheduler_state\.total_steps' is 0; it must be an integer >= 1/],
    ['a NaN warmup', (d) => (d.scheduler_state.warmup_steps = NaN), /'scheduler_state\.warmup_steps' is NaN/],
    ['an infinite base_lr', (d) => (d.scheduler_state.base_lr = Infinity), /'scheduler_state\.base_lr' is Infinity; it must be a finite number >= 0/],
    ['a negative eta_min', (d) => (d.scheduler_state.eta_min = -0.5), /'scheduler_state\.eta_min' is -0\.5/],
    ['best_val_f1 2', (d) => (d.best_val_f1 = 2), /'best_val_f1' is 2; it must be a number from -1 to 1/],
    ['best_val_f1 NaN', (d) => (d.best_val_f1 = NaN), /'best_val_f1' is NaN/],
    ['best_score NaN', (d) => (d.best_score = NaN), /'best_score' is NaN/],
    ['roi_locator without a size', (d) => (d.roi_locator = { u: 0.5, v: 0.25, width: 0, height: 0.2, boxes: 10 }), /'roi_locator' is .*; it must be a dict of u, v, width, height/],
    ['num_classes off label_map', (d) => (d.num_classes = 4), /'num_classes' is 4; it must be a positive integer equal to the number of entries in label_map \(5\)/],
    ['a float64 weight', (d) => (d.model_state['head.weight'].data = Float64Array.from(d.model_state['head.weight'].data)),
      /'model_state\.head\.weight' is a \w+ tensor of shape \[5, \d+\], not float32/],
    ['a weight that is no tensor', (d) => (d.model_state['head.bias'] = 3), /'model_state\.head\.bias' is 3, not a tensor/],
    ['a short exp_avg', (d) => (Object.values<any>(d.optimizer_state.state)[0].exp_avg = { kind: 'tensor', shape: [3], data: new Float32Array(3) }),
      /'optimizer_state\.state\[0\]\.exp_avg' \(stem\.conv\.weight\) has 3 values, the parameter 432/],
    ['a negative step', (d) => (Object.values<any>(d.optimizer_state.state)[0].step = -1), /'optimizer_state\.state\[0\]\.step' is -1; it must be an integer >= 0 \(stem\.conv\.weight\)/],
    ['a state for no parameter', (d) => (d.optimizer_state.state['999'] = d.optimizer_state.state['0']),
      /'optimizer_state\.state\[999\]': parameter index 999 is not in optimizer_state\.param_names \(\d+ names\)/],
  ];
  for (const [what, edit, message] of fields) {
    it(`rejects ${what}, naming the file and the field`, async () => {
      const bad = await rewritten('field.pt', edit);
      const err = await loadCheckpoint(bad).catch((x: Error) => x);
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toContain(`${bad} is not a usable penny-train checkpoint`);
      expect((err as Error).message).toMatch(message);
    });
  }

  it('checkParamsFit names every missing, extra and wrong-size tensor', async () => {
    const { params } = await loadCheckpoint(good);
    const shape = (n: string) => `[${model.graph.params.find((p) => p.name === n)!.shape.join(', ')}]`;
    const edited = { ...params, 'head.extra': new Float32Array(3), 'stem.conv.weight': new Float32Array(3) };
    delete (edited as Record<string, Float32Array>)['head.bias'];
    let err: Error | undefined;
    try {
      checkParamsFit(good, edited, model.graph.params);
    } catch (e) {
      err = e as Error;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect(err!.message).toContain(`${good} does not fit the model (3 problems)`);
    expect(err!.message).toContain(`missing tensor 'head.bias' (the model expects shape ${shape('head.bias')})`);
    expect(err!.message).toContain("unexpected tensor 'head.extra' (3 values): the model has no such parameter");
    expect(err!.message).toContain(`tensor 'stem.conv.weight' has 3 values; the model's shape ${shape('stem.conv.weight')} needs 432`);
  });
});

describe('verifyZip', () => {
  /** A classic (no zip64) zip: local headers, then the central directory; `central` may change an entry's figures. */
  function zip(entries: { name: string; data: Buffer; method?: number }[], central: (i: number, h: Buffer) => void = () => {}): Buffer {
    const locals: Buffer[] = [];
    const centrals: Buffer[] = [];
    let offset = 0;
    entries.forEach((e, i) => {
      const method = e.method ?? 0;
      const stored = method === 8 ? zlib.deflateRawSync(e.data) : e.data;
      const name = Buffer.from(e.name);
      const h = Buffer.alloc(30);
      h.writeUInt32LE(0x04034b50, 0); h.writeUInt16LE(20, 4); h.writeUInt16LE(method, 8);
      h.writeUInt32LE(zlib.crc32(e.data), 14); h.writeUInt32LE(stored.length, 18); h.writeUInt32LE(e.data.length, 22); h.writeUInt16LE(name.length, 26);
      const c = Buffer.alloc(46);
      c.writeUInt32LE(0x02014b50, 0); c.writeUInt16LE(20, 4); c.writeUInt16LE(20, 6); c.writeUInt16LE(method, 10);
      c.writeUInt32LE(zlib.crc32(e.data), 16); c.writeUInt32LE(stored.length, 20); c.writeUInt32LE(e.data.length, 24);
      c.writeUInt16LE(name.length, 28); c.writeUInt32LE(offset, 42);
      central(i, c);
      locals.push(h, name, stored);
      centrals.push(c, name);
      offset += 30 + name.length + stored.length;
    });
    const cd = Buffer.concat(centrals);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
    end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
    return Buffer.concat([...locals, cd, end]);
  }
  const text = Buffer.from('penny '.repeat(200));

  it('accepts stored and deflated entries, and the fixtures torch wrote (zip64 records, data descriptors)', () => {
    expect(() => verifyZip(writeCopy('zip/ok.zip', zip([{ name: 'a/data.pkl', data: text }, { name: 'a/data/0', data: text, method: 8 }])))).not.toThrow();
    expect(() => verifyZip(path.join(FIXTURE, 'pytorch_model.bin'))).not.toThrow();
  });

  it('rejects a deflated entry whose data is corrupt', () => {
    const bytes = zip([{ name: 'a/data/0', data: text, method: 8 }]);
    bytes[40] ^= 0xff;
    const f = writeCopy('zip/deflate.zip', bytes);
    expect(() => verifyZip(f)).toThrow(new RegExp(`^${esc(f)}: entry 'a/data/0' (does not inflate|inflates to|fails its CRC-32)`));
  });

  it('rejects a central name that its local header does not repeat', () => {
    const bytes = zip([{ name: 'a/data/0', data: text }]);
    bytes[30 + 7] = '9'.charCodeAt(0);   // the local name's last character
    const f = writeCopy('zip/names.zip', bytes);
    expect(() => verifyZip(f)).toThrow(`${f}: entry 'a/data/0': its local header names it 'a/data/9': the file is corrupt`);
  });

  it('rejects entries that overlap, even when every CRC holds', () => {
    // entry 'outer' holds a whole local entry 'inner' as its data, and the central directory lists both
    const inner = zip([{ name: 'inner', data: text }]).subarray(0, 30 + 5 + text.length);
    const bytes = zip([{ name: 'outer', data: inner }, { name: 'inner', data: text }], (i, c) => {
      if (i === 1) c.writeUInt32LE(30 + 5, 42);
    });
    const f = writeCopy('zip/overlap.zip', bytes);
    expect(() => verifyZip(f)).toThrow(new RegExp(`^${esc(f)}: entry 'outer' \\(bytes 0\\.\\.\\d+\\) overlaps entry 'inner' at byte 35: the file is corrupt$`));
  });

  it('rejects an entry whose data runs past the end of the file', () => {
    const f = writeCopy('zip/long.zip', zip([{ name: 'a', data: text }], (_, c) => { c.writeUInt32LE(1 << 20, 20); c.writeUInt32LE(1 << 20, 24); }));
    expect(() => verifyZip(f)).toThrow(new RegExp(`^${esc(f)}: entry 'a': (its local and central headers disagree|its data .* runs past the end of the file)`));
  });
});

describe('Hugging Face weights', () => {
  const original = fs.readFileSync(path.join(FIXTURE, 'model.safetensors'));
  const n = Number(original.readBigUInt64LE(0));
  const header = JSON.parse(original.toString('utf8', 8, 8 + n)) as Record<string, any>;
  const data = original.subarray(8 + n);
  const tensors = Object.entries(header).filter(([k]) => k !== '__metadata__').sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  const [lastName] = tensors[tensors.length - 1];
  const all = () => true;

  /** The fixture with its header re-serialized after `edit`, and its data section as is (or as `body` gives it). */
  function variant(name: string, edit: (h: Record<string, any>) => void, body: Buffer = data): string {
    const h = structuredClone(header);
    edit(h);
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return writeCopy(`st/${name}/model.safetensors`, Buffer.concat([len, json, body]));
  }
  const withLength = (name: string, length: number) => {
    const b = Buffer.from(original);
    b.writeBigUInt64LE(BigInt(length), 0);
    return writeCopy(`st/${name}/model.safetensors`, b);
  };
  const rejects = (file: string, message: RegExp | string) => {
    let err: Error | undefined;
    try {
      readSafetensors(file, all);
    } catch (e) {
      err = e as Error;
    }
    expect(err, 'accepted').toBeInstanceOf(UsageError);
    expect(err!.message.startsWith(`${file}: `), err!.message).toBe(true);
    if (typeof message === 'string') expect(err!.message).toContain(message);
    else expect(err!.message).toMatch(message);
  };

  it('reads the untouched file and a re-serialized copy (the variants below differ only in what they break)', () => {
    expect(readSafetensors(path.join(FIXTURE, 'model.safetensors'), all).size).toBe(tensors.length);
    expect(readSafetensors(variant('same', () => {}), all).size).toBe(tensors.length);
  });

  it('rejects a truncated file, naming the tensor that runs past the end', () => {
    rejects(variant('cut', () => {}, data.subarray(0, data.length - 10)), new RegExp(`tensor '${esc(lastName)}' ends at byte ${header[lastName].data_offsets[1]}, past the end of the data section \\(${data.length - 10} bytes\\): the file is truncated or corrupt`));
    rejects(writeCopy('st/cut-header/model.safetensors', original.subarray(0, 100)), `not a safetensors file, or truncated (header length ${n}, file size 100)`);
    rejects(writeCopy('st/cut-length/model.safetensors', original.subarray(0, 5)), 'header length missing');
  });

  it('rejects a header length off by one either way, or out of range', () => {
    // +1 reads the first data byte as JSON; -1 drops the header's padding space, and a byte of header becomes data
    rejects(withLength('plus1', n + 1), /is not valid JSON|belong to no tensor/);
    rejects(withLength('minus1', n - 1), /1 byte after the last tensor belong to no tensor|is not valid JSON/);
    rejects(withLength('huge', original.length), `not a safetensors file, or truncated (header length ${original.length}`);
    rejects(withLength('zero', 0), 'header length 0');
  });

  it('rejects offsets past the end, overlapping, leaving a gap, negative or reversed, naming the tensor', () => {
    const [a, b] = [tensors[3][0], tensors[4][0]];
    const shift = (h: Record<string, any>, k: string, by: number) => (h[k].data_offsets = h[k].data_offsets.map((o: number) => o + by));
    rejects(variant('past', (h) => shift(h, lastName, 8)), new RegExp(`tensor '${esc(lastName)}' ends at byte \\d+, past the end of the data section`));
    rejects(variant('overlap', (h) => shift(h, b, -4)), `tensor '${b}' (bytes ${header[b].data_offsets[0] - 4}..${header[b].data_offsets[1] - 4}) overlaps tensor '${a}', which ends at byte ${header[a].data_offsets[1]}`);
    rejects(variant('gap', (h) => delete h[b]), `tensor '${a}' and tensor '${tensors[5][0]}' leave a gap of ${header[b].data_offsets[1] - header[b].data_offsets[0]} bytes`);
    rejects(variant('negative', (h) => shift(h, a, -header[a].data_offsets[1] - 4)), new RegExp(`tensor '${esc(a)}' has data_offsets \\[-\\d+,-4\\]; they must be \\[begin, end\\] with 0 <= begin <= end`));
    rejects(variant('reversed', (h) => h[a].data_offsets.reverse()), `tensor '${a}' has data_offsets [${[...header[a].data_offsets].reverse().join(',')}]`);
  });

  it('rejects a bad dtype, shape or size, and bad JSON', () => {
    const a = tensors[2][0];
    rejects(variant('metadata', (h) => (h.__metadata__ = { format: 3 })), 'the safetensors __metadata__ is {"format":3}; it must map strings to strings');
    rejects(variant('dtype', (h) => (h[a].dtype = 'F33')), `tensor '${a}' has dtype "F33", which is not a safetensors dtype`);
    rejects(variant('shape', (h) => (h[a].shape = [-1])), `tensor '${a}' has shape [-1], not a list of sizes`);
    rejects(variant('size', (h) => (h[a].shape = [...h[a].shape, 2])), new RegExp(`tensor '${esc(a)}' spans \\d+ bytes, but F32 of shape \\[[\\d, ]+\\] needs \\d+`));
    const json = Buffer.from(original);
    json[8] = '#'.charCodeAt(0);
    rejects(writeCopy('st/json/model.safetensors', json), /the safetensors header \(\d+ bytes\) is not valid JSON \(.+\): the file is corrupt/);
    const list = Buffer.from('[]');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(2n);
    rejects(writeCopy('st/array/model.safetensors', Buffer.concat([len, list, data])), 'the safetensors header is not a JSON object');
  });

  it('createModel passes the error on as a UsageError (exit 2)', async () => {
    const file = variant('cut-model', () => {}, data.subarray(0, data.length - 10));
    const err = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: file }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain(`${file}: tensor '${lastName}' ends at byte`);
  });

  it('rejects pytorch_model.bin with a flipped data byte (LibTorch alone reads it), naming the file and the entry', async () => {
    const bytes = fs.readFileSync(path.join(FIXTURE, 'pytorch_model.bin'));
    const e = entryData(bytes, '/data/5');
    bytes[e.start + 3] ^= 0x01;
    const bad = writeCopy('bin/pytorch_model.bin', bytes);
    await expect(readTorchFile(bad)).resolves.toBeTruthy();
    const err = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: bad }).catch((x: Error) => x);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(new RegExp(`^${esc(bad)} is not a readable torch\\.save file: entry '${esc(e.name)}' fails its CRC-32 check`));
  });

  it('names the index file for bad JSON, no weight_map, or a missing shard', () => {
    const idx = (name: string, text: string) => writeCopy(`idx/${name}/model.safetensors.index.json`, text);
    let f = idx('json', '{"weight_map": ');
    expect(() => resolveWeightFiles(f)).toThrow(new RegExp(`^${esc(f)}: not valid JSON`));
    f = idx('nomap', '{"metadata": {}}');
    expect(() => resolveWeightFiles(f)).toThrow(`${f}: no weight_map`);
    f = idx('shard', '{"weight_map": {"a": "model-00001.safetensors"}}');
    expect(() => resolveWeightFiles(f)).toThrow(`${f}: shard ${path.join(path.dirname(f), 'model-00001.safetensors')} not found`);
    f = idx('escape', '{"weight_map": {"a": "../x.safetensors"}}');
    expect(() => resolveWeightFiles(f)).toThrow(`${f}: weight_map names shard "../x.safetensors"`);
  });
});
