// The contract of one op of the graph IR on the JS backend: a forward that also returns what its backward needs,
// and a backward that maps the output's gradient to each input's (null where not needed).
import type { OpAttrs, OpName } from '../../../model/ops.js';
import type { Floats } from '../../types.js';
import type { Tensor } from '../tensor.js';

/** How a forward runs: training (a step, with a tape) or inference. Batch norm is the op that differs. */
export interface RunMode {
  training: boolean;
}

export interface Kernel<K extends OpName, Saved = unknown> {
  /** inputs[i] is null for an absent optional input (a bias) */
  forward(inputs: (Tensor | null)[], attrs: OpAttrs[K], mode: RunMode): { out: Tensor; saved: Saved };
  /**
   * The gradient of each input given `dy`, the output's. Only inputs with needs[i] must get one. The arrays returned
   * become the caller's: each must be distinct from the others (dy itself may be handed on, once).
   */
  backward(saved: Saved, dy: Floats, needs: readonly boolean[]): (Floats | null)[];
}

export function required(t: Tensor | null, op: string, what: string): Tensor {
  if (!t) throw new TypeError(`${op}: missing input '${what}'`);
  return t;
}
