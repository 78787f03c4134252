// `ops` part (issue 5): the native (LibTorch) and JS tensor paths op by op, per train step and per eval, and the
// native ViT-B/32 train step's FLOP rate against a GEMM ceiling measured in the same run.
//
// Native ops are timed through the public API: a graph of R copies of the op run with forward() (one N-API call, the
// output copied back once): time per op = call time / R, so the call's fixed cost is spread over R ops (it is
// measured too, in the notes). Shape-preserving ops are chained (each copy reads the previous one's output, which is
// then freed, so the allocator reuses memory as in a model); conv and the MLP matmul, whose output cannot feed
// them again, read the same input R times. JS ops are the JS kernels called directly (one thread). Forward only,
// except cross-entropy (forward + backward, through lossAndGrads() on both backends).
import { lossAndGrad } from '../../src/backend/js/loss.js';
import { KERNELS } from '../../src/backend/js/ops/index.js';
import type { Tensor } from '../../src/backend/js/tensor.js';
import { inferShapes } from '../../src/export/onnx.js';
import { numel, type Graph } from '../../src/model/graph.js';
import { createModel, createModelFromGraph, GraphBuilder, setNumThreads } from '../../src/index.js';
import { fmt, pct, randomNormal, ratioStr, verdict } from './common.js';
import type { BenchContext, PartResult } from './index.js';
import { measure, summarize, type Stats } from './stats.js';

/** the kernels' forwards as inference runs them (what they compute is the same in training, but for batch norm) */
const INFERENCE = { training: false };
const SPEEDUP_TARGET = 20;
const JS_MATMUL_TARGET = 2;   // GFLOP/s, one core
const CEILING_TARGET = 0.6;

interface Runs { warmup: number; runs: number }

/** An op on both paths. `unit`: GFLOP/s (compute-bound), GB/s (memory-bound: bytes read + written once), or µs. */
interface OpSpec {
  name: string;
  shape: string;
  unit: 'GFLOP/s' | 'GB/s' | 'µs';
  /** FLOPs (GFLOP/s) or bytes (GB/s) of one op */
  work: number;
  /** native graph: input [b, c, h, w] and a builder that adds the op's params once and returns "add one op node" */
  input: [number, number, number, number];
  build: (g: GraphBuilder) => OpBuilder;
  reps: number;
  /** the same op on the JS kernels */
  js: () => () => unknown;
  native: { full: Runs; quick: Runs };
  jsRuns: { full: Runs; quick: Runs };
}

/** `first`: the value the first copy reads; `add(x)` appends one copy reading x; `chain`: the next copy reads its output */
interface OpBuilder {
  first: string;
  add: (x: string) => string;
  chain: boolean;
}

const w02 = { kind: 'normal', std: 0.02 } as const;
const t = (shape: number[], seed: number, std = 1): Tensor => ({ shape, data: randomNormal(numel(shape), seed, std) });

