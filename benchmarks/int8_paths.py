"""MiniLM's int8 paths on OpenVINO: how close each stays to the fp32 model's vectors, and how
much of the matrix work it moves to int8 kernels.

Every row is autoaccel's own build of a recipe (`build_candidate`), run by OpenVINO with bf16
for what stays float, latency hint, 2 threads: the compatibility study's runtime. Quality is
the cosine to PyTorch eager fp32's vectors on the 200 reviews and the search half's words (the
study's `teacher_cosine` takes the lower) and on the held-out half's documents and words
(`vs_peers_compat`). Speed: OpenVINO's per-layer counters (matrix layers and the whole
profiled run, ms per inference) and p50 latency timed interleaved with eager in rounds.

    .venv/bin/python benchmarks/int8_paths.py --cache /tmp/vsp2-runs/cache [--rounds 6]

Writes benchmarks/results/int8-paths.{json,md}.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from _common import write  # benchmarks/ is run as a folder of scripts
from roofline import OV_MATRIX, ov_profile
from vs_peers_compat import held_out_agreement

from autoaccel.builder import build_candidate
from autoaccel.evaluate.measure import MeasureConfig, time_runs, warm_up
from autoaccel.evaluate.runners import open_runner
from autoaccel.techniques import Candidate, describe_recipe
from autoaccel.workloads.minilm import MiniLMWorkload

OV = {
    "runtime.backend": "openvino",
    "runtime.ov_precision": "bf16",
    "runtime.ov_hint": "latency",
    "runtime.intra_op_threads": 2,
}
RECIPES = {
    "float (bf16)": {"quantize.mode": "none"},
    "int8 dynamic per-channel (ORT)": {
        "quantize.mode": "int8_dynamic",
        "quantize.per_channel": True,
    },
    "int8 static QDQ minmax per-channel (ORT)": {
        "quantize.mode": "int8_static",
        "quantize.per_channel": True,
        "quantize.calibration": "minmax",
    },
    "int8 NNCF": {"quantize.mode": "int8_nncf"},
    "int8 NNCF on the fused graph": {"quantize.mode": "int8_nncf", "compile.fusion": True},
}


def quality(rows: dict[str, Candidate], workload: MiniLMWorkload) -> dict[str, dict]:
    """Cosine to eager on the study's texts (reviews, search words) and the held-out texts."""
    held = held_out_agreement({k: (c, "") for k, c in rows.items()}, workload, "eager")
    out = {}
    for name, candidate in rows.items():
        scores = workload.evaluate(open_runner(candidate, workload.input_names))
        out[name] = {
            "reviews": scores["teacher_cosine_reviews"],
            "search_words": scores["teacher_cosine_words"],
            "held_out_documents": held[name]["lee_documents"],
            "held_out_words": held[name]["words"],
            "task_quality": scores["task_quality"],
        }
    return out


def timing(
    rows: dict[str, Candidate], workload: MiniLMWorkload, rounds: int, batch: int = 1
) -> dict:
    """p50 / p90 of every row at `batch`, 0.5-s blocks interleaved in `rounds` rounds."""
    inputs = workload.latency_inputs(batch)
    runners = {n: open_runner(c, workload.input_names) for n, c in rows.items()}
    calls = {n: (lambda r=r: r(inputs)) for n, r in runners.items()}
    for call in calls.values():
        warm_up(call, MeasureConfig())
    samples: dict[str, list[int]] = {n: [] for n in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name] += time_runs(call, 5, 0.5, 10**6)
    return {
        n: {
            "p50_ms": float(np.percentile(np.asarray(s) / 1e6, 50)),
            "p90_ms": float(np.percentile(np.asarray(s) / 1e6, 90)),
            "runs": len(s),
        }
        for n, s in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="a runs folder's cache")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    load_before = list(os.getloadavg())
    workload = MiniLMWorkload(args.cache, split="search")
    rows: dict[str, Candidate] = {
        "eager": Candidate(backend="torch", torch_model=workload.torch_model())
    }
    recipes = {name: {**OV, **recipe} for name, recipe in RECIPES.items()}
    for name, recipe in recipes.items():
        rows[name] = build_candidate(recipe, workload, args.cache)
    inputs = workload.latency_inputs(1)
    profiles = {n: ov_profile(rows[n], inputs, 30) for n in recipes}
    matrix = {
        n: {
            "matrix_ms": sum(r["ms"] for r in p["by_type"] if r["op_type"] in OV_MATRIX),
            "matrix_int8_ms": sum(
                r["ms"]
                for r in p["by_type"]
                if r["op_type"] in OV_MATRIX and r["exec_precision"] in ("i8", "u8")
            ),
            "profiled_run_ms": p["profiled_run_ms"],
        }
        for n, p in profiles.items()
    }
    scores = quality(rows, workload)
    times = timing(rows, workload, args.rounds)
    eager = times["eager"]["p50_ms"]
    table = []
    for name in recipes:
        q, m, t = scores[name], matrix[name], times[name]
        table.append(
            [
                name,
                f"{q['reviews']:.4f} / {q['search_words']:.4f}",
                f"{q['held_out_documents']:.4f} / {q['held_out_words']:.4f}",
                f"{m['matrix_ms']:.2f} ({m['matrix_int8_ms']:.2f} int8)",
                f"{m['profiled_run_ms']:.2f}",
                f"{t['p50_ms']:.2f} / {t['p90_ms']:.2f}",
                f"{eager / t['p50_ms']:.2f}x",
            ]
        )
    header = [
        "build (OpenVINO, bf16 where float)",
        "cosine: reviews / search words",
        "held-out: documents / words",
        "matrix layers ms (of which int8)",
        "profiled run ms",
        "p50 / p90 ms, batch 1",
        "vs eager",
    ]
    payload = {
        "recipes": {n: {"recipe": r, "text": describe_recipe(r)} for n, r in recipes.items()},
        "notes": {n: list(rows[n].notes) for n in recipes},
        "quality": scores,
        "profile": matrix,
        "timing": times,
        "rounds": args.rounds,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
    }
    write("int8-paths", payload, table, header)


if __name__ == "__main__":
    main()
