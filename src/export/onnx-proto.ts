// The ONNX protobuf schema, loaded with protobufjs from the official onnx.proto3 (onnx/onnx v1.22.0, committed next to
// this file), and plain TypeScript shapes for the messages penny-train builds. Nothing here encodes protobuf by hand.
//
// Where the .proto lives: next to this module under src/ (tsx, vitest), and for dist/ (after tsc) the package ships
// src/export/onnx.proto3 (package.json "files"), found relative to the package root; a copy next to the compiled
// module (dist/export/onnx.proto3) is used first if a build step puts one there.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/** TensorProto.DataType values used here */
export const DataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7 } as const;
/** AttributeProto.AttributeType values */
export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

export interface TensorProto {
  name: string;
  dims: number[];
  dataType: number;
  /** little-endian element bytes */
  rawData?: Uint8Array;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: number[];
}

export interface AttributeProto {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  floats?: number[];
  ints?: number[];
}

export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  opType: string;
  domain?: string;
  attribute?: AttributeProto[];
}

export interface Dim { dimValue?: number; dimParam?: string }

export interface ValueInfoProto {
  name: string;
  type: { tensorType: { elemType: number; shape: { dim: Dim[] } } };
}

export interface GraphProto {
  name: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo?: ValueInfoProto[];
  docString?: string;
}

export interface ModelProto {
  irVersion: number;
  opsetImport: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  graph: GraphProto;
  metadataProps: { key: string; value: string }[];
  docString?: string;
}

const PROTO_NAME = 'onnx.proto3';

/** Where onnx.proto3 is: next to this module, else <package root>/src/export/. */
export function onnxProtoPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, PROTO_NAME)];
  for (let dir = here, i = 0; i < 6; i++, dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      candidates.push(path.join(dir, 'src', 'export', PROTO_NAME));
      break;
    }
  }
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`penny-train: the ONNX schema ${PROTO_NAME} is missing; looked in ${candidates.join(', ')}`);
  return found;
}

let modelType: protobuf.Type | undefined;

function modelProtoType(): protobuf.Type {
  if (!modelType) modelType = protobuf.loadSync(onnxProtoPath()).lookupType('onnx.ModelProto');
  return modelType;
}

/** Serialises a model (protobuf wire format, as onnx.save writes it). */
export function encodeModel(model: ModelProto): Uint8Array {
  const T = modelProtoType();
  const err = T.verify(model);
  if (err) throw new Error(`penny-train: invalid ONNX model: ${err}`);
  return T.encode(model as unknown as protobuf.Message).finish();
}

/** Parses an .onnx file's bytes; int64 fields come back as numbers, bytes as Uint8Array. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const T = modelProtoType();
  const msg = T.decode(bytes);
  // defaults: proto3 leaves zero values off the wire (an attribute `axis = 0` has no `i`); they come back as 0/''/[].
  return T.toObject(msg, { longs: Number, enums: Number, defaults: true, arrays: true }) as ModelProto;
}

export function readModel(file: string): ModelProto {
  return decodeModel(fs.readFileSync(file));
}

/** metadata_props as a record */
export function metadataOf(model: ModelProto): Record<string, string> {
  return Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
}

/** A copy of `model` with `props` added to (or replacing entries of) its metadata_props. */
export function withMetadata(model: ModelProto, props: Record<string, string>): ModelProto {
  const kept = model.metadataProps.filter((p) => !(p.key in props));
  return { ...model, metadataProps: [...kept, ...Object.entries(props).map(([key, value]) => ({ key, value: String(value) }))] };
}

// ---- helpers to build and read messages ----

export function attrInt(name: string, i: number): AttributeProto { return { name, type: AttrType.INT, i }; }
export function attrFloat(name: string, f: number): AttributeProto { return { name, type: AttrType.FLOAT, f }; }
export function attrInts(name: string, ints: number[]): AttributeProto { return { name, type: AttrType.INTS, ints }; }

