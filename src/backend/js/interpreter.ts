// Runs a graph on JS kernels: a forward over the node list (values released after their last reader, as the native
// interpreter does) that optionally records a tape, and a reverse sweep over the tape that accumulates gradients.
import type { Graph, GraphNode } from '../../model/graph.js';
import { lowerGraph, type LoweredGraph, type LoweredNode } from '../../model/lower.js';
import type { Floats } from '../types.js';
import { KERNELS, type Kernel } from './ops/index.js';
import { addInto, type Tensor } from './tensor.js';

interface TapeEntry {
  node: LoweredNode;
  kernel: Kernel<never, unknown>;
  saved: unknown;
  /** which inputs want a gradient */
  needs: boolean[];
}

export type Tape = TapeEntry[];

export class Interpreter {
  readonly lowered: LoweredGraph;
  private readonly nodes: GraphNode[];
  /** per slot: depends on a parameter */
  private readonly requiresGrad: boolean[];

  constructor(graph: Graph) {
    this.lowered = lowerGraph(graph);
    this.nodes = graph.nodes;
    const g = this.lowered;
    this.requiresGrad = new Array<boolean>(g.numSlots).fill(false);
    for (let i = 0; i < g.numParams; i++) this.requiresGrad[i] = !graph.params[i].buffer;
    for (const n of g.nodes) this.requiresGrad[n.output] = n.inputs.some((s) => s >= 0 && this.requiresGrad[s]);
  }

  outputSlot(name: string): number {
    const s = this.lowered.outputs[name];
    if (s === undefined) throw new Error(`the graph has no output named '${name}'`);
    return s;
  }

  /** The value of `outputSlot`; with `record` (a training forward), also the tape that backward() reads. */
  run(params: readonly Tensor[], input: Tensor, outputSlot: number, record: boolean): { out: Tensor; tape: Tape } {
    const g = this.lowered;
    const slots: (Tensor | null)[] = new Array<Tensor | null>(g.numSlots).fill(null);
    for (let i = 0; i < g.numParams; i++) slots[i] = params[i];
    slots[g.inputSlot] = input;
    const tape: Tape = [];
    if (outputSlot <= g.inputSlot) return { out: slots[outputSlot]!, tape };
    for (let i = 0; i < g.nodes.length; i++) {
      const node = g.nodes[i];
      const kernel = KERNELS[node.op] as Kernel<never, unknown>;
      const inputs = node.inputs.map((s) => (s < 0 ? null : slots[s]));
      let result: { out: Tensor; saved: unknown };
      try {
        result = kernel.forward(inputs, this.nodes[i].attrs as never, { training: record });
      } catch (e) {
        if (e instanceof Error) e.message = `graph node '${this.nodes[i].output}' (${node.op}): ${e.message}`;
        throw e;
      }
      slots[node.output] = result.out;
      if (record && this.requiresGrad[node.output]) {
        tape.push({ node, kernel, saved: result.saved, needs: node.inputs.map((s) => s >= 0 && this.requiresGrad[s]) });
      }
      if (node.output === outputSlot) return { out: result.out, tape };
      for (const r of node.release) slots[r] = null;
    }
    throw new Error(`graph output slot ${outputSlot} is never produced`);
  }

  /** The gradient of every parameter (null where the output does not depend on it, and for buffers) given `dOut`. */
  backward(tape: Tape, outputSlot: number, dOut: Floats): (Floats | null)[] {
    const grads: (Floats | null)[] = new Array<Floats | null>(this.lowered.numSlots).fill(null);
    grads[outputSlot] = dOut;
    for (let t = tape.length - 1; t >= 0; t--) {
      const { node, kernel, saved, needs } = tape[t];
      const dy = grads[node.output];
      tape[t] = undefined as unknown as TapeEntry;   // let its saved tensors go
      if (!dy) continue;
      grads[node.output] = null;
      const gi = kernel.backward(saved, dy, needs);
      for (let i = 0; i < node.inputs.length; i++) {
        const slot = node.inputs[i], g = gi[i];
        if (!needs[i] || !g) continue;
        const have = grads[slot];
        if (have) addInto(have, g);
        else grads[slot] = g;
      }
    }
    return grads.slice(0, this.lowered.numParams);
  }
}
