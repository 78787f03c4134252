// What a run will need, checked before it starts: an img_size of 4096 x 4096 should be a clear message at startup,
// not the kernel's OOM killer an hour in.
import fs from 'node:fs';
import os from 'node:os';
import { UsageError } from '../errors.js';
import { inferShapes } from '../export/onnx.js';
import type { Graph } from '../model/graph.js';

/** ops whose output is a view of their input (no memory of its own) */
const VIEWS = new Set(['reshape']);

/**
 * Bytes a training step holds at its peak, estimated: every activation of the forward pass at `batch` (autograd keeps
 * them for the backward pass), float32; and per parameter its value, gradient and AdamW's two moments.
 */
export function trainingMemoryBytes(graph: Graph, batch: number): number {
  const shapes = inferShapes(graph, batch);
  let activations = 0;
  const numel = (name: string) => (shapes.get(name) ?? []).reduce<number>((a, d) => a * (d ?? 1), 1);
  for (const n of graph.nodes) {
    if (VIEWS.has(n.op)) continue;
    activations += numel(n.output);
    // attention keeps its [B, heads, T, T] probabilities for the backward pass: at 4096 px the T^2 term is all of it
    if (n.op === 'attention') {
      const [b, t] = (shapes.get(n.inputs[0]) ?? []).map((d) => d ?? 1);
      activations += b * (n.attrs as { heads: number }).heads * t * t;
    }
  }
  const params = graph.params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  return 4 * activations + 16 * params;
}

/** The memory this process may use: the machine's, or its cgroup's limit when lower (containers). */
export function memoryLimitBytes(): number {
  let limit = os.totalmem();
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const v = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isFinite(v) && v > 0) limit = Math.min(limit, v);
    } catch { /* no such cgroup file */ }
  }
  return limit;
}

const gb = (b: number) => `${(b / 2 ** 30).toFixed(1)} GB`;

/** Throws a UsageError when a CPU training step of `graph` at `batch` cannot fit in this machine's memory. */
export function checkTrainingMemory(graph: Graph, batch: number, imgSize: [number, number], limit = memoryLimitBytes()): void {
  const need = trainingMemoryBytes(graph, batch);
  if (need <= limit) return;
  throw new UsageError(`a training step at img_size [${imgSize.join(', ')}] and batch_size ${batch} needs about ${gb(need)} ` +
    `of memory (activations kept for the backward pass, weights, gradients, AdamW state); this machine allows ${gb(limit)}. ` +
    'Lower batch_size or img_size');
}