export function getAttr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function floatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  return { name, dims, dataType: DataType.FLOAT, rawData: bytesOf(data) };
}
export function int64Tensor(name: string, dims: number[], data: number[]): TensorProto {
  return { name, dims, dataType: DataType.INT64, rawData: bytesOf(BigInt64Array.from(data.map((v) => BigInt(v)))) };
}
export function int32Tensor(name: string, dims: number[], data: Int32Array): TensorProto {
  return { name, dims, dataType: DataType.INT32, rawData: bytesOf(data) };
}
export function int8Tensor(name: string, dims: number[], data: Int8Array): TensorProto {
  return { name, dims, dataType: DataType.INT8, rawData: bytesOf(data) };
}
export function uint8Tensor(name: string, dims: number[], data: Uint8Array): TensorProto {
  return { name, dims, dataType: DataType.UINT8, rawData: bytesOf(data) };
}

/** An initializer's elements as numbers (float32 tensors as a Float32Array view or copy). */
export function tensorFloats(t: TensorProto): Float32Array {
  if (t.dataType !== DataType.FLOAT) throw new TypeError(`tensor '${t.name}' is not float32 (data type ${t.dataType})`);
  if (t.rawData && t.rawData.byteLength) {
    const copy = new Uint8Array(t.rawData);   // aligned copy
    return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
  }
  return Float32Array.from(t.floatData ?? []);
}

export function tensorInts(t: TensorProto): number[] {
  if (t.dataType === DataType.INT64) {
    if (t.rawData && t.rawData.byteLength) {
      const copy = new Uint8Array(t.rawData);
      return [...new BigInt64Array(copy.buffer, 0, copy.byteLength / 8)].map(Number);
    }
    return (t.int64Data ?? []).map(Number);
  }
  if (t.dataType === DataType.INT32) {
    if (t.rawData && t.rawData.byteLength) {
      const copy = new Uint8Array(t.rawData);
      return [...new Int32Array(copy.buffer, 0, copy.byteLength / 4)];
    }
    return t.int32Data ?? [];
  }
  throw new TypeError(`tensor '${t.name}' is not an integer tensor (data type ${t.dataType})`);
}

/** A name not in `taken` (base, base_1, base_2, ...), then taken. */
export function uniqueName(base: string, taken: Set<string>): string {
  let name = base;
  for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
  taken.add(name);
  return name;
}

export function tensorValueInfo(name: string, elemType: number, dims: (number | string)[]): ValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}

/** op type -> count, over the main graph ('domain:Op' for ops outside the default domain) */
export function opHistogram(model: ModelProto): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of model.graph.node) {
    const k = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}:${n.opType}` : n.opType;
    h[k] = (h[k] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(h).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
}

/** Removes nodes whose outputs nobody reads (and initializers nobody reads). */
export function pruneDeadNodes(graph: GraphProto): void {
  const live = new Set(graph.output.map((o) => o.name));
  const keep: NodeProto[] = [];
  for (let i = graph.node.length - 1; i >= 0; i--) {
    const n = graph.node[i];
    if (n.output.some((o) => live.has(o))) {
      keep.push(n);
      for (const x of n.input) if (x) live.add(x);
    }
  }
  graph.node = keep.reverse();
  graph.initializer = graph.initializer.filter((t) => live.has(t.name));
}

/** A deep-enough copy of a model for passes that rewrite nodes/initializers (tensor bytes are shared). */
export function cloneModel(model: ModelProto): ModelProto {
  const g = model.graph;
  return {
    ...model,
    opsetImport: model.opsetImport.map((o) => ({ ...o })),
    metadataProps: model.metadataProps.map((p) => ({ ...p })),
    graph: {
      ...g,
      node: g.node.map((n) => ({ ...n, input: [...n.input], output: [...n.output], attribute: (n.attribute ?? []).map((a) => ({ ...a })) })),
      initializer: g.initializer.map((t) => ({ ...t, dims: [...t.dims] })),
      input: structuredClone(g.input),
      output: structuredClone(g.output),
      valueInfo: g.valueInfo ? structuredClone(g.valueInfo) : undefined,
    },
  };
}
