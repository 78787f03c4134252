// The backbones penny-train knows, by the names the config and createModel() use.
import { buildClipVit, type ClipVisionConfig } from './clip.js';
import { buildCnn, type CnnConfig } from './cnn.js';
import type { Graph, HeadSpec } from './graph.js';

export type Backbone = ClipBackbone | CnnBackbone;

interface ClipBackbone {
  name: string;
  kind: 'clip';
  config: ClipVisionConfig;
  /** the pretrained weights the config points at by default (a Hugging Face repo) */
  hfRepo?: string;
}

interface CnnBackbone {
  name: string;
  kind: 'cnn';
  config: CnnConfig;
  hfRepo?: undefined;
}

export const BACKBONES = {
  /** CLIP ViT-B/32 vision tower, as in coin-clip (breezedeus/coin-clip-vit-base-patch32). */
  coin_clip_vit_b32: {
    name: 'coin_clip_vit_b32',
    kind: 'clip',
    config: { imageSize: [224, 224], patchSize: 32, width: 768, layers: 12, heads: 12, mlp: 3072, projection: 512, eps: 1e-5 },
    hfRepo: 'breezedeus/coin-clip-vit-base-patch32',
  },
  /** The same architecture, tiny: for tests and quick CPU runs. */
  clip_vit_tiny: {
    name: 'clip_vit_tiny',
    kind: 'clip',
    config: { imageSize: [64, 64], patchSize: 16, width: 64, layers: 2, heads: 4, mlp: 256, projection: 64, eps: 1e-5 },
  },
  /** A small CNN that learns from scratch in minutes on a CPU (no pretrained weights exist for it). */
  cnn_small: {
    name: 'cnn_small',
    kind: 'cnn',
    config: { imageSize: [64, 64], stem: 16, channels: [32, 64, 128, 128, 256], projection: 128, pool: 'mean' },
  },
  /** cnn_small whose last feature map is flattened, not averaged: it keeps where things lie (orientation). */
  cnn_small_spatial: {
    name: 'cnn_small_spatial',
    kind: 'cnn',
    config: { imageSize: [64, 64], stem: 16, channels: [32, 64, 128, 128, 256], projection: 128, pool: 'flatten' },
  },
  /** cnn_small reading the relief (the image minus its 5 x 5 local mean): designs, not colours (side) */
  cnn_small_relief: {
    name: 'cnn_small_relief',
    kind: 'cnn',
    config: { imageSize: [64, 64], stem: 16, channels: [32, 64, 128, 128, 256], projection: 128, pool: 'mean', relief: 5 },
  },
  /** cnn_small_spatial reading the relief (orientation: the layout of the design, not of the light on it) */
  cnn_small_spatial_relief: {
    name: 'cnn_small_spatial_relief',
    kind: 'cnn',
    config: { imageSize: [64, 64], stem: 16, channels: [32, 64, 128, 128, 256], projection: 128, pool: 'flatten', relief: 5 },
  },
} satisfies Record<string, Backbone>;

export type BackboneName = keyof typeof BACKBONES;

export function backboneNames(): string[] {
  return Object.keys(BACKBONES);
}

export function getBackbone(name: string): Backbone {
  const b = (BACKBONES as Record<string, Backbone>)[name];
  if (!b) throw new TypeError(`unknown backbone '${name}'; known: ${backboneNames().join(', ')}`);
  return b;
}

/** An image size as [height, width]; a number is a square. */
export type ImageSize = number | [number, number];

export function sizeOf(s: ImageSize): [number, number] {
  return typeof s === 'number' ? [s, s] : [s[0], s[1]];
}

/** Why `backbone` cannot take `size` ([height, width]), or null when it can. */
export function sizeProblem(name: string, [h, w]: [number, number]): string | null {
  const b = getBackbone(name);
  if (b.kind !== 'clip') return null;   // convolutions and mean pooling take any size
  const p = b.config.patchSize;
  return h % p || w % p ? `${name} reads ${p}x${p} patches: height and width must be multiples of ${p}, got [${h}, ${w}]` : null;
}

/** The backbone's graph with a `head` of `numClasses`, at `imageSize` (default: the backbone's own). */
export function buildBackbone(name: string, numClasses: number, imageSize?: ImageSize, head?: HeadSpec): Graph {
  const b = getBackbone(name);
  if (!Number.isInteger(numClasses) || numClasses < 2) throw new TypeError(`numClasses must be an integer >= 2, got ${numClasses}`);
  const size = imageSize === undefined ? b.config.imageSize : sizeOf(imageSize);
  return b.kind === 'clip' ? buildClipVit({ ...b.config, imageSize: size }, numClasses, head) : buildCnn({ ...b.config, imageSize: size }, numClasses, head);
}
