// CLIP ViT vision tower + projection + classification head, as the graph IR; parameter names follow Hugging Face's
// CLIPVisionModelWithProjection so its checkpoints load by name. Init follows HF CLIPPreTrainedModel._init_weights;
// the head is a PyTorch-default nn.Linear (the original trainer replaced the head with one).
import { GraphBuilder, type Graph, type HeadSpec } from './graph.js';

export interface ClipVisionConfig {
  /** [height, width] */
  imageSize: [number, number];
  patchSize: number;
  width: number;
  layers: number;
  heads: number;
  mlp: number;
  projection: number;
  eps: number;
}

export function buildClipVit(cfg: ClipVisionConfig, numClasses: number, head?: HeadSpec): Graph {
  const { imageSize: [H, W], patchSize: P, width: C, layers: L, heads, mlp, projection, eps } = cfg;
  for (const side of new Set([H, W])) if (side % P !== 0) throw new RangeError(`image size ${side} is not a multiple of the patch size ${P}`);
  if (C % heads !== 0) throw new RangeError(`width ${C} is not divisible by ${heads} heads`);
  const tokens = (H / P) * (W / P) + 1;
  const std = 0.02;                                   // initializer_range
  const attnIn = C ** -0.5 * (2 * L) ** -0.5;
  const attnOut = C ** -0.5;
  const fcStd = (2 * C) ** -0.5;
  const normal = (s: number) => ({ kind: 'normal', std: s }) as const;

  const g = new GraphBuilder('pixels');
  const v = 'vision_model';
  // Embeddings: patches as a strided conv, class token in front, learned positions.
  const patchW = g.param(`${v}.embeddings.patch_embedding.weight`, [C, 3, P, P], normal(std), true);
  let x = g.op('conv2d', [g.input, patchW, ''], { stride: P, padding: 0 });
  x = g.op('reshape', [x], { shape: [0, C, -1] });
  x = g.op('transpose', [x], { perm: [0, 2, 1] });
  const cls = g.param(`${v}.embeddings.class_embedding`, [C], normal(C ** -0.5), false);
  const clsTok = g.op('expand_batch', [g.op('reshape', [cls], { shape: [1, 1, C] }), g.input], {});
  x = g.op('concat', [clsTok, x], { axis: 1 });
  x = g.op('add', [x, g.param(`${v}.embeddings.position_embedding.weight`, [tokens, C], normal(std), false)], {});
  x = g.layerNorm(x, `${v}.pre_layrnorm`, C, eps);   // sic: HF's name

  for (let i = 0; i < L; i++) {
    const p = `${v}.encoder.layers.${i}`;
    let h = g.layerNorm(x, `${p}.layer_norm1`, C, eps);
    const q = g.linear(h, `${p}.self_attn.q_proj`, C, C, { weight: normal(attnIn) });
    const k = g.linear(h, `${p}.self_attn.k_proj`, C, C, { weight: normal(attnIn) });
    const vv = g.linear(h, `${p}.self_attn.v_proj`, C, C, { weight: normal(attnIn) });
    h = g.op('attention', [q, k, vv], { heads });
    x = g.op('add', [x, g.linear(h, `${p}.self_attn.out_proj`, C, C, { weight: normal(attnOut) })], {});
    h = g.layerNorm(x, `${p}.layer_norm2`, C, eps);
    h = g.op('quick_gelu', [g.linear(h, `${p}.mlp.fc1`, C, mlp, { weight: normal(fcStd) })], {});
    x = g.op('add', [x, g.linear(h, `${p}.mlp.fc2`, mlp, C, { weight: normal(attnIn) })], {});
  }

  // Pooled output: the class token, post-LN, projected (CLIP's image_embeds, not normalised).
  let pooled = g.op('reshape', [g.op('slice', [x], { axis: 1, start: 0, end: 1 })], { shape: [0, C] });
  pooled = g.layerNorm(pooled, `${v}.post_layernorm`, C, eps);
  const embeds = g.linear(pooled, 'visual_projection', C, projection, { weight: normal(C ** -0.5), bias: null }, 'embeds');
  const { logits, loss } = g.head(embeds, projection, numClasses, head);
  return g.build([3, H, W], { embeds, logits }, loss);
}