const OPS: OpSpec[] = [
  {
    name: 'patch-embed conv', shape: '[8,3,224,224]*[768,3,32,32] s32', unit: 'GFLOP/s',
    work: 2 * 8 * 768 * 7 * 7 * (3 * 32 * 32), input: [8, 3, 224, 224], reps: 8,
    build: (g) => {
      const w = g.param('w', [768, 3, 32, 32], w02, true);
      return { first: g.input, chain: false, add: (x) => g.op('conv2d', [x, w, ''], { stride: 32, padding: 0 }) };
    },
    js: () => {
      const x = t([8, 3, 224, 224], 1), w = t([768, 3, 32, 32], 2, 0.02);
      return () => KERNELS.conv2d.forward([x, w, null], { stride: 32, padding: 0 }, INFERENCE);
    },
    native: { full: { warmup: 3, runs: 15 }, quick: { warmup: 1, runs: 5 } },
    jsRuns: { full: { warmup: 1, runs: 5 }, quick: { warmup: 1, runs: 3 } },
  },
  matmulSpec('matmul', 512, 512, 512, 32),
  matmulSpec('matmul (MLP fc1)', 400, 768, 3072, 8),
  {
    name: 'layer_norm', shape: '[8,50,768]', unit: 'GB/s', work: 2 * 4 * 8 * 50 * 768, input: [8, 50, 768, 1], reps: 64,
    build: (g) => {
      const x = g.op('reshape', [g.input], { shape: [8, 50, 768] });
      const w = g.param('w', [768], { kind: 'ones' }, false), b = g.param('b', [768], { kind: 'zeros' }, false);
      return { first: x, chain: true, add: (v) => g.op('layer_norm', [v, w, b], { eps: 1e-5 }) };
    },
    js: () => {
      const x = t([8, 50, 768], 1), w = { shape: [768], data: new Float32Array(768).fill(1) }, b = t([768], 2, 0.1);
      return () => KERNELS.layer_norm.forward([x, w, b], { eps: 1e-5 }, INFERENCE);
    },
    native: { full: { warmup: 3, runs: 20 }, quick: { warmup: 2, runs: 7 } },
    jsRuns: { full: { warmup: 5, runs: 50 }, quick: { warmup: 3, runs: 15 } },
  },
  {
    // attention FLOPs: q k^T and p v, 2 * B*h*T*T*d each (softmax not counted)
    name: 'attention', shape: '[8,12,50,64]', unit: 'GFLOP/s', work: 2 * 2 * 8 * 12 * 50 * 50 * 64, input: [8, 50, 768, 1], reps: 32,
    build: (g) => {
      const x = g.op('reshape', [g.input], { shape: [8, 50, 768] });
      return { first: x, chain: true, add: (v) => g.op('attention', [v, v, v], { heads: 12 }) };
    },
    js: () => {
      const x = t([8, 50, 768], 1);
      return () => KERNELS.attention.forward([x, x, x], { heads: 12 }, INFERENCE);
    },
    native: { full: { warmup: 3, runs: 20 }, quick: { warmup: 2, runs: 7 } },
    jsRuns: { full: { warmup: 3, runs: 30 }, quick: { warmup: 2, runs: 10 } },
  },
  {
    name: 'quick_gelu', shape: '[8,50,3072]', unit: 'GB/s', work: 2 * 4 * 8 * 50 * 3072, input: [8, 50, 3072, 1], reps: 16,
    build: (g) => {
      const x = g.op('reshape', [g.input], { shape: [8, 50, 3072] });
      return { first: x, chain: true, add: (v) => g.op('quick_gelu', [v], {}) };
    },
    js: () => {
      const x = t([8, 50, 3072], 1);
      return () => KERNELS.quick_gelu.forward([x], {}, INFERENCE);
    },
    native: { full: { warmup: 3, runs: 20 }, quick: { warmup: 2, runs: 7 } },
    jsRuns: { full: { warmup: 3, runs: 30 }, quick: { warmup: 2, runs: 10 } },
  },
];

function matmulSpec(name: string, M: number, K: number, N: number, reps: number): OpSpec {
  return {
    name, shape: M === K && K === N ? `${M}x${K}x${N}` : `[${M},${K}]x[${K},${N}]`, unit: 'GFLOP/s', work: 2 * M * K * N,
    input: [1, 1, M, K], reps,
    build: (g) => {
      const x = g.op('reshape', [g.input], { shape: [M, K] });
      // std 1/sqrt(K): a chain of square matmuls keeps its scale (no denormals)
      const w = g.param('w', [N, K], { kind: 'normal', std: K ** -0.5 }, true);
      return { first: x, chain: N === K, add: (v) => g.op('linear', [v, w, ''], {}) };
    },
    js: () => {
      const x = t([M, K], 1), w = t([N, K], 2, 0.02);
      return () => KERNELS.linear.forward([x, w, null], {}, INFERENCE);
    },
    native: { full: { warmup: 3, runs: 15 }, quick: { warmup: 2, runs: 5 } },
    jsRuns: M * K * N > 1e8 ? { full: { warmup: 1, runs: 5 }, quick: { warmup: 1, runs: 3 } } : { full: { warmup: 3, runs: 20 }, quick: { warmup: 2, runs: 7 } },
  };
}

