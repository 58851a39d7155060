"""GPU cost-model fidelity: the nvidia-h100-sxm estimates against real CUDA timings.

    .venv/bin/python benchmarks/gpu_fidelity.py [benchmarks/results/gpu_timings_h100.json]

The timings come from `benchmarks/gpu/time_minilm_cuda.py`, run on a lent H100 (plain
PyTorch there: MiniLM-shaped BERT encoders of 6/3/2/1 layers, fp32 without TF32 and fp16,
batch 1/8/32 x 128 tokens, eager and replayed as a CUDA graph). Here the same shapes are
built as autoaccel candidates (the 6-layer teacher, untrained distilled students: same graph
as trained ones; `quantize.mode fp16` for fp16) and estimated with `estimate_candidate` on
the nvidia-h100-sxm profile at each batch size, with the kernels launched as a CUDA graph
(against the CUDA-graph timings) and eagerly (against the eager ones). No GPU is needed: it
re-scores the stored timings. Reports Spearman and the median absolute percentage error.
Writes results/gpu_fidelity.json and .md. The profile's figures are fitted by gpu_fit.py.
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
from autoaccel.targets import GraphCost, Plan  # noqa: E402
from autoaccel.targets.gpu import GpuTarget  # noqa: E402
from autoaccel.targets.profile import PROFILES_DIR, load_profile  # noqa: E402
from autoaccel.workloads import load_workload  # noqa: E402

PROFILE = "nvidia-h100-sxm"
TIMINGS = Path(__file__).resolve().parent / "results" / "gpu_timings_h100.json"
CACHE = Path("/tmp/gpu-fidelity-cache")
MEASURED = {"graph": "cuda_graph_ms", "eager": "eager_ms"}
"""Launch mode of the estimate -> the timing it is compared with."""


def recipe(layers: int, precision: str) -> dict[str, Any]:
    r: dict[str, Any] = {"runtime.backend": "onnxruntime"}
    if layers < 6:
        r.update(student(layers, 1.0))
    if precision == "fp16":
        r["quantize.mode"] = "fp16"
    return r


def graphs(timings: dict[str, Any], cache: Path = CACHE) -> dict[tuple, GraphCost]:
    """The analysed graph of every timed shape, by (layers, precision, batch): built once on
    the CPU here (the build cache makes a rerun quick)."""
    workload = load_workload("minilm", cache)
    probe = GpuTarget(load_profile(PROFILES_DIR / f"{PROFILE}.yaml"))
    out = {}
    for t in timings["rows"]:
        cand = build_candidate(recipe(t["layers"], t["precision"]), workload, cache)
        plan = Plan(batch_size=t["batch"])
        out[(t["layers"], t["precision"], t["batch"])] = estimate_candidate(
            cand.onnx_path, workload, probe, plan
        )[1]
    return out


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TIMINGS
    timings = json.loads(path.read_text())
    profile = load_profile(PROFILES_DIR / f"{PROFILE}.yaml")
    targets = {launch: GpuTarget(profile, launch) for launch in MEASURED}
    analysed = graphs(timings, Path(sys.argv[2]) if len(sys.argv) > 2 else CACHE)
    rows: list[dict[str, Any]] = []
    for t in timings["rows"]:
        graph = analysed[(t["layers"], t["precision"], t["batch"])]
        for launch, key in MEASURED.items():
            if not isinstance(t[key], float):  # a failed CUDA-graph capture says why instead
                continue
            est = targets[launch].estimate(graph, Plan(batch_size=t["batch"]))
            rows.append(
                {
                    **{k: t[k] for k in ("layers", "precision", "batch")},
                    "launch": launch,
                    "predicted_ms": est.latency_ms,
                    "measured_ms": t[key],
                    "breakdown_ms": est.breakdown_ms,
                }
            )
    summary: dict[str, Any] = {"all": scores(rows)}
    for launch in MEASURED:
        summary[f"vs_{launch}"] = scores([r for r in rows if r["launch"] == launch])
        for p in ("fp32", "fp16"):
            subset = [r for r in rows if r["launch"] == launch and r["precision"] == p]
            summary[f"vs_{launch}_{p}"] = scores(subset)
    table = [
        [
            str(r["layers"]),
            r["precision"],
            str(r["batch"]),
            r["launch"],
            f"{r['predicted_ms']:.3f}",
            f"{r['measured_ms']:.3f}",
            f"{r['predicted_ms'] / r['measured_ms']:.2f}",
        ]
        for r in rows
    ]
    for key, s in summary.items():
        table.append(
            [key, "", "", "", "", f"Spearman {s['spearman']}", f"MdAPE {s['mdape_pct']} %"]
        )
    write(
        "gpu_fidelity",
        {
            "profile": PROFILE,
            "profile_fidelity": profile.fidelity.model_dump() if profile.fidelity else None,
            "device": timings["device"],
            "summary": summary,
            "rows": rows,
            "protocol": "predicted: estimate_candidate's graph on nvidia-h100-sxm, "
            "Plan(batch_size=b), GpuTarget launch 'graph' vs the CUDA-graph timing and 'eager' "
            "vs the eager one (figures fitted on all rows: in-sample; the held-out check is "
            "gpu_fit.md); measured: PyTorch on a lent H100 80GB HBM3, median of 50 "
            "CUDA-event-timed forwards (benchmarks/gpu/time_minilm_cuda.py)",
        },
        table,
        ["layers", "precision", "batch", "launch", "predicted ms", "measured ms", "pred / meas"],
    )


if __name__ == "__main__":
    main()
