// The node-gyp build (binding.gyp) builds a working addon and leaves the cmake-js build/ alone.
// It compiles all of native/ (minutes), so it runs only with PENNY_TEST_GYP=1.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const GYP_ADDON = path.join(ROOT, 'build-gyp', 'Release', 'penny_native.node');
const CMAKE_ADDON = path.join(ROOT, 'build', 'Release', 'penny_native.node');

describe.skipIf(process.env.PENNY_TEST_GYP !== '1')('node-gyp build', () => {
  it('builds build-gyp/Release/penny_native.node, which loads LibTorch', () => {
    const cmakeBefore = fs.existsSync(CMAKE_ADDON) ? fs.statSync(CMAKE_ADDON).mtimeMs : null;
    execFileSync(process.execPath, ['scripts/build-native.mjs', '--gyp'], { cwd: ROOT, stdio: 'inherit' });

    // In a child process: a broken addon must not take the test runner down with it.
    const out = execFileSync(process.execPath, ['-e', `
      const info = require(${JSON.stringify(GYP_ADDON)}).info();
      process.stdout.write(JSON.stringify(info));
    `], { encoding: 'utf8' });
    const info = JSON.parse(out) as { torchVersion: string };
    const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'build', 'libtorch.json'), 'utf8')) as { version: string };
    expect(info.torchVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(version.startsWith(info.torchVersion)).toBe(true);

    // The cmake-js addon is where it was.
    expect(fs.existsSync(CMAKE_ADDON) ? fs.statSync(CMAKE_ADDON).mtimeMs : null).toBe(cmakeBefore);
  }, 15 * 60_000);
});
