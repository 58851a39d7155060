#!/usr/bin/env bash
# Intel Neural Compressor for ONNX models (`onnx-neural-compressor`) in its own virtual
# environment, benchmarks/peers/.venv-inc: it needs numpy < 2, autoaccel's stack numpy 2.
# It never imports autoaccel; benchmarks/peers/inc_autotune.py talks to it through files.
#
#   bash benchmarks/peers/setup_inc.sh        (from the repository root; ~1-2 min)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-inc"
python="${PYTHON:-python3.11}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# onnx-neural-compressor 1.0 pins nothing that pulls torch; numpy < 2 is its own requirement;
# it imports prettytable without declaring it
"$venv/bin/pip" install -q "onnx-neural-compressor==1.0" "numpy<2" scipy prettytable
"$venv/bin/pip" check
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
for name in ("onnx-neural-compressor", "onnxruntime", "onnx", "numpy"):
    print(f"{name} {version(name)}")
PY
