#!/usr/bin/env node
// Builds the native addon: finds LibTorch (scripts/libtorch.mjs), then cmake-js (default) or node-gyp (--gyp).
// Both build the same sources in native/ against the same LibTorch: cmake-js into build/Release/penny_native.node,
// node-gyp into build-gyp/Release/penny_native.node.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { recordLibtorch } from './libtorch.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const gyp = process.argv.includes('--gyp');

/** Runs a command; returns its exit status (0 on success). */
function run(cmd, args, { env = process.env, cwd = ROOT } = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  return spawnSync(cmd, args, { cwd, stdio: 'inherit', env }).status ?? 1;
}

const torch = recordLibtorch();

const bin = (name) => path.join(ROOT, 'node_modules', '.bin', name);
const jobs = String(Math.max(1, os.availableParallelism()));
if (gyp) {
  // node-gyp always builds in ./build, where the cmake-js build lives, so it runs in a temporary folder that holds a
  // copy of binding.gyp and links to native/ and node_modules/; binding.gyp reads the LibTorch paths from
  // $PENNY_LIBTORCH_JSON. --nodedir uses the headers that come with this Node, so nothing is downloaded.
  const nodedir = path.resolve(path.dirname(process.execPath), '..');
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'penny-gyp-'));
  let status;
  try {
    fs.copyFileSync(path.join(ROOT, 'binding.gyp'), path.join(stage, 'binding.gyp'));
    for (const dir of ['native', 'node_modules']) fs.symlinkSync(path.join(ROOT, dir), path.join(stage, dir), 'dir');
    const env = { ...process.env, PENNY_LIBTORCH_JSON: path.join(ROOT, 'build', 'libtorch.json') };
    status = run(bin('node-gyp'), ['rebuild', `--nodedir=${nodedir}`, '-j', jobs], { env, cwd: stage });
    if (status === 0) {
      const out = path.join(ROOT, 'build-gyp', 'Release', 'penny_native.node');
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.copyFileSync(path.join(stage, 'build', 'Release', 'penny_native.node'), out);
      console.log(`penny-train: built ${path.relative(ROOT, out)}`);
    }
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
  process.exit(status);
} else {
  process.exit(run(bin('cmake-js'), ['compile', '--out', 'build', `--CDCMAKE_PREFIX_PATH=${torch.cmakePrefix}`, '--parallel', jobs]));
}
