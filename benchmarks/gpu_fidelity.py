"""GPU cost-model fidelity: the nvidia-h100-sxm estimates against real CUDA timings.

    .venv/bin/python benchmarks/gpu_fidelity.py benchmarks/results/gpu_timings_h100.json

The timings come from `benchmarks/gpu/time_minilm_cuda.py`, run on a lent H100 (plain
PyTorch there: MiniLM-shaped BERT encoders of 6/3/2/1 layers, fp32 without TF32 and fp16,
batch 1/8/32 x 128 tokens, eager and replayed as a CUDA graph). Here the same shapes are
built as autoaccel candidates (the 6-layer teacher, untrained distilled students: same graph
as trained ones; `quantize.mode fp16` for fp16) and estimated with `estimate_candidate` on
the nvidia-h100-sxm profile at each batch size. Reports Spearman and the median absolute
percentage error against the CUDA-graph timings (what the hardware does, without Python and
launch overhead) and against eager. Writes results/gpu_fidelity.json and .md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402
from costmodel_fidelity import scores, student  # noqa: E402

from autoaccel.builder import build_candidate  # noqa: E402
from autoaccel.projection import estimate_candidate  # noqa: E402
from autoaccel.targets import Plan, load_targets  # noqa: E402
from autoaccel.workloads import load_workload  # noqa: E402

PROFILE = "nvidia-h100-sxm"


def recipe(layers: int, precision: str) -> dict[str, Any]:
    r: dict[str, Any] = {"runtime.backend": "onnxruntime"}
    if layers < 6:
        r.update(student(layers, 1.0))
    if precision == "fp16":
        r["quantize.mode"] = "fp16"
    return r


def main() -> None:
    timings = json.loads(Path(sys.argv[1]).read_text())
    cache = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/gpu-fidelity-cache")
    workload = load_workload("minilm", cache)
    target = load_targets([PROFILE])[PROFILE]
    rows = []
    for t in timings["rows"]:
        cand = build_candidate(recipe(t["layers"], t["precision"]), workload, cache)
        est, _ = estimate_candidate(cand.onnx_path, workload, target, Plan(batch_size=t["batch"]))
        graph_ms = t["cuda_graph_ms"] if isinstance(t["cuda_graph_ms"], float) else None
        rows.append({**t, "predicted_ms": est.latency_ms, "breakdown_ms": est.breakdown_ms})
        if graph_ms is not None:
            rows[-1]["measured_ms"] = graph_ms
    graphed = [r for r in rows if "measured_ms" in r]
    eager = [{**r, "measured_ms": r["eager_ms"]} for r in rows]
    summary = {
        "vs_cuda_graph": scores(graphed),
        "vs_eager": scores(eager),
        "by_precision_vs_cuda_graph": {
            p: scores([r for r in graphed if r["precision"] == p]) for p in ("fp32", "fp16")
        },
        "by_batch_vs_cuda_graph": {
            b: scores([r for r in graphed if r["batch"] == b]) for b in (1, 8, 32)
        },
    }
    table = [
        [
            str(r["layers"]),
            r["precision"],
            str(r["batch"]),
            f"{r['predicted_ms']:.3f}",
            f"{r['measured_ms']:.3f}" if "measured_ms" in r else "-",
            f"{r['eager_ms']:.3f}",
            f"{r['predicted_ms'] / r['measured_ms']:.2f}" if "measured_ms" in r else "-",
        ]
        for r in rows
    ]
    g, e = summary["vs_cuda_graph"], summary["vs_eager"]
    table.append(
        [
            "all",
            "",
            "",
            "",
            f"Spearman {g['spearman']}, MdAPE {g['mdape_pct']} %",
            f"Spearman {e['spearman']}, MdAPE {e['mdape_pct']} %",
            "",
        ]
    )
    write(
        "gpu_fidelity",
        {
            "profile": PROFILE,
            "device": timings["device"],
            "summary": summary,
            "rows": rows,
            "protocol": "predicted: estimate_candidate on nvidia-h100-sxm, Plan(batch_size=b), "
            "ONNX graph of the same shapes; measured: PyTorch on a lent H100 80GB HBM3, median "
            "of 50 CUDA-event-timed forwards (benchmarks/gpu/time_minilm_cuda.py)",
        },
        table,
        [
            "layers",
            "precision",
            "batch",
            "predicted ms",
            "CUDA graph ms",
            "eager ms",
            "pred / graph",
        ],
    )


if __name__ == "__main__":
    main()
