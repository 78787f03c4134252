// A small convolutional backbone: quick to train from scratch on a CPU, for the learning benchmark and for users
// without pretrained CLIP weights. A stride-1 3x3 stem at full resolution (the coins' relief is a pixel or two
// wide), then stride-2 stages, each 3x3 conv + BatchNorm + ReLU; global average pooling, a projection, the head.
// Without batch norm it sat at the class prior for tens of epochs on the synthetic side task.
// Init: Kaiming-normal convs (fan-in, ReLU gain), PyTorch-default Linear layers.
import { GraphBuilder, type Graph, type HeadSpec } from './graph.js';

export interface CnnConfig {
  /** [height, width] */
  imageSize: [number, number];
  /** output channels of the stride-1 stem */
  stem: number;
  /** output channels of each stride-2 stage */
  channels: number[];
  projection: number;
  /**
   * How the last feature map becomes one vector: `mean` over its positions (any input size), or `flatten` (positions
   * kept, so where a feature lies counts: an orientation is a layout, which the mean throws away; fixed input size).
   */
  pool: 'mean' | 'flatten';
  /**
   * Relief input: each channel minus its k x k local mean (a fixed conv, a buffer: saved, never trained) before the
   * stem, so the first layers see the coin's relief rather than its colour and lighting. Absent: the raw image.
   */
  relief?: number;
}

export function buildCnn(cfg: CnnConfig, numClasses: number, head?: HeadSpec): Graph {
  const g = new GraphBuilder('pixels');
  let x = g.input;
  let cin = 3;
  if (cfg.relief) {
    const w = g.param('relief.weight', [3, 3, cfg.relief, cfg.relief], { kind: 'highpass' }, false, true);
    x = g.op('conv2d', [x, w, ''], { stride: 1, padding: (cfg.relief - 1) / 2 });
  }
  const stage = (name: string, cout: number, stride: number) => {
    const w = g.param(`${name}.conv.weight`, [cout, cin, 3, 3], { kind: 'normal', std: Math.sqrt(2 / (cin * 9)) }, true);
    x = g.op('relu', [g.batchNorm(g.op('conv2d', [x, w, ''], { stride, padding: 1 }), `${name}.bn`, cout)], {});
    cin = cout;
  };
  stage('stem', cfg.stem, 1);
  cfg.channels.forEach((cout, i) => stage(`features.${i}`, cout, 2));
  const [h, w] = cfg.imageSize.map((d) => cfg.channels.reduce((n) => Math.floor((n - 1) / 2) + 1, d));   // 3x3, stride 2, pad 1
  const features = cfg.pool === 'mean' ? cin : cin * h * w;
  const pooled = cfg.pool === 'mean' ? g.op('mean', [x], { axes: [2, 3] }) : g.op('reshape', [x], { shape: [0, features] });
  const pb = 1 / Math.sqrt(features);
  const embeds = g.linear(pooled, 'projection', features, cfg.projection, { weight: { kind: 'uniform', bound: pb }, bias: { kind: 'uniform', bound: pb } }, 'embeds');
  // The head reads the embedding directly, as on CLIP: a ReLU here can go all-zero and freeze the model.
  const { logits, loss } = g.head(embeds, cfg.projection, numClasses, head);
  return g.build([3, ...cfg.imageSize], { embeds, logits }, loss);
}
