// Sony's IMX500 toolchain (model-compression-toolkit + imx500-converter) lives in its own Python environment, made
// by `npm run setup:imx500` (scripts/setup-imx500.sh) in penny-train's cache folder; training never needs it.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { cacheDir } from '../train/pretrained.js';

/** The IMX500 environment's folder: $PENNY_IMX500_VENV, else <cache>/imx500-venv. */
export function imx500Venv(): string {
  return process.env.PENNY_IMX500_VENV ?? path.join(cacheDir(), 'imx500-venv');
}

/** A Python that imports torch: $PENNY_TORCH_PYTHON, the IMX500 environment's, else python3 if it has torch; or null. */
export function torchPython(): string | null {
  const candidates = [process.env.PENNY_TORCH_PYTHON, path.join(imx500Venv(), 'bin', 'python'), 'python3'].filter((p): p is string => !!p);
  for (const p of candidates) {
    if (p.includes(path.sep) && !fs.existsSync(p)) continue;
    if (spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return p;
  }
  return null;
}
