// Pretrained weights from Hugging Face CLIP checkpoints (CLIPModel or CLIPVisionModelWithProjection layout;
// model.safetensors or pytorch_model.bin, sharded or not) into a graph's parameters, checked key by key.
import fs from 'node:fs';
import path from 'node:path';
import { readTorchFile, type TorchValueTensor } from '../backend/native.js';
import { listProblems, UsageError } from '../errors.js';
import { verifyZip, ZipError } from '../util/zip.js';
import { numel, type Graph } from './graph.js';

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
  if (!fs.existsSync(p)) throw new UsageError(`pretrained weights not found: ${p}`);
  let file = p;
  if (fs.statSync(p).isDirectory()) {
    const name = FILES.find((f) => fs.existsSync(path.join(p, f)));
    if (!name) throw new UsageError(`no weights in ${p}: expected one of ${FILES.join(', ')}`);
    file = path.join(p, name);
  }
  if (file.endsWith('.index.json')) {
    let index: { weight_map?: unknown };
    try {
      index = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new UsageError(`${file}: not valid JSON (${(e as Error).message})`);
    }
    const map = index?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new UsageError(`${file}: no weight_map (a dict of tensor name to shard file)`);
    const shards = [...new Set(Object.values(map))];
    const bad = shards.find((f) => typeof f !== 'string' || f === '' || path.isAbsolute(f) || f.split(/[\\/]/).includes('..'));
    if (bad !== undefined) throw new UsageError(`${file}: weight_map names shard ${JSON.stringify(bad)}; shards are file names beside the index`);
    const files = (shards as string[]).map((f) => path.join(path.dirname(file), f));
    const gone = files.filter((f) => !fs.existsSync(f));
    if (gone.length) throw new UsageError(`${file}: shard${gone.length > 1 ? 's' : ''} ${gone.join(', ')} not found`);
    return files;
  }
  return [file];
}

/** The dtypes penny-train converts to float32. */
const DTYPES: Record<string, { bytes: number; read: (b: Buffer, o: number) => number }> = {
  F32: { bytes: 4, read: (b, o) => b.readFloatLE(o) },
  F64: { bytes: 8, read: (b, o) => b.readDoubleLE(o) },
  F16: { bytes: 2, read: (b, o) => halfToFloat(b.readUInt16LE(o)) },
  BF16: { bytes: 2, read: (b, o) => bf16ToFloat(b.readUInt16LE(o)) },
};
/** Every dtype of the safetensors spec, by size: tensors we skip must still be sized to check the layout. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8,
};
/** The spec's limit: a larger header is a corrupt length, not a header worth reading into memory. */
const MAX_HEADER = 100_000_000;

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

interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * A safetensors header's entries, checked as the spec asks: known dtypes, sizes that fit the shapes, and offsets that
 * tile the data section exactly (no gap, no overlap, nothing past its end: a truncated file fails here).
 */
