// Pretrained CLIP weights in Hugging Face layouts: our embed() must equal transformers' image_embeds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createModel } from '../src/index.js';
import { readSafetensors } from '../src/model/weights.js';
import { FIXTURE, maxAbsDiff, readF32 } from './helpers.js';

const input = readF32(path.join(FIXTURE, 'input.f32'));
const expected = readF32(path.join(FIXTURE, 'image_embeds.f32'));

/** Writes a safetensors file with `tensors` (float32). */
function writeSafetensors(file: string, tensors: Map<string, { shape: number[]; data: Float32Array }>) {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [k, t] of tensors) {
    header[k] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, ...[...tensors.values()].map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]));
}

function variant(edit: (t: Map<string, { shape: number[]; data: Float32Array }>) => void): string {
  const t = readSafetensors(path.join(FIXTURE, 'model.safetensors'), () => true);
  edit(t);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'penny-w-')), 'model.safetensors');
  writeSafetensors(file, t);
  return file;
}

describe('Hugging Face CLIP weights', () => {
  for (const file of ['model.safetensors', 'pytorch_model.bin']) {
    it(`embed() matches transformers' image_embeds from ${file} within 1e-4`, async () => {
      const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: path.join(FIXTURE, file) });
      const emb = await m.embed(input, [2, 3, 64, 64]);
      expect(emb.length).toBe(2 * 64);
      expect(maxAbsDiff(emb, expected)).toBeLessThan(1e-4);
      m.dispose();
    });
  }

  it('loads a folder, preferring model.safetensors, and ignores the text tower', async () => {
    const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: 3, weights: FIXTURE });
    expect(maxAbsDiff(await m.embed(input, [2, 3, 64, 64]), expected)).toBeLessThan(1e-4);
    expect(m.pretrained).toBe(FIXTURE);
  });

  it('names a missing key with its expected shape', async () => {
    const file = variant((t) => t.delete('vision_model.encoder.layers.1.mlp.fc2.bias'));
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: file }))
      .rejects.toThrow(/missing key 'vision_model\.encoder\.layers\.1\.mlp\.fc2\.bias' \(clip_vit_tiny expects shape \[64\]\)/);
  });

  it('names an extra vision key', async () => {
    const file = variant((t) => t.set('vision_model.encoder.layers.2.mlp.fc2.bias', { shape: [64], data: new Float32Array(64) }));
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: file }))
      .rejects.toThrow(/unexpected key 'vision_model\.encoder\.layers\.2\.mlp\.fc2\.bias' \(shape \[64\]\)/);
  });

  it('names a shape mismatch with both shapes', async () => {
    // 32 px images have 5 position embeddings; the checkpoint was made for 64 px (17).
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 5, imageSize: 32, weights: FIXTURE }))
      .rejects.toThrow(/key 'vision_model\.embeddings\.position_embedding\.weight': the file has shape \[17, 64\], clip_vit_tiny expects \[5, 64\]/);
  });

  it('rejects a file that is not a checkpoint, naming it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-w-'));
    const bin = path.join(dir, 'pytorch_model.bin');
    fs.writeFileSync(bin, 'not a pickle');
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: bin })).rejects.toThrow(/pytorch_model\.bin is not a readable torch\.save file/);
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: path.join(dir, 'nope') })).rejects.toThrow(/not found: .*nope/);
    await expect(createModel({ backbone: 'clip_vit_tiny', numClasses: 5, weights: fs.mkdtempSync(path.join(os.tmpdir(), 'penny-w-')) })).rejects.toThrow(/no weights in/);
  });
});
