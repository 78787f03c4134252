#!/usr/bin/env bash
# `npm run setup:imx500`: the Python environment of Sony's IMX500 toolchain (model-compression-toolkit, the IMX500
# target platform, imx500-converter and its Java compiler), for `penny-train imx500`. Training never needs it.
#   venv: $PENNY_IMX500_VENV, else ${PENNY_TRAIN_CACHE:-~/.cache/penny-train}/imx500-venv
#   python: $PYTHON, else python3 (3.11 is the version the pins were resolved on)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PENNY_IMX500_VENV:-${PENNY_TRAIN_CACHE:-$HOME/.cache/penny-train}/imx500-venv}"
python="${PYTHON:-python3}"

# imx500-converter's compiler (sdspconv) is Java: 17 or newer
if ! command -v java >/dev/null; then
  echo "setup:imx500: no java on PATH; imx500-converter needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)" >&2
  exit 2
fi
java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  echo "setup:imx500: java $java_major found; imx500-converter needs Java 17 or newer" >&2
  exit 2
fi

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# torch first and CPU only: a bare `torch` requirement later would pull a CUDA build of several GB. Where PyPI's
# torch is a CUDA build, PENNY_IMX500_TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU wheel.
"${pip[@]}" install "torch==${PENNY_IMX500_TORCH:-2.13.0}" ${PENNY_IMX500_TORCH_INDEX:+--index-url "$PENNY_IMX500_TORCH_INDEX"}
"${pip[@]}" install -r "$here/imx500/requirements.txt"
if "$venv/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "setup:imx500: a CUDA build of torch came in ($venv); remove the venv and install torch's CPU wheel first" >&2
  exit 1
fi
"$venv/bin/python" - <<'PY'
import importlib.util, sys
for m in ("torch", "model_compression_toolkit", "edgemdt_tpc", "mct_quantizers", "onnxruntime"):
    if importlib.util.find_spec(m) is None:
        sys.exit(f"setup:imx500: {m} did not install")
PY
test -x "$venv/bin/imxconv-pt" || { echo "setup:imx500: imxconv-pt is missing from $venv/bin" >&2; exit 1; }
echo "setup:imx500: ready in $venv ($(( $(date +%s) - start )) s): penny-train imx500 --checkpoint output/checkpoints/<model>_best.pt"
