// The graph IR as a PyTorch module (src/export/torch-module.ts): the same weights give the native backend's logits in
// PyTorch, for every edge backbone and head kind. Needs a Python with torch: the IMX500 environment
// (`npm run setup:imx500`), $PENNY_TORCH_PYTHON, or the python3 on PATH; CI sets up the first, so there it always runs.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeTorchFile } from '../src/backend/native.js';
import { torchModuleSource } from '../src/export/torch-module.js';
import { createModel } from '../src/index.js';
import { torchPython } from '../src/export/imx500-toolchain.js';
import { randn } from './helpers.js';

const python = torchPython();
const run = python || process.env.PENNY_TEST_IMX500 === '1' ? it : it.skip;

const CASES: { backbone: string; size: [number, number]; classes: number; head?: { kind: 'year_digits'; first: number; last: number } }[] = [
  { backbone: 'cnn_small_relief', size: [48, 48], classes: 5 },
  { backbone: 'cnn_small_spatial_relief', size: [48, 48], classes: 120 },
  { backbone: 'cnn_small', size: [48, 112], classes: 116, head: { kind: 'year_digits', first: 1909, last: 2024 } },
  { backbone: 'clip_vit_tiny', size: [32, 32], classes: 4 },
];

describe('PyTorch module from the graph IR', () => {
  for (const c of CASES) {
    run(`${c.backbone}${c.head ? ' (factorised head)' : ''}: PyTorch's logits equal native's (<= 1e-4)`, async () => {
      const model = await createModel({ backbone: c.backbone, numClasses: c.classes, imageSize: c.size, seed: 3, ...(c.head && { head: c.head }) });
      try {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-torch-'));
        const shape = [4, 3, ...c.size];
        const x = randn(shape.reduce((a, b) => a * b, 1), 5);
        const params = model.getParams();
        // batch norm statistics away from their initial 0 and 1, so that reading them in eval mode is checked too
        for (const [k, v] of Object.entries(params)) {
          if (/running_(mean|var)$/.test(k)) params[k] = Float32Array.from(randn(v.length, k.length), (r) => (k.endsWith('var') ? 0.5 + Math.abs(r) : 0.2 * r));
        }
        model.setParams(params);
        const shapes = new Map(model.graph.params.map((p) => [p.name, p.shape]));
        // a few batch norm statistics away from their initial 0 / 1, so eval mode is really read
        await writeTorchFile(path.join(dir, 'state.pt'), Object.fromEntries(Object.entries(params).map(([k, v]) =>
          [k, { kind: 'tensor', dtype: 'float32', shape: shapes.get(k)!, data: v }])));
        await writeTorchFile(path.join(dir, 'x.pt'), { kind: 'tensor', dtype: 'float32', shape, data: x });
        fs.writeFileSync(path.join(dir, 'net.py'), torchModuleSource(model.graph));
        const script = `import sys, torch\nsys.path.insert(0, ${JSON.stringify(dir)})\nfrom net import PennyNet\n` +
          `m = PennyNet().load_penny_state(torch.load(${JSON.stringify(path.join(dir, 'state.pt'))}, weights_only=True)).eval()\n` +
          `with torch.no_grad():\n    y = m(torch.load(${JSON.stringify(path.join(dir, 'x.pt'))}, weights_only=True))\n` +
          `sys.stdout.write(' '.join(repr(float(v)) for v in y.flatten()))\n`;
        const r = spawnSync(python!, ['-c', script], { encoding: 'utf8' });
        expect(r.status, r.stderr).toBe(0);
        const torchOut = r.stdout.trim().split(' ').map(Number);
        const native = Array.from(await model.predict(x, shape as [number, number, number, number]));
        expect(torchOut).toHaveLength(native.length);
        const diff = Math.max(...native.map((v, i) => Math.abs(v - torchOut[i])));
        expect(diff).toBeLessThanOrEqual(1e-4);
      } finally {
        model.dispose();
      }
    });
  }
});
