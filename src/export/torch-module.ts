// The graph IR's fourth consumer: the model as a PyTorch module, Python source, for the toolchains that take only
// PyTorch (Sony's model-compression-toolkit and imx500-converter). The layers with weights are torch.nn modules
// (Conv2d, Linear, BatchNorm, LayerNorm), as quantizers look for them; the rest is torch calls in forward().
// load_penny_state() takes a penny-train checkpoint's model_state (torch.load reads it) by the graph's own parameter
// names, so the same weights and the same graph are what gets quantized.
import type { Graph, GraphNode } from '../model/graph.js';
import type { OpName, Shape } from '../model/ops.js';
import { inferShapes } from './onnx.js';

/** What one op is in Python: the module it owns (if any) and the expression of its output. */
interface Emitted {
  /** `nn.Conv2d(...)`: held as self.<layer>, its weights from the node's parameter inputs */
  module?: { ctor: string; params: Record<string, string> };
  /** the output expression; `m` is the module's attribute, `i[k]` the k-th input's variable */
  expr: (m: string, i: string[]) => string;
}

type Emit<K extends OpName> = (n: GraphNode<K>, shape: (v: string) => Shape, param: (v: string) => number[] | undefined) => Emitted;

const py = (v: number[]) => `(${v.join(', ')}${v.length === 1 ? ',' : ''})`;
const float = (v: number) => (Number.isInteger(v) ? `${v}.0` : String(v));

const EMITTERS: { [K in OpName]: Emit<K> } = {
  conv2d: (n, _, param) => {
    const [out, cin, kh, kw] = param(n.inputs[1])!;
    return {
      module: {
        ctor: `nn.Conv2d(${cin}, ${out}, (${kh}, ${kw}), stride=${n.attrs.stride}, padding=${n.attrs.padding}, bias=${n.inputs[2] ? 'True' : 'False'})`,
        params: { weight: n.inputs[1], ...(n.inputs[2] && { bias: n.inputs[2] }) },
      },
      expr: (m, [x]) => `self.${m}(${x})`,
    };
  },
  linear: (n, _, param) => {
    const [out, cin] = param(n.inputs[1])!;
    return {
      module: { ctor: `nn.Linear(${cin}, ${out}, bias=${n.inputs[2] ? 'True' : 'False'})`, params: { weight: n.inputs[1], ...(n.inputs[2] && { bias: n.inputs[2] }) } },
      expr: (m, [x]) => `self.${m}(${x})`,
    };
  },
  layer_norm: (n, _, param) => ({
    module: { ctor: `nn.LayerNorm(${param(n.inputs[1])![0]}, eps=${float(n.attrs.eps)})`, params: { weight: n.inputs[1], bias: n.inputs[2] } },
    expr: (m, [x]) => `self.${m}(${x})`,
  }),
  batch_norm: (n, shape, param) => {
    const rank = shape(n.inputs[0]).length;
    if (rank !== 4 && rank !== 2) throw new Error(`batch_norm '${n.output}': PyTorch module for rank ${rank} input`);
    // the IR's momentum is PyTorch's (the weight of the new batch's statistics); eval mode reads the running ones
    return {
      module: {
        ctor: `nn.BatchNorm${rank === 4 ? '2' : '1'}d(${param(n.inputs[1])![0]}, eps=${float(n.attrs.eps)}, momentum=${float(n.attrs.momentum)})`,
        params: { weight: n.inputs[1], bias: n.inputs[2], running_mean: n.inputs[3], running_var: n.inputs[4] },
      },
      expr: (m, [x]) => `self.${m}(${x})`,
    };
  },
  add: () => ({ expr: (_, [a, b]) => `${a} + ${b}` }),
  mul: () => ({ expr: (_, [a, b]) => `${a} * ${b}` }),
  quick_gelu: () => ({ expr: (_, [x]) => `${x} * torch.sigmoid(1.702 * ${x})` }),
  gelu: () => ({ module: { ctor: 'nn.GELU()', params: {} }, expr: (m, [x]) => `self.${m}(${x})` }),
  relu: () => ({ module: { ctor: 'nn.ReLU()', params: {} }, expr: (m, [x]) => `self.${m}(${x})` }),
  relu6: () => ({ module: { ctor: 'nn.ReLU6()', params: {} }, expr: (m, [x]) => `self.${m}(${x})` }),
  softmax: (n) => ({ expr: (_, [x]) => `torch.softmax(${x}, dim=${n.attrs.axis})` }),
  log_softmax: (n) => ({ expr: (_, [x]) => `torch.log_softmax(${x}, dim=${n.attrs.axis})` }),
  attention: (n, shape) => ({ expr: (_, [q, k, v]) => `attention(${q}, ${k}, ${v}, ${n.attrs.heads}, ${shape(n.inputs[0]).at(-1)})` }),
  reshape: (n) => ({ expr: (_, [x]) => `reshape(${x}, ${py(n.attrs.shape)})` }),
  transpose: (n) => ({ expr: (_, [x]) => `${x}.permute${py(n.attrs.perm)}` }),
  concat: (n) => ({ expr: (_, xs) => `torch.cat([${xs.join(', ')}], dim=${n.attrs.axis})` }),
  // Python's slice clamps its bounds as the IR's does (ops.ts sliceBounds)
  slice: (n) => ({ expr: (_, [x]) => `${x}[${':, '.repeat(n.attrs.axis)}${n.attrs.start}:${n.attrs.end}]` }),
  expand_batch: (n, shape, param) => ({ expr: (_, [t, ref]) => `${t}.expand(${ref}.shape[0], ${(param(n.inputs[0]) ?? shape(n.inputs[0])).slice(1).join(', ')})` }),
  mean: (n) => ({ expr: (_, [x]) => `${x}.mean(dim=${py(n.attrs.axes)})` }),
};

