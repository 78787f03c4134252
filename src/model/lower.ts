// Lowers a Graph to the indexed form the native interpreter reads (native/graph.h): slots instead of names,
// attributes packed into ints/floats in a fixed order, and for each node the slots it is the last reader of.
import type { Graph, GraphNode, OpAttrs, OpName } from './graph.js';

export interface LoweredNode {
  op: OpName;
  inputs: number[];
  output: number;
  ints: number[];
  floats: number[];
  release: number[];
}

export interface LoweredGraph {
  numParams: number;
  inputSlot: number;
  numSlots: number;
  nodes: LoweredNode[];
  outputs: Record<string, number>;
  loss: Graph['loss'];
}

type Packer<K extends OpName> = (a: OpAttrs[K]) => { ints?: number[]; floats?: number[] };
const PACK: { [K in OpName]?: Packer<K> } = {
  conv2d: (a) => ({ ints: [a.stride, a.padding] }),
  layer_norm: (a) => ({ floats: [a.eps] }),
  batch_norm: (a) => ({ floats: [a.eps, a.momentum] }),
  softmax: (a) => ({ ints: [a.axis] }),
  log_softmax: (a) => ({ ints: [a.axis] }),
  attention: (a) => ({ ints: [a.heads] }),
  reshape: (a) => ({ ints: a.shape }),
  transpose: (a) => ({ ints: a.perm }),
  concat: (a) => ({ ints: [a.axis] }),
  slice: (a) => ({ ints: [a.axis, a.start, a.end] }),
  mean: (a) => {
    if (!a.axes.length || a.axes.some((d, i) => i > 0 && d !== a.axes[i - 1] + 1)) throw new Error(`graph: mean axes ${JSON.stringify(a.axes)} must be a contiguous ascending run`);
    return { ints: a.axes };
  },
};

export function lowerGraph(g: Graph): LoweredGraph {
  const slot = new Map<string, number>();
  g.params.forEach((p, i) => slot.set(p.name, i));
  const inputSlot = g.params.length;
  slot.set(g.input, inputSlot);
  g.nodes.forEach((n, i) => {
    if (slot.has(n.output)) throw new Error(`graph: value '${n.output}' is defined twice`);
    slot.set(n.output, inputSlot + 1 + i);
  });
  const slotOf = (name: string, node: GraphNode) => {
    if (name === '') return -1;
    const s = slot.get(name);
    if (s === undefined) throw new Error(`graph: node '${node.output}' (${node.op}) reads undefined value '${name}'`);
    return s;
  };
  const lastReader = new Map<number, number>();
  g.nodes.forEach((n, i) => n.inputs.forEach((name) => {
    const s = slotOf(name, n);
    if (s > g.params.length - 1) lastReader.set(s, i);   // parameters are never released
  }));
  const release: number[][] = g.nodes.map(() => []);
  for (const [s, i] of lastReader) release[i].push(s);
  const nodes = g.nodes.map((n, i) => {
    const packed = (PACK[n.op] as Packer<OpName> | undefined)?.(n.attrs) ?? {};
    return {
      op: n.op,
      inputs: n.inputs.map((name) => slotOf(name, n)),
      output: slot.get(n.output)!,
      ints: packed.ints ?? [],
      floats: packed.floats ?? [],
      release: release[i],
    };
  });
  const outputs: Record<string, number> = {};
  for (const [k, name] of Object.entries(g.outputs)) {
    const s = slot.get(name);
    if (s === undefined) throw new Error(`graph: output '${k}' names undefined value '${name}'`);
    outputs[k] = s;
  }
  return { numParams: g.params.length, inputSlot, numSlots: inputSlot + 1 + g.nodes.length, nodes, outputs, loss: g.loss };
}