function safetensorsEntries(file: string, header: unknown, dataLength: number): SafetensorsEntry[] {
  const fail = (msg: string): never => {
    throw new UsageError(`${file}: ${msg}`);
  };
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return fail('the safetensors header is not a JSON object: the file is corrupt');
  const entries: SafetensorsEntry[] = [];
  const isSize = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
  for (const [name, t] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      const ok = typeof t === 'object' && t !== null && !Array.isArray(t) && Object.values(t).every((v) => typeof v === 'string');
      if (!ok) fail(`the safetensors __metadata__ is ${JSON.stringify(t)}; it must map strings to strings: the file is corrupt`);
      continue;
    }
    const { dtype, shape, data_offsets: off } = (t ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `tensor '${name}'`;
    const bytes = DTYPE_BYTES[dtype as string];
    if (!bytes) fail(`${where} has dtype ${JSON.stringify(dtype)}, which is not a safetensors dtype (${Object.keys(DTYPE_BYTES).join(', ')}): the file is corrupt`);
    if (!Array.isArray(shape) || !shape.every(isSize)) fail(`${where} has shape ${JSON.stringify(shape)}, not a list of sizes: the file is corrupt`);
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isSize) || off[0] > off[1]) {
      fail(`${where} has data_offsets ${JSON.stringify(off)}; they must be [begin, end] with 0 <= begin <= end: the file is corrupt`);
    }
    const [begin, end] = off as number[];
    const count = numel(shape as number[]);
    if (end - begin !== count * bytes) fail(`${where} spans ${end - begin} bytes, but ${dtype} of shape [${(shape as number[]).join(', ')}] needs ${count * bytes}: the file is corrupt`);
    if (end > dataLength) fail(`${where} ends at byte ${end}, past the end of the data section (${dataLength} bytes): the file is truncated or corrupt`);
    entries.push({ name, dtype: dtype as string, shape: shape as number[], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev = 'the start of the data section';
  for (const e of sorted) {
    if (e.begin > at) fail(`${prev} and tensor '${e.name}' leave a gap of ${e.begin - at} bytes (${at}..${e.begin}): the file is corrupt`);
    if (e.begin < at) fail(`tensor '${e.name}' (bytes ${e.begin}..${e.end}) overlaps ${prev}, which ends at byte ${at}: the file is corrupt`);
    at = e.end;
    prev = `tensor '${e.name}'`;
  }
  if (at !== dataLength) fail(`${dataLength - at} byte${dataLength - at === 1 ? '' : 's'} after the last tensor belong to no tensor (data section ${dataLength} bytes): the file is corrupt`);
  return entries;
}

/** Reads the tensors of a .safetensors file that `want` accepts, converted to float32; the whole layout is checked first. */
export function readSafetensors(file: string, want: (name: string) => boolean): Map<string, NamedTensor> {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(8);
    const n = fs.readSync(fd, head, 0, 8, 0) === 8 ? Number(head.readBigUInt64LE(0)) : -1;
    // "{}" is the smallest header
    if (n < 2 || n > MAX_HEADER || 8 + n > size) {
      throw new UsageError(`${file}: not a safetensors file, or truncated (header length ${n < 0 ? 'missing' : n}, file size ${size})`);
    }
    const json = Buffer.alloc(n);
    fs.readSync(fd, json, 0, n, 8);
    let header: unknown;
    try {
      header = JSON.parse(json.toString('utf8'));
    } catch (e) {
      throw new UsageError(`${file}: the safetensors header (${n} bytes) is not valid JSON (${(e as Error).message}): the file is corrupt`);
    }
    const out = new Map<string, NamedTensor>();
    for (const t of safetensorsEntries(file, header, size - 8 - n)) {
      if (!want(t.name)) continue;
      const dt = DTYPES[t.dtype];
      if (!dt) throw new UsageError(`${file}: tensor '${t.name}' has dtype ${t.dtype}; penny-train reads F32, F16, BF16, F64`);
      const buf = Buffer.alloc(t.end - t.begin);
      fs.readSync(fd, buf, 0, buf.length, 8 + n + t.begin);
      const data = new Float32Array(buf.length / dt.bytes);
      if (t.dtype === 'F32') new Uint8Array(data.buffer).set(buf);
      else for (let i = 0; i < data.length; i++) data[i] = dt.read(buf, i * dt.bytes);
      out.set(t.name, { shape: t.shape, data });
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

async function readBin(file: string, want: (name: string) => boolean): Promise<Map<string, NamedTensor>> {
  // LibTorch's reader checks no CRC: a flipped byte would load as a wrong weight.
  try {
    verifyZip(file);
  } catch (e) {
    throw e instanceof ZipError ? new UsageError(`${file} is not a readable torch.save file: ${e.detail}`) : e;
  }
  let value: unknown;
  try {
    value = await readTorchFile(file);
  } catch (e) {
    const msg = (e as Error).message;
    throw new UsageError(msg.includes(file) ? msg : `${file}: ${msg}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError(`${file}: not a state dict`);
  const out = new Map<string, NamedTensor>();
  for (const [name, t] of Object.entries(value as Record<string, TorchValueTensor>)) {
    if (!want(name)) continue;
    if (t?.kind !== 'tensor') throw new UsageError(`${file}: '${name}' is not a tensor`);
    const count = numel(t.shape);
    if (t.data.length !== count) throw new UsageError(`${file}: tensor '${name}' holds ${t.data.length} values, its shape [${t.shape.join(', ')}] needs ${count}`);
    out.set(name, { shape: t.shape, data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data) });
  }
  return out;
}

/** Loads a checkpoint's vision weights for `graph`; every parameter but the head must be there with its shape. */
export async function loadPretrained(graph: Graph, weights: string, backbone: string): Promise<Record<string, Float32Array>> {
  const tensors = new Map<string, NamedTensor>();
  const files = resolveWeightFiles(weights);
  for (const f of files) {
    const want = (n: string) => VISION.test(n) && !IGNORED.has(n);
    const part = f.endsWith('.safetensors') ? readSafetensors(f, want) : await readBin(f, want);
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
  if (problems.length) throw new UsageError(listProblems(`${where} does not fit ${backbone}`, problems));
  const out: Record<string, Float32Array> = {};
  for (const name of expected.keys()) out[name] = tensors.get(name)!.data;
  return out;
}