const PRELUDE = `import torch
from torch import nn


def reshape(x, spec):
    """The IR's reshape: 0 copies the input's dim at that index, one -1 is inferred."""
    return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(spec)])


def attention(q, k, v, heads, c):
    """softmax(q k^T / sqrt(d)) v over heads, [B, T, C] in and out (C given: no unpacking of shapes, which torch.fx,
    and so MCT, cannot trace)."""
    split = lambda x: x.reshape(x.shape[0], -1, heads, c // heads).transpose(1, 2)
    p = torch.softmax(split(q) @ split(k).transpose(-2, -1) * (c // heads) ** -0.5, dim=-1)
    return (p @ split(v)).transpose(1, 2).reshape(q.shape[0], -1, c)
`;

/**
 * Python source of `class <className>(nn.Module)` computing the graph's logits from its normalised input [B, 3, H, W].
 * `PARAMS` maps each graph parameter name to its place in the module's state_dict.
 */
export function torchModuleSource(graph: Graph, options: { className?: string; imx500?: boolean } = {}): string {
  const className = options.className ?? 'PennyNet';
  const shapes = inferShapes(graph, 1);
  const paramShape = new Map(graph.params.map((p) => [p.name, p.shape]));
  const owner = new Map<string, string>();   // graph parameter -> its state_dict key
  const layers: string[] = [], body: string[] = [], loose: string[] = [];
  const names = new Map<string, string>([[graph.input, 'x']]);
  const nameOf = (v: string) => {
    if (names.has(v)) return names.get(v)!;
    if (!paramShape.has(v)) throw new Error(`torchModuleSource: value '${v}' is read before it is computed`);
    // a parameter no layer owns (a position embedding, a class token): a free nn.Parameter
    const attr = `p${loose.length}`;
    loose.push(`        self.${attr} = nn.Parameter(torch.zeros(${py(paramShape.get(v)!)}))`);
    owner.set(v, attr);
    names.set(v, `self.${attr}`);
    return `self.${attr}`;
  };
  for (const [k, n] of graph.nodes.entries()) {
    // imx500-converter takes no LogSoftmax (its [USOP] error). The factorised date head log-softmaxes its decade and
    // unit logits before summing them into year scores; without it each image's 116 scores move by one constant,
    // which leaves their softmax and argmax as they were.
    const e = options.imx500 && n.op === 'log_softmax' ? { expr: (_: string, [x]: string[]) => x }
      : (EMITTERS[n.op] as Emit<OpName>)(n, (v) => shapes.get(v)!, (v) => paramShape.get(v));
    const owned = new Set(Object.values(e.module?.params ?? {}));
    const m = `l${k}_${n.op}`;
    if (e.module) {
      layers.push(`        self.${m} = ${e.module.ctor}`);
      for (const [field, p] of Object.entries(e.module.params)) {
        if (owner.has(p)) throw new Error(`torchModuleSource: parameter '${p}' is used by two layers`);
        owner.set(p, `${m}.${field}`);
      }
    }
    const ins = n.inputs.filter((v, i) => v !== '' && !(owned.has(v) && i > 0)).map(nameOf);
    const out = `v${k}`;
    body.push(`        ${out} = ${e.expr(m, ins)}`);
    names.set(n.output, out);
  }
  const unused = graph.params.filter((p) => !owner.has(p.name)).map((p) => p.name);
  if (unused.length) throw new Error(`torchModuleSource: parameters no node reads: ${unused.join(', ')}`);
  const params = [...owner.entries()].map(([p, key]) => `    ${JSON.stringify(p)}: ${JSON.stringify(key)},`);
  return `${PRELUDE}

class ${className}(nn.Module):
    """Generated by penny-train from its graph IR: input [B, 3, ${graph.inputShape[1]}, ${graph.inputShape[2]}] normalised, output logits."""

    # graph parameter name -> state_dict key
    PARAMS = {
${params.join('\n')}
    }

    def __init__(self):
        super().__init__()
${[...layers, ...loose].join('\n')}

    def load_penny_state(self, state):
        """A penny-train checkpoint's model_state (graph parameter names) into this module."""
        own = self.state_dict()
        missing = [p for p in self.PARAMS if p not in state]
        if missing:
            raise KeyError(f"model_state lacks {missing[:5]}")
        for p, key in self.PARAMS.items():
            if tuple(state[p].shape) != tuple(own[key].shape):
                raise ValueError(f"{p}: shape {tuple(state[p].shape)}, the module's {key} is {tuple(own[key].shape)}")
            own[key].copy_(state[p])
        return self

    def forward(self, x):
${body.join('\n')}
        return ${names.get(graph.outputs.logits)}
`;
}
