// Parameter initialisation in TypeScript, from a seed: identical for every backend and device.
import { numel, type Graph, type ParamSpec } from './graph.js';
import { hashSeed, Rng } from '../util/rng.js';

export function initParam(p: ParamSpec, seed: number): Float32Array {
  const out = new Float32Array(numel(p.shape));
  const init = p.init;
  switch (init.kind) {
    case 'zeros':
      break;
    case 'ones':
      out.fill(1);
      break;
    case 'normal': {
      const rng = new Rng(hashSeed(seed, p.name));
      for (let i = 0; i < out.length; i++) out[i] = rng.normal() * init.std;
      break;
    }
    case 'highpass': {
      const [c, , k] = p.shape;
      for (let ch = 0; ch < c; ch++) {
        const base = (ch * c + ch) * k * k;
        for (let i = 0; i < k * k; i++) out[base + i] = -1 / (k * k);
        out[base + ((k - 1) / 2) * k + (k - 1) / 2] += 1;
      }
      break;
    }
    case 'uniform': {
      const rng = new Rng(hashSeed(seed, p.name));
      for (let i = 0; i < out.length; i++) out[i] = (rng.next() * 2 - 1) * init.bound;
      break;
    }
  }
  return out;
}

export function initParams(g: Graph, seed: number, only?: (p: ParamSpec) => boolean): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const p of g.params) if (!only || only(p)) out[p.name] = initParam(p, seed);
  return out;
}
