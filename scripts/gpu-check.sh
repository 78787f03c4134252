#!/usr/bin/env bash
# The CUDA check, in one run on a lent GPU machine (Python with a CUDA torch and its LibTorch cmake files, cmake, g++,
# nvcc; no Node.js, no network). Before it, here: `bash scripts/gpu-pack.sh` packs a Node.js and the node_modules it
# needs into gpu-carry/; carry that folder with the working tree. There, from the repository root:
#   bash scripts/gpu-check.sh                  results in $OUT (the device tool's folder), else ./gpu-results
#   GPU_CHECK_DEVICE=cpu bash scripts/gpu-check.sh   the same steps on the CPU, small: how it is tested without a GPU
# Steps, each with a time limit, each logged to <step>.log and timed in summary.txt; a failing step does not stop
# the later ones unless they need it:
#   1. Node.js from gpu-carry/ (and node_modules, where the tree has none)
#   2. the addon built against the machine's LibTorch (scripts/libtorch.mjs's chain: $LIBTORCH, else python3's torch)
#   3. the tests that take a device, on it (PENNY_TEST_DEVICE): test/cuda.test.ts, test/precision.test.ts
#   4. `bench step --device cuda`: ViT-B/32 train/eval img/s, fp32 and bf16, batch 64 and 256, beside PyTorch eager
#      (its peak allocated memory in the table's notes; the GPU's per-process memory sampled by nvidia-smi meanwhile)
#   5. one epoch of ViT-B/32 with the real input pipeline (generated pennies, bf16, batch 256): its img/s against the
#      step's alone (the bench's train b256 bf16)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
device=${GPU_CHECK_DEVICE:-cuda}
out=${OUT:-$root/gpu-results}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null' EXIT
summary="$out/summary.txt"
: > "$summary"
log() { echo "[gpu-check +${SECONDS}s] $*" | tee -a "$summary"; }

# step NAME LIMIT_S CMD...: runs CMD with its output in NAME.log, a time limit, and its exit status in the summary
step() {
  local name=$1 limit=$2 started=$SECONDS rc
  shift 2
  log "$name: $* (limit ${limit} s)"
  timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  log "$name: exit $rc after $((SECONDS - started)) s$([ $rc = 124 ] && echo ' (TIME LIMIT)')"
  [ $rc = 0 ] || tail -n 25 "$out/$name.log" | sed 's/^/    /' | tee -a "$summary"
  return $rc
}

# --- 0. the machine
log "device $device; $(uname -srm); $(nproc) cores"
if [ "$device" != cpu ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/  GPU: /' | tee -a "$summary"
  command -v nvcc > /dev/null && log "nvcc: $(nvcc --version | tail -n 1)"
fi
python3 -c 'import torch; print("python3 torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 |
  sed 's/^/  /' | tee -a "$summary"

# --- 1. Node.js and node_modules
if [ -f gpu-carry/node.xz ]; then
  xz -dc gpu-carry/node.xz > "$work/node" && chmod +x "$work/node" && export PATH="$work:$PATH"
fi
command -v node > /dev/null || { log "no Node.js: run scripts/gpu-pack.sh first and carry gpu-carry/"; exit 1; }
log "node $(node --version) ($(command -v node))"
if [ ! -d node_modules/vitest ]; then
  [ -f gpu-carry/node_modules.tar.xz ] || { log "no node_modules and no gpu-carry/node_modules.tar.xz"; exit 1; }
  mkdir -p node_modules && xz -dc gpu-carry/node_modules.tar.xz | tar -C node_modules -xf - || { log "unpacking node_modules failed"; exit 1; }
  log "node_modules unpacked"
fi

# --- 2. the addon
step build 300 node scripts/build-native.mjs || { log "the addon did not build: nothing else can run"; exit 1; }
node --import tsx -e "import('./src/backend/native.ts').then((n) => console.log('addon:', JSON.stringify(n.nativeInfo())))" 2>&1 | tee -a "$summary"

# --- 3. the tests that take a device
PENNY_TEST_DEVICE=$device step tests 240 node node_modules/vitest/vitest.mjs run test/cuda.test.ts test/precision.test.ts

# --- 4. step throughput beside PyTorch eager, GPU memory sampled
if [ "$device" != cpu ]; then
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits -lms 200 > "$out/gpu-memory.csv" 2>&1 &
  sampler=$!
  step bench-step 300 node --import tsx scripts/bench/index.ts step --device "$device"
  kill "$sampler" 2>/dev/null; sampler=
  # the most memory each process held on the GPU (MiB, CUDA context and the caching allocator's reserve included)
  awk -F', *' 'NF >= 3 && $3 + 0 > max[$1 " " $2] { max[$1 " " $2] = $3 + 0 } END { for (p in max) printf "  GPU memory peak: %s %d MiB\n", p, max[p] }' \
    "$out/gpu-memory.csv" | tee -a "$summary"
else
  step bench-step 600 node --import tsx scripts/bench/index.ts step --quick
fi
tail -n 20 "$out/bench-step.log" | grep -v '^\[bench\]' | tee -a "$summary"
cp bench/results/step-*.json "$out/" 2>/dev/null

# --- 5. a whole epoch with the real input pipeline
if [ "$device" != cpu ]; then count=5120; model=(--set backbone=coin_clip_vit_b32 --batch_size 256 --precision bf16); else
  count=300; model=(--set backbone=clip_vit_tiny --set 'img_size=[64,64]' --batch_size 32); fi
data="$work/pennies"
UV_THREADPOOL_SIZE=$((2 * $(nproc))) step synth 120 node --import tsx scripts/synth-pennies.ts --count "$count" --out "$data" --seed 11
run="$work/run" && mkdir -p "$run"
# two epochs: the first decodes every image into the cache, the second is the steady state
tsx=$(node --input-type=module -e "console.log(import.meta.resolve('tsx'))")   # the run's cwd is not the root
(cd "$run" && UV_THREADPOOL_SIZE=$(nproc) step epoch 300 node --import "$tsx" "$root/src/cli.ts" -m side --config_file "$root/configs/training_config.yaml" \
  --device "$device" --epochs 2 "${model[@]}" --set pretrained_weights=null --set quantize=false --set imx500_compatible=false \
  --set "data_root=$data" --set "metadata_json_path=$data/metadata.json" --set "roi_json_path=$data/roi_coordinates.json" \
  --set "num_workers=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))")
metrics=$(ls "$run"/output/runs/*/metrics.csv 2>/dev/null | head -n 1)
if [ -n "$metrics" ]; then
  cp "$metrics" "$out/epoch-metrics.csv"
  col=$(head -n 1 "$metrics" | tr ',' '\n' | grep -n '^img_per_s$' | cut -d: -f1)
  log "whole epoch (train split, real input pipeline) img/s by epoch: $(tail -n +2 "$metrics" | cut -d, -f"$col" | paste -sd' ')"
fi
log "done; results in $out"
