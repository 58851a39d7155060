"""Intel Neural Compressor's accuracy-aware autotune (`onnx-neural-compressor`) on the
MiniLM ONNX export, judged by autoaccel's own `task_quality` on the search half (or another of
the workload's figures, `--metric teacher_cosine` for the compatibility table).

Runs in benchmarks/peers/.venv-inc (numpy < 2, made by setup_inc.sh), never imports autoaccel.
What it needs from autoaccel's side comes through files and one subprocess:

- `--calib`: an .npz of calibration batches (the minilm workload's `calibration_inputs()`:
  64 lee_background sentences, 8 a batch, 128 tokens), keys `input_ids_<k>`,
  `attention_mask_<k>`;
- the evaluation function runs `score_onnx.py MODEL --split search` with `--scorer-python`
  (autoaccel's interpreter) and reads `--metric` (default `task_quality`) from its JSON line:
  the figure autoaccel's own search is limited by.

INC's limit is relative, (baseline - q) / baseline <= tolerable_loss. The limit here is
absolute (q >= baseline - max_drop), so the first evaluation (INC's fp32 baseline) sets
tolerable_loss = max_drop / baseline: the same limit exactly. The config set is INC's own
tuning set, static int8 first (its op-type fallbacks x per-channel x last MatMul), then
dynamic int8; INC stops at the first config within the limit and returns it.

    benchmarks/peers/.venv-inc/bin/python benchmarks/peers/inc_autotune.py \
        --model fp32.onnx --calib calib.npz --out DIR --scorer-python .venv/bin/python

Writes DIR/model.onnx and DIR/inc.json (version, wall time, every trial's figure, the
chosen config).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
from onnx_neural_compressor import data_reader
from onnx_neural_compressor.quantization import config, tuning

HERE = Path(__file__).resolve().parent


class NpzReader(data_reader.CalibrationDataReader):
    """The calibration batches from the .npz, in order; `rewind` starts over."""

    def __init__(self, path: Path) -> None:
        data = np.load(path)
        count = len([k for k in data.files if k.startswith("input_ids_")])
        self.batches = [
            {n: data[f"{n}_{k}"] for n in ("input_ids", "attention_mask")} for k in range(count)
        ]
        self.rewind()

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="fp32 ONNX export")
    parser.add_argument("--calib", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scorer-python", required=True, help="autoaccel's python")
    parser.add_argument("--split", default="search")
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--metric", default="task_quality", help="the figure the limit is on")
    parser.add_argument("--max-trials", type=int, default=100)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    trials: list[dict] = []
    tune_config = tuning.TuningConfig(
        config_set=config.StaticQuantConfig.get_config_set_for_tuning()
        + config.DynamicQuantConfig.get_config_set_for_tuning(),
        tolerable_loss=0.01,  # replaced by max_drop / baseline at the first evaluation
        max_trials=args.max_trials,
    )

    def eval_fn(model_path: str) -> float:
        t0 = time.perf_counter()
        done = subprocess.run(
            [args.scorer_python, str(HERE / "score_onnx.py"), model_path, "--split", args.split],
            check=True,
            capture_output=True,
            text=True,
        )
        quality = json.loads(done.stdout.strip().splitlines()[-1])["quality"]
        q = float(quality[args.metric])
        if not trials:  # INC evaluates its fp32 baseline first
            tune_config.tolerable_loss = args.max_drop / q
        trials.append(
            {
                "role": "baseline" if not trials else "trial",
                "task_quality": quality["task_quality"],
                "teacher_cosine": quality["teacher_cosine"],
                args.metric: q,
                "eval_seconds": time.perf_counter() - t0,
            }
        )
        print(f"INC eval {len(trials) - 1}: {args.metric} {q:.4f}", flush=True)
        return q

    start = time.perf_counter()
    best = tuning.autotune(
        model_input=str(args.model),
        tune_config=tune_config,
        eval_fn=eval_fn,
        calibration_data_reader=NpzReader(args.calib),
    )
    wall = time.perf_counter() - start
    if best is None:  # autotune exits by itself when nothing meets the limit
        sys.exit("INC found no config within the limit")
    onnx.save_model(best, str(args.out / "model.onnx"))
    ops: dict[str, int] = {}
    for node in best.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    report = {
        "tool": "onnx-neural-compressor",
        "source_model": str(args.model.resolve()),
        "versions": {
            n: version(n) for n in ("onnx-neural-compressor", "onnxruntime", "onnx", "numpy")
        },
        "tuning_wall_seconds": wall,
        "split": args.split,
        "metric": args.metric,
        "max_drop": args.max_drop,
        "tolerable_loss_relative": tune_config.tolerable_loss,
        "baseline_task_quality": trials[0]["task_quality"],
        "baseline_value": trials[0][args.metric],
        "trials": trials,
        "n_quantized_trials": len(trials) - 1,
        "chosen": trials[-1],
        "config_set": "StaticQuantConfig.get_config_set_for_tuning() + "
        "DynamicQuantConfig.get_config_set_for_tuning() (INC's defaults: QOperator, "
        "MinMax calibration)",
        "op_counts": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
    }
    (args.out / "inc.json").write_text(json.dumps(report, indent=2))
    print(
        f"INC autotune: {len(trials) - 1} quantized trial(s), {wall:.0f} s; "
        f"chosen {args.metric} {trials[-1][args.metric]:.4f} "
        f"(baseline {trials[0][args.metric]:.4f})"
    )


if __name__ == "__main__":
    main()
