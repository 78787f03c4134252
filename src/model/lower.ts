// Lowers a Graph to the indexed form the native interpreter reads (native/graph.h): slots instead of names,
// attributes packed into ints/floats as the op table says, and for each node the slots it is the last reader of.
import type { Graph, GraphNode } from './graph.js';
import { OPS, type OpName } from './ops.js';

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

/**
 * Checks a node's input count and attributes against the op table, and packs its attributes into the slots
 * native/ops.generated.h reads them from: in table order, each `int` to `ints` and each `float` to `floats`, then the
 * op's one `ints` list (scripts/gen-native-ops.ts allows no second) to the end of `ints`.
 */
function checkAndPack(n: GraphNode): { ints: number[]; floats: number[] } {
  const spec = OPS[n.op];
  (spec as { check?: (a: unknown) => void }).check?.(n.attrs);
  const names = spec.inputs;
  const required = names.filter((s) => !s.endsWith('?')).length;
  if (n.inputs.length < required || (names[0] !== '...' && n.inputs.length > names.length)) {
    throw new Error(`graph: node '${n.output}' (${n.op}) takes inputs (${names.join(', ')}), got ${n.inputs.length}`);
  }
  const attrs = n.attrs as Record<string, number | number[]>;
  const ints: number[] = [], floats: number[] = [];
  let list: number[] = [];
  for (const [name, type] of Object.entries(spec.attrs)) {
    const v = attrs[name];
    if (type === 'ints') list = v as number[];
    else (type === 'int' ? ints : floats).push(v as number);
  }
  return { ints: [...ints, ...list], floats };
}

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
    return { op: n.op, inputs: n.inputs.map((name) => slotOf(name, n)), output: slot.get(n.output)!, ...checkAndPack(n), release: release[i] };
  });
  const outputs: Record<string, number> = {};
  for (const [k, name] of Object.entries(g.outputs)) {
    const s = slot.get(name);
    if (s === undefined) throw new Error(`graph: output '${k}' names undefined value '${name}'`);
    outputs[k] = s;
  }
  return { numParams: g.params.length, inputSlot, numSlots: inputSlot + 1 + g.nodes.length, nodes, outputs, loss: g.loss };
}
