// Inference-time folding of batch norm into the convolution before it: W' = W * g / sqrt(var + eps) per output
// channel, b' = (b - mean) * g / sqrt(var + eps) + beta. The exported Conv then carries the whole stage, so int8
// quantizes one integer Conv instead of a Conv and a float BatchNormalization. A batch_norm that does not read a
// conv2d's sole output stays, and is exported as BatchNormalization.
import type { Graph, GraphNode } from '../model/graph.js';
import type { OpAttrs } from '../model/ops.js';
import type { Floats } from '../backend/types.js';

export function foldBatchNorms(graph: Graph, params: Record<string, Floats>): { graph: Graph; params: Record<string, Floats> } {
  const readers = new Map<string, number>();
  for (const n of graph.nodes) for (const x of n.inputs) readers.set(x, (readers.get(x) ?? 0) + 1);
  for (const o of Object.values(graph.outputs)) readers.set(o, (readers.get(o) ?? 0) + 1);
  const producer = new Map(graph.nodes.map((n) => [n.output, n]));
  const values: Record<string, Floats> = { ...params };
  const dropped = new Set<string>();
  const replaced = new Map<GraphNode, GraphNode>();   // conv -> conv with the folded weights, writing bn's output
  const removed = new Set<GraphNode>();               // the folded batch_norm nodes

  for (const bn of graph.nodes) {
    if (bn.op !== 'batch_norm') continue;
    const conv = producer.get(bn.inputs[0]);
    if (!conv || conv.op !== 'conv2d' || readers.get(conv.output) !== 1) continue;
    const [, gName, betaName, meanName, varName] = bn.inputs;
    const [, wName, convBias] = conv.inputs;
    const { eps } = bn.attrs as OpAttrs['batch_norm'];
    const w = values[wName], g = values[gName], beta = values[betaName], mean = values[meanName], variance = values[varName];
    const C = g.length, per = w.length / C;
    const wf = new Float32Array(w.length), bf = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      const k = g[c] / Math.sqrt(variance[c] + eps);
      for (let j = 0; j < per; j++) wf[c * per + j] = w[c * per + j] * k;
      bf[c] = ((convBias ? values[convBias][c] : 0) - mean[c]) * k + beta[c];
    }
    // the folded bias takes the conv's bias name, or batch norm's when the conv has none
    const biasName = convBias || betaName;
    values[wName] = wf;
    values[biasName] = bf;
    for (const name of [gName, betaName, meanName, varName]) if (name !== biasName) dropped.add(name);
    replaced.set(conv, { ...conv, inputs: [conv.inputs[0], wName, biasName], output: bn.output });
    removed.add(bn);
  }
  if (!removed.size) return { graph, params };
  const nodes = graph.nodes.filter((n) => !removed.has(n)).map((n) => replaced.get(n) ?? n);
  for (const name of dropped) delete values[name];
  return { graph: { ...graph, params: graph.params.filter((p) => !dropped.has(p.name)), nodes }, params: values };
}