/** A graph of `reps` copies of one op; its output (the last copy) is both `embeds` and `logits`. */
function repGraph(input: [number, number, number, number], build: (g: GraphBuilder) => OpBuilder, reps: number): Graph {
  const g = new GraphBuilder('x');
  const { first, add, chain } = build(g);
  let out = '';
  for (let r = 0; r < reps; r++) out = add(chain && out ? out : first);
  const [, c, h, w] = input;
  return g.build([c, h, w], { embeds: out, logits: out });
}

/** Speed from a time per op (ms) in the op's unit; for µs, the time itself. */
function rate(op: { unit: OpSpec['unit']; work: number }, msPerOp: number): number {
  return op.unit === 'µs' ? msPerOp * 1000 : op.work / (msPerOp * 1e-3) / 1e9;
}

interface Row {
  name: string;
  shape: string;
  unit: string;
  native: { stats: Stats; perOpMs: number; value: number; reps: number } | null;
  js: { stats: Stats; perOpMs: number; value: number } | null;
  /** native speed / JS speed */
  ratio: number | null;
  target: string;
}

/** ms per op of a measured call over `reps` ops (the Stats stay per call) */
const perOp = (s: Stats, reps: number) => s.median / reps;

export async function runOps(ctx: BenchContext): Promise<PartResult> {
  setNumThreads(ctx.threads);
  const q = ctx.quick;
  const rows: Row[] = [];
  const notes: string[] = [];

  // Fixed cost of one native call: forward of a graph with one reshape on a 1-element input.
  {
    const g = new GraphBuilder('x');
    const out = g.op('reshape', [g.input], { shape: [1, 1] });
    const m = await createModelFromGraph(g.build([1, 1, 1], { embeds: out, logits: out }), 2, { threads: ctx.threads });
    const px = new Float32Array(1);
    const s = await measure(() => m.forward(px, [1, 1, 1, 1], 'logits'), { warmup: 20, runs: q ? 100 : 500 });
    m.dispose();
    notes.push(`native call overhead (forward of a 1-element reshape graph): ${fmt(s.median * 1000)} µs median; each native op ` +
      'figure includes 1/R of it and of copying the output back (R copies of the op per call: ' +
      OPS.map((o) => `${o.name} ${o.reps}`).join(', ') + '; chained, except conv and MLP fc1, which read the same input R times)');
  }

  for (const op of OPS) {
    const nr = q ? op.native.quick : op.native.full;
    const jr = q ? op.jsRuns.quick : op.jsRuns.full;
    ctx.log(`${op.name}: native x${op.reps} per call, ${nr.warmup} + ${nr.runs} runs`);
    const m = await createModelFromGraph(repGraph(op.input, op.build, op.reps), 2, { seed: 0, threads: ctx.threads });
    const x = randomNormal(numel(op.input), 1);
    let ns: Stats;
    try {
      ns = await measure(() => m.forward(x, op.input, 'logits'), nr);
    } finally {
      m.dispose();
    }
    ctx.log(`${op.name}: JS, ${jr.warmup} + ${jr.runs} runs`);
    const js = await measure(op.js(), jr);
    const nOp = perOp(ns, op.reps), jOp = perOp(js, 1);
    const isJsMatmul = op.name === 'matmul';
    const jsValue = rate(op, jOp);
    rows.push({
      name: op.name, shape: op.shape, unit: op.unit,
      native: { stats: ns, perOpMs: nOp, value: rate(op, nOp), reps: op.reps },
      js: { stats: js, perOpMs: jOp, value: jsValue },
      ratio: jOp / nOp,
      target: isJsMatmul ? `JS >= ${JS_MATMUL_TARGET} GFLOP/s ${verdict(jsValue >= JS_MATMUL_TARGET)}` : '',
    });
  }

  const memBound = rows.filter((r) => r.unit === 'GB/s');
  notes.push('GB/s rows (memory-bound) count the input read once and the output written once, float32; per op: ' +
    memBound.map((r) => `${r.name} native ${fmt(r.native!.perOpMs * 1000)} µs, JS ${fmt(r.js!.perOpMs * 1000)} µs`).join('; '));

  // Cross-entropy [32, 116] forward + backward: the same graph (logits = input + bias) through lossAndGrads() on
  // both backends, one call per loss, as a train step uses it.
  {
    const g = new GraphBuilder('x');
    const b = g.param('b', [116], { kind: 'zeros' }, false);
    const out = g.op('add', [g.op('reshape', [g.input], { shape: [32, 116] }), b], {});
    const graph = g.build([1, 1, 116], { embeds: out, logits: out });
    const x = randomNormal(32 * 116, 1, 3);
    const shape = [32, 1, 1, 116];
    const labels = Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 116);
    ctx.log('cross-entropy: native and JS lossAndGrads');
    const nm = await createModelFromGraph(graph, 116, { threads: ctx.threads });
    const jm = await createModelFromGraph(graph, 116, { backend: 'js' });
    try {
      const ns = await measure(() => nm.lossAndGrads(x, shape, labels), { warmup: 20, runs: q ? 100 : 500 });
      const js = await measure(() => jm.lossAndGrads(x, shape, labels), { warmup: 20, runs: q ? 100 : 500 });
      // sanity: the JS kernel alone, for the notes
      const kernel = await measure(() => lossAndGrad(x, 32, labels, 'cross_entropy'), { warmup: 20, runs: q ? 100 : 500 });
      rows.push({
        name: 'cross-entropy fwd+bwd', shape: '[32,116]', unit: 'µs/call',
        native: { stats: ns, perOpMs: ns.median, value: ns.median * 1000, reps: 1 },
        js: { stats: js, perOpMs: js.median, value: js.median * 1000 },
        ratio: js.median / ns.median, target: '',
      });
      notes.push(`cross-entropy: one lossAndGrads() call per figure on both backends (graph: input + bias -> CE), so native ` +
        `carries its N-API and compute-thread hand-off cost; the JS CE kernel alone: ${fmt(kernel.median * 1000)} µs`);
    } finally {
      nm.dispose();
      jm.dispose();
    }
  }

  // clip_vit_tiny train step at 64 px: at batch 32, the configs' batch_size, against the target; at batch 8 for the
  // per-step fixed cost (op dispatch, autograd, AdamW), which weighs most there: no target, since LibTorch's few
  // microseconds per op (~160 ops a step) are a floor that the JS kernels' compute does not have.
  {
    const native = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, seed: 0, threads: ctx.threads });
    const js = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, seed: 0, backend: 'js' });
    try {
      for (const b of [8, 32]) {
        const shape = [b, ...native.inputShape];
        const x = randomNormal(numel(shape), 3);
        const y = Int32Array.from({ length: b }, (_, i) => i % 5);
        ctx.log(`clip_vit_tiny train step b${b}: native`);
        const ns = await measure(() => native.trainStep(x, shape, y, { lr: 1e-4 }), q ? { warmup: 5, runs: 30 } : { warmup: 20, runs: 200 });
        ctx.log(`clip_vit_tiny train step b${b}: JS`);
        const jst = await measure(() => js.trainStep(x, shape, y, { lr: 1e-4 }), q ? { warmup: 2, runs: 10 } : { warmup: 3, runs: 30 });
        const ratio = jst.median / ns.median;
        rows.push({
          name: 'clip_vit_tiny train step', shape: `b${b} ${shape[2]}px`, unit: 'ms/step',
          native: { stats: ns, perOpMs: ns.median, value: ns.median, reps: 1 },
          js: { stats: jst, perOpMs: jst.median, value: jst.median },
          ratio, target: b === 32 ? `>= ${SPEEDUP_TARGET}x ${verdict(ratio >= SPEEDUP_TARGET)}` : 'fixed cost, no target',
        });
      }
    } finally {
      native.dispose();
      js.dispose();
    }
  }

  // ViT-B/32: eval at batch 1 native vs JS, then the train step's FLOP rate against the GEMM ceiling.
  ctx.log('creating coin_clip_vit_b32 native (random init, seed 0)');
  const b32 = await createModel({ backbone: 'coin_clip_vit_b32', numClasses: 5, seed: 0, threads: ctx.threads });
  let ceilingRow!: Row, stepRow!: Row, stepGflop = 0, ceilingGflops = 0;
  try {
    const evalShape = [1, ...b32.inputShape];
    const xe = randomNormal(numel(evalShape), 4);
    ctx.log('ViT-B/32 eval b1: native');
    const ne = await measure(() => b32.predict(xe, evalShape), q ? { warmup: 2, runs: 5 } : { warmup: 3, runs: 15 });
    {
      ctx.log('creating coin_clip_vit_b32 JS (random init, seed 0)');
      const jsModel = await createModel({ backbone: 'coin_clip_vit_b32', numClasses: 5, seed: 0, backend: 'js' });
      try {
        ctx.log('ViT-B/32 eval b1: JS (slow)');
        const je = await measure(() => jsModel.predict(xe, evalShape), q ? { warmup: 1, runs: 2 } : { warmup: 1, runs: 3 });
        const ratio = je.median / ne.median;
        rows.push({
          name: 'ViT-B/32 eval', shape: 'b1 224px', unit: 'img/s',
          native: { stats: ne, perOpMs: ne.median, value: 1000 / ne.median, reps: 1 },
          js: { stats: je, perOpMs: je.median, value: 1000 / je.median },
          ratio, target: `>= ${SPEEDUP_TARGET}x ${verdict(ratio >= SPEEDUP_TARGET)}`,
        });
      } finally {
        jsModel.dispose();
      }
    }

    // GEMM ceiling: native float32 2048^3 through a linear-only graph, half its runs before the train step and half
    // after, so that the machine's drift hits both.
    const G = 2048, gemmReps = 4;
    const gm = await createModelFromGraph(repGraph([1, 1, G, G], (g) => {
      const x = g.op('reshape', [g.input], { shape: [G, G] });
      const w = g.param('w', [G, G], { kind: 'normal', std: G ** -0.5 }, true);
      return { first: x, chain: true, add: (v) => g.op('linear', [v, w, ''], {}) };
    }, gemmReps), 2, { threads: ctx.threads });
    const gx = randomNormal(G * G, 5);
    const gemmHalf = q ? { warmup: 1, runs: 3 } : { warmup: 2, runs: 5 };
    try {
      ctx.log(`GEMM ceiling ${G}^3 (first half)`);
      const g1 = await measure(() => gm.forward(gx, [1, 1, G, G], 'logits'), gemmHalf);

      const B = 32;
      const stepShape = [B, ...b32.inputShape];
      const xs = randomNormal(numel(stepShape), 6);
      const ys = Int32Array.from({ length: B }, (_, i) => i % 5);
      ctx.log(`ViT-B/32 train step b${B}`);
      const st = await measure(() => b32.trainStep(xs, stepShape, ys, { lr: 1e-4 }), q ? { warmup: 1, runs: 3 } : { warmup: 2, runs: 10 });

      ctx.log(`GEMM ceiling ${G}^3 (second half)`);
      const g2 = await measure(() => gm.forward(gx, [1, 1, G, G], 'logits'), { ...gemmHalf, warmup: 1 });
      const gemm = summarize([...g1.samples, ...g2.samples], g1.warmup + g2.warmup);
      ceilingGflops = (2 * G ** 3 * gemmReps) / (gemm.median * 1e-3) / 1e9;
      ceilingRow = {
        name: 'GEMM ceiling (native)', shape: `${G}^3 f32 linear`, unit: 'GFLOP/s',
        native: { stats: gemm, perOpMs: gemm.median / gemmReps, value: ceilingGflops, reps: gemmReps }, js: null, ratio: null, target: '',
      };
      const fwd = forwardFlops(b32.graph, B);
      stepGflop = (3 * fwd) / 1e9;
      const achieved = stepGflop / (st.median * 1e-3);
      const frac = achieved / ceilingGflops;
      stepRow = {
        name: 'ViT-B/32 train step (native)', shape: `b${B}, ${fmt(stepGflop)} GFLOP`, unit: 'GFLOP/s',
        native: { stats: st, perOpMs: st.median, value: achieved, reps: 1 }, js: null, ratio: null,
        target: `${(Math.floor(frac * 1000) / 10).toFixed(1)}% of ceiling (>= ${CEILING_TARGET * 100}%) ${verdict(frac >= CEILING_TARGET)}`,
      };
    } finally {
      gm.dispose();
    }
  } finally {
    b32.dispose();
  }
  rows.push(ceilingRow, stepRow);
  notes.push('attention GFLOP/s counts q k^T and p v only (softmax not counted); the op is the graph\'s attention node: ' +
    'head split, softmax(q k^T / sqrt(d)) v (native: two batched GEMMs up to 128 tokens, flash attention beyond), head merge');
  notes.push(`train step FLOPs = 3 x forward, forward counted from the graph's shapes: conv + linear (2 x MACs) + attention ` +
    `(q k^T and p v); elementwise, norms, softmax and AdamW not counted (${fmt(stepGflop)} GFLOP per b32 step)`);
  notes.push(`threads: native ${ctx.threads}, JS 1 (the JS kernels are single-threaded); medians of several runs, ` +
    'spread = (max-min)/median; native/JS is a speed ratio (>1: native faster), also for ms and µs rows; random init everywhere');

  const head = ['op', 'shape', 'unit', 'native', 'spread', 'JS', 'spread', 'native/JS', 'target'];
  const table = rows.map((r) => [
    r.name, r.shape, r.unit,
    r.native ? fmt(r.native.value) : '', r.native ? pct(r.native.stats) : '',
    r.js ? fmt(r.js.value) : '', r.js ? pct(r.js.stats) : '',
    r.ratio !== null ? ratioStr(r.ratio) : '', r.target,
  ]);
  return {
    head, rows: table, notes,
    data: {
      threads: ctx.threads, quick: q, rows,
      ceilingGflops, stepGflop,
      targets: { speedup: SPEEDUP_TARGET, jsMatmulGflops: JS_MATMUL_TARGET, ceilingFraction: CEILING_TARGET },
    },
  };
}

/** Matmul-class FLOPs of one forward pass at `batch`: conv2d, linear, attention. */
export function forwardFlops(graph: Graph, batch: number): number {
  const shapes = inferShapes(graph, batch);
  const dims = (name: string) => shapes.get(name)!.map((d) => d as number);
  let flops = 0;
  for (const n of graph.nodes) {
    if (n.op === 'conv2d') {
      const w = dims(n.inputs[1]);
      flops += 2 * numel(dims(n.output)) * w[1] * w[2] * w[3];
    } else if (n.op === 'linear') {
      const w = dims(n.inputs[1]);
      flops += 2 * numel(dims(n.output)) * w[1];
    } else if (n.op === 'attention') {
      const [B, T, C] = dims(n.inputs[0]);
      flops += 2 * 2 * B * T * T * C;
    }
  }
  return flops;
}
