// Pretrained weights from Hugging Face CLIP checkpoints (CLIPModel or CLIPVisionModelWithProjection layout;
// model.safetensors or pytorch_model.bin, sharded or not) into a graph's parameters, checked key by key.
import fs from 'node:fs';
import path from 'node:path';
import { readTorchFile, type TorchValueTensor } from '../backend/native.js';
import { listProblems } from '../errors.js';
import type { Graph } from './graph.js';

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

const VISION = /^(vision_model\.|visual_projection\.)/;
/** buffers some transformers versions saved; they are not parameters */
const IGNORED = new Set(['vision_model.embeddings.position_ids']);
const FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'];

/** The weight files of a checkpoint folder or file. */
export function resolveWeightFiles(p: string): string[] {
  if (!fs.existsSync(p)) throw new Error(`pretrained weights not found: ${p}`);
  let file = p;
  if (fs.statSync(p).isDirectory()) {
    const name = FILES.find((f) => fs.existsSync(path.join(p, f)));
    if (!name) throw new Error(`no weights in ${p}: expected one of ${FILES.join(', ')}`);
    file = path.join(p, name);
  }
  if (file.endsWith('.index.json')) {
    let index: { weight_map?: Record<string, string> };
    try {
      index = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
    }
    if (!index.weight_map) throw new Error(`${file}: no weight_map`);
    return [...new Set(Object.values(index.weight_map))].map((f) => path.join(path.dirname(file), f));
  }
  return [file];
}

const DTYPES: Record<string, { bytes: number; read: (b: Buffer, o: number) => number }> = {
  F32: { bytes: 4, read: (b, o) => b.readFloatLE(o) },
  F64: { bytes: 8, read: (b, o) => b.readDoubleLE(o) },
  F16: { bytes: 2, read: (b, o) => halfToFloat(b.readUInt16LE(o)) },
  BF16: { bytes: 2, read: (b, o) => bf16ToFloat(b.readUInt16LE(o)) },
};

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const bf = new DataView(new ArrayBuffer(4));
function bf16ToFloat(h: number): number {
  bf.setUint32(0, h << 16);
  return bf.getFloat32(0);
}

/** Reads the tensors of a .safetensors file that `want` accepts, converted to float32. */
export function readSafetensors(file: string, want: (name: string) => boolean): Map<string, NamedTensor> {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(8);
    fs.readSync(fd, head, 0, 8, 0);
    const n = Number(head.readBigUInt64LE(0));
    if (n <= 0 || 8 + n > size) throw new Error(`${file}: not a safetensors file (header length ${n}, file size ${size})`);
    const json = Buffer.alloc(n);
    fs.readSync(fd, json, 0, n, 8);
    const header = JSON.parse(json.toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const out = new Map<string, NamedTensor>();
    for (const [name, t] of Object.entries(header)) {
      if (name === '__metadata__' || !want(name)) continue;
      const dt = DTYPES[t.dtype];
      if (!dt) throw new Error(`${file}: tensor '${name}' has dtype ${t.dtype}; penny-train reads F32, F16, BF16, F64`);
      const [begin, end] = t.data_offsets;
      const buf = Buffer.alloc(end - begin);
      fs.readSync(fd, buf, 0, buf.length, 8 + n + begin);
      const data = new Float32Array(buf.length / dt.bytes);
      if (t.dtype === 'F32') new Uint8Array(data.buffer).set(buf);
      else for (let i = 0; i < data.length; i++) data[i] = dt.read(buf, i * dt.bytes);
      out.set(name, { shape: t.shape, data });
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

async function readBin(file: string, want: (name: string) => boolean): Promise<Map<string, NamedTensor>> {
  const value = await readTorchFile(file);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${file}: not a state dict`);
  const out = new Map<string, NamedTensor>();
  for (const [name, t] of Object.entries(value as Record<string, TorchValueTensor>)) {
    if (!want(name)) continue;
    if (t?.kind !== 'tensor') throw new Error(`${file}: '${name}' is not a tensor`);
    out.set(name, { shape: t.shape, data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data) });
  }
  return out;
}

/** Loads a checkpoint's vision weights for `graph`; every parameter but the head must be there with its shape. */
export async function loadPretrained(graph: Graph, weights: string, backbone: string): Promise<Record<string, Float32Array>> {
  const tensors = new Map<string, NamedTensor>();
  const files = resolveWeightFiles(weights);
  for (const f of files) {
    const part = f.endsWith('.safetensors') ? readSafetensors(f, (n) => VISION.test(n)) : await readBin(f, (n) => VISION.test(n));
    for (const [k, v] of part) tensors.set(k, v);
  }
  const where = files.length === 1 ? files[0] : `${weights} (${files.length} shards)`;
  const expected = new Map(graph.params.filter((p) => VISION.test(p.name)).map((p) => [p.name, p.shape]));
  const problems: string[] = [];
  const fmt = (s: number[]) => `[${s.join(', ')}]`;
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (!t) problems.push(`missing key '${name}' (${backbone} expects shape ${fmt(shape)})`);
    else if (fmt(t.shape) !== fmt(shape)) problems.push(`key '${name}': the file has shape ${fmt(t.shape)}, ${backbone} expects ${fmt(shape)}`);
  }
  for (const [name, t] of tensors) {
    if (!expected.has(name) && !IGNORED.has(name)) problems.push(`unexpected key '${name}' (shape ${fmt(t.shape)}): ${backbone} has no such parameter`);
  }
  if (problems.length) throw new Error(listProblems(`${where} does not fit ${backbone}`, problems));
  const out: Record<string, Float32Array> = {};
  for (const name of expected.keys()) out[name] = tensors.get(name)!.data;
  return out;
}
