// Native autograd against central finite differences, in float64, on graphs that use every op of the IR.
import { describe, expect, it } from 'vitest';
import { buildBackbone } from '../src/index.js';
import { gradcheck, otherOps } from './helpers.js';

describe('native autograd', () => {
  it('matches finite differences on clip_vit_tiny (conv, attention, layer_norm, quick_gelu, ...)', async () => {
    expect(await gradcheck(buildBackbone('clip_vit_tiny', 4, 32), 4)).toBeLessThan(1e-5);
  });

  it('matches finite differences on cnn_small (strided padded convs, relu, mean pooling)', async () => {
    expect(await gradcheck(buildBackbone('cnn_small', 3, 16), 3)).toBeLessThan(1e-5);
  });

  it('matches finite differences on gelu, relu, relu6, mul, softmax, log_softmax and a padded conv', async () => {
    expect(await gradcheck(otherOps(), 3)).toBeLessThan(1e-5);
  });
});
