#!/usr/bin/env node
// Builds the native addon: finds LibTorch (scripts/libtorch.mjs), then cmake-js (default) or node-gyp (--gyp).
// Both build the same sources in native/ against the same LibTorch; the output is build/Release/penny_native.node.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLibtorch } from './libtorch.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const gyp = process.argv.includes('--gyp');

function run(cmd, args, env = process.env) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', env });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

let torch;
try {
  torch = findLibtorch();
} catch (e) {
  console.error(`penny-train: ${e.message}`);
  process.exit(1);
}
fs.mkdirSync(path.join(ROOT, 'build'), { recursive: true });
fs.writeFileSync(path.join(ROOT, 'build', 'libtorch.json'), JSON.stringify(torch, null, 2) + '\n');
console.log(`penny-train: LibTorch ${torch.version} (${torch.cuda ? 'CUDA' : 'CPU'}) from ${torch.source}: ${torch.root}`);

const bin = (name) => path.join(ROOT, 'node_modules', '.bin', name);
const jobs = String(Math.max(1, (await import('node:os')).availableParallelism()));
if (gyp) {
  // node-gyp reads the LibTorch paths from build/libtorch.json (binding.gyp); --nodedir uses the headers that come
  // with this Node, so nothing is downloaded.
  const nodedir = path.resolve(path.dirname(process.execPath), '..');
  run(bin('node-gyp'), ['rebuild', `--nodedir=${nodedir}`, '-j', jobs, '--build-dir', 'build-gyp'].filter(Boolean));
} else {
  run(bin('cmake-js'), ['compile', '--out', 'build', `--CDCMAKE_PREFIX_PATH=${torch.cmakePrefix}`, '--parallel', jobs]);
}
