"""Microsoft Olive's CLI quantization of the MiniLM ONNX export, timed, with its versions.

Runs in benchmarks/peers/.venv-olive (made by setup_olive.sh). It runs exactly the command
most users would type,

    olive quantize -m fp32.onnx --algorithm rtn --precision int8 --implementation ort -o DIR \
        --disable_telemetry

and records what Olive chose (it prints its pass list; without a dataset, which this offline
machine cannot download, RTN int8 with the ORT implementation becomes ONNX Runtime dynamic
quantization), the wall time and the versions in DIR/olive.json. Olive itself needs no
evaluation data and applies no accuracy limit: the limit is checked by vs_peers.py.

    benchmarks/peers/.venv-olive/bin/python benchmarks/peers/olive_quantize.py \
        --model fp32.onnx --out DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="fp32 ONNX export")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    cli = Path(sys.executable).with_name("olive")
    command = [
        str(cli),
        "quantize",
        "-m",
        str(args.model.resolve()),
        "--algorithm",
        "rtn",
        "--precision",
        "int8",
        "--implementation",
        "ort",
        "-o",
        str(out),
        "--disable_telemetry",  # nothing leaves this machine
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=out.parent)
    wall = time.perf_counter() - start
    log = done.stdout + done.stderr
    print(log, end="")
    if done.returncode != 0 or not (out / "model.onnx").exists():
        sys.exit(f"olive quantize failed (exit {done.returncode}); see its output above")
    import onnx

    ops: dict[str, int] = {}
    for node in onnx.load(str(out / "model.onnx"), load_external_data=False).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    report = {
        "tool": "olive-ai",
        "source_model": str(args.model.resolve()),
        "versions": {n: version(n) for n in ("olive-ai", "onnxruntime", "onnx", "torch", "numpy")},
        "command": " ".join(["olive", *command[1:]]),
        "tuning_wall_seconds": wall,
        "passes": [line.strip() for line in log.splitlines() if "pass" in line.lower()][:4],
        "warnings": [line.strip() for line in log.splitlines() if "warning" in line.lower()][:4],
        "op_counts": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
    }
    (out / "olive.json").write_text(json.dumps(report, indent=2))
    print(f"olive quantize: {wall:.0f} s, model at {out / 'model.onnx'}")


if __name__ == "__main__":
    main()
