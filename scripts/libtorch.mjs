#!/usr/bin/env node
// Finds (or fetches) the LibTorch that the native addon builds against, in this order:
//   1. $LIBTORCH            a libtorch folder, or a Torch cmake prefix (…/share/cmake)
//   2. ./libtorch/          already unpacked in the project
//   3. a Python's torch     `torch.utils.cmake_prefix_path` of python3 on PATH
//   4. the official zip     from $LIBTORCH_URL or the PyTorch download site (unpacked into ./libtorch/)
//   5. the pip wheel        `pip download torch==$LIBTORCH_VERSION` (no install), lib/include/share unpacked
//                           into ./libtorch/ — the way on machines whose pip has the wheel on disk
// It prints which one it used and writes build/libtorch.json for CMake, binding.gyp and the runtime.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const VERSION = process.env.LIBTORCH_VERSION ?? '2.13.0';
const LOCAL = path.join(ROOT, 'libtorch');
const OUT = path.join(ROOT, 'build', 'libtorch.json');

/** Describes a LibTorch install from its cmake prefix, or returns null if it is not one. */
export function describe(prefixOrRoot, source) {
  const candidates = [
    prefixOrRoot,
    path.join(prefixOrRoot, 'share', 'cmake'),
  ];
  for (const prefix of candidates) {
    const cfg = path.join(prefix, 'Torch', 'TorchConfig.cmake');
    if (!fs.existsSync(cfg)) continue;
    const root = path.resolve(prefix, '..', '..');
    const libDir = path.join(root, 'lib');
    const includeDir = path.join(root, 'include');
    if (!fs.existsSync(path.join(libDir, 'libtorch_cpu.so')) && !fs.existsSync(path.join(libDir, 'libtorch_cpu.dylib'))) {
      continue;
    }
    const cuda = fs.readdirSync(libDir).some((f) => /^libtorch_cuda\.(so|dylib)/.test(f));
    return { source, root, cmakePrefix: prefix, libDir, includeDir, version: readVersion(root, prefix), cuda };
  }
  return null;
}

function readVersion(root, prefix) {
  for (const f of [path.join(root, 'build-version'), path.join(root, 'version.py')]) {
    if (!fs.existsSync(f)) continue;
    const m = fs.readFileSync(f, 'utf8').match(/(\d+\.\d+\.\d+[^'"\s]*)/);
    if (m) return m[1];
  }
  const v = path.join(prefix, 'Torch', 'TorchConfigVersion.cmake');
  const m = fs.existsSync(v) && fs.readFileSync(v, 'utf8').match(/PACKAGE_VERSION "([^"]+)"/);
  return m ? m[1] : 'unknown';
}

function fromEnv() {
  const dir = process.env.LIBTORCH;
  if (!dir) return null;
  const found = describe(path.resolve(dir), `LIBTORCH=${dir}`);
  if (!found) throw new Error(`LIBTORCH=${dir} is not a LibTorch folder (no share/cmake/Torch/TorchConfig.cmake with lib/libtorch_cpu)`);
  return found;
}

function fromPython() {
  for (const py of ['python3', 'python']) {
    const r = spawnSync(py, ['-c', 'import torch, torch.utils; print(torch.utils.cmake_prefix_path)'], { encoding: 'utf8' });
    if (r.status === 0) return describe(r.stdout.trim(), `${py} torch`);
  }
  return null;
}

function unzip(zipFile, dest, members) {
  // Python's zipfile is there wherever pip is; `unzip` where it is not.
  const py = spawnSync('python3', ['-c', `
import sys, zipfile
zf = zipfile.ZipFile(sys.argv[1]); dest = sys.argv[2]; prefixes = tuple(sys.argv[3:])
for n in zf.namelist():
    if not prefixes or n.startswith(prefixes): zf.extract(n, dest)
`, zipFile, dest, ...members], { stdio: 'inherit' });
  if (py.status === 0) return;
  execFileSync('unzip', ['-q', '-o', zipFile, ...members.map((m) => `${m}*`), '-d', dest], { stdio: 'inherit' });
}

function fromOfficialZip() {
  const url = process.env.LIBTORCH_URL
    ?? `https://download.pytorch.org/libtorch/cpu/libtorch-shared-with-deps-${VERSION}%2Bcpu.zip`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'libtorch-'));
  const zip = path.join(tmp, 'libtorch.zip');
  console.log(`libtorch: trying ${url}`);
  const r = spawnSync('curl', ['-fsSL', '--connect-timeout', '10', '-o', zip, url], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) {
    console.log(`libtorch: download failed (${(r.stderr || r.error?.message || '').trim() || `curl exit ${r.status}`})`);
    fs.rmSync(tmp, { recursive: true, force: true });
    return null;
  }
  unzip(zip, ROOT, ['libtorch/']);
  fs.rmSync(tmp, { recursive: true, force: true });
  return describe(LOCAL, url);
}

function fromPipWheel() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-wheel-'));
  try {
    console.log(`libtorch: trying pip download torch==${VERSION} (the wheel is only unpacked, nothing is installed)`);
    const r = spawnSync('python3', ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '-d', tmp, `torch==${VERSION}`],
      { stdio: ['ignore', 'inherit', 'inherit'] });
    const wheel = r.status === 0 && fs.readdirSync(tmp).find((f) => f.endsWith('.whl'));
    if (!wheel) return null;
    const staging = path.join(tmp, 'x');
    unzip(path.join(tmp, wheel), staging, ['torch/lib/', 'torch/include/', 'torch/share/', 'torch/version.py']);
    fs.rmSync(LOCAL, { recursive: true, force: true });
    fs.renameSync(path.join(staging, 'torch'), LOCAL);
    // The Python extension libs need libpython; LibTorch users never load them.
    for (const f of fs.readdirSync(path.join(LOCAL, 'lib'))) {
      if (/python|_test\.so$|jitbackend/.test(f)) fs.rmSync(path.join(LOCAL, 'lib', f), { force: true });
    }
    return describe(LOCAL, `pip wheel ${wheel}`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export function findLibtorch({ fetch = true } = {}) {
  const found = fromEnv() ?? describe(LOCAL, './libtorch') ?? fromPython()
    ?? (fetch ? fromOfficialZip() ?? fromPipWheel() : null);
  if (!found) {
    throw new Error([
      'penny-train needs LibTorch and found none. Any one of these works:',
      '  - set LIBTORCH to an unpacked libtorch folder (https://pytorch.org/get-started/locally/, "LibTorch")',
      `  - pip install torch==${VERSION}   (its torch/share/cmake is a complete LibTorch)`,
      '  - unpack libtorch into ./libtorch/',
    ].join('\n'));
  }
  return found;
}

/** Finds LibTorch, records it in build/libtorch.json and says which one it is; exits 1 with the reason if none. */
export function recordLibtorch() {
  try {
    const t = findLibtorch();
    fs.mkdirSync(path.dirname(OUT), { recursive: true });
    fs.writeFileSync(OUT, JSON.stringify(t, null, 2) + '\n');
    console.log(`penny-train: LibTorch ${t.version} (${t.cuda ? 'CUDA' : 'CPU'}) from ${t.source}: ${t.root}`);
    return t;
  } catch (e) {
    console.error(`penny-train: ${e.message}`);
    process.exit(1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) recordLibtorch();
