#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine without Node.js into gpu-carry/ (gitignored): this Node.js
# binary and the node_modules that the build, the tests and the step bench load, xz-compressed (~55 MiB: the device
# tool carries 64 MiB at most). Left out: other platforms' onnxruntime binaries, linters, formatters, TypeScript's
# compiler, node-gyp, Playwright, source maps, type declarations, Markdown. Run after `npm install`.
#   bash scripts/gpu-pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
test -d node_modules/vitest || { echo "gpu-pack: node_modules is incomplete: run npm install first" >&2; exit 1; }
out=gpu-carry
rm -rf "$out.tmp" && mkdir -p "$out.tmp"
node -p 'process.version' > "$out.tmp/node-version"
xz -T0 -9 -c "$(command -v node)" > "$out.tmp/node.xz"
ort=onnxruntime-node/bin/napi-v6
tar -C node_modules -cf - \
  --exclude="$ort/darwin" --exclude="$ort/win32" --exclude="$ort/linux/arm64" \
  --exclude=clang-format --exclude=typescript --exclude=typescript-eslint --exclude=@typescript-eslint \
  --exclude=eslint --exclude=@eslint --exclude=playwright-core --exclude=node-gyp --exclude=@types \
  --exclude=lightningcss-linux-x64-gnu --exclude=zod/src --exclude=vega-lite/src --exclude=protobufjs/dist \
  --exclude='*.map' --exclude='*.d.ts' --exclude='*.d.cts' --exclude='*.d.mts' --exclude='*.md' . |
  xz -T0 -9e > "$out.tmp/node_modules.tar.xz"
rm -rf "$out" && mv "$out.tmp" "$out"
du -b "$out"/* | awk '{ s += $1; printf "%8.1f MiB  %s\n", $1 / 1048576, $2 } END { printf "%8.1f MiB  in all\n", s / 1048576 }'
