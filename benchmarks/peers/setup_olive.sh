#!/usr/bin/env bash
# Microsoft Olive (`olive-ai`) in its own virtual environment, benchmarks/peers/.venv-olive.
# torch 2.13.0 goes in first: olive-ai depends on torch, and an unpinned torch pulls a
# multi-GB CUDA build. Olive's CLI also needs `requests`, which it does not declare.
#
#   bash benchmarks/peers/setup_olive.sh      (from the repository root; ~2-3 min)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-olive"
python="${PYTHON:-python3.11}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "torch==2.13.0"
"$venv/bin/pip" install -q "olive-ai==0.13.0" "torch==2.13.0" onnxruntime onnx requests
"$venv/bin/pip" check
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
for name in ("olive-ai", "onnxruntime", "onnx", "torch", "numpy"):
    print(f"{name} {version(name)}")
PY
