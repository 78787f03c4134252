// Native memory is freed deterministically: no growth from step 50 to step 500.
import { expect, it } from 'vitest';
import { createModel } from '../src/index.js';
import { randn, randomLabels } from './helpers.js';

it('keeps RSS after 500 tiny train steps within 5% of RSS after 50', async () => {
  const m = await createModel({ backbone: 'clip_vit_tiny', numClasses: 5, imageSize: 32 });
  const shape = [8, 3, 32, 32];
  const x = randn(8 * 3 * 32 * 32, 1);
  const y = randomLabels(8, 5, 2);
  let after50 = 0;
  for (let i = 1; i <= 500; i++) {
    await m.trainStep(x, shape, y, { lr: 1e-4 });
    await m.predict(x, shape);
    if (i === 50) after50 = process.memoryUsage().rss;
  }
  const after500 = process.memoryUsage().rss;
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  console.log(`RSS after 50 steps ${mb(after50)} MiB, after 500 ${mb(after500)} MiB (${((after500 / after50 - 1) * 100).toFixed(2)}%)`);
  expect(after500).toBeLessThan(after50 * 1.05);
});
