"""MiniLM's int8 dynamic with its most sensitive matrix products kept in fp32
(`quantize.float_share`): how close each stays to the fp32 model's vectors, and how fast.

Every row is autoaccel's own build (`build_candidate`) on ONNX Runtime, 2 threads, graph level
all, with and without the transformer fusions. Quality is the cosine to PyTorch eager fp32's
vectors on the 200 reviews and the search half's words (the study's `teacher_cosine` takes the
lower) and on the held-out half's documents and words (`vs_peers_compat`). Speed: p50 / p90
at batch 1, timed interleaved with eager and ORT fp32 in rounds of 0.5-s blocks.

    .venv/bin/python benchmarks/int8_mixed.py --cache /tmp/vsp4-runs/cache [--rounds 10]

Writes benchmarks/results/int8-mixed.{json,md}.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from _common import write  # benchmarks/ is run as a folder of scripts
from int8_paths import quality, timing

from autoaccel.builder import build_candidate
from autoaccel.techniques import Candidate, describe_recipe
from autoaccel.workloads.minilm import MiniLMWorkload

ORT = {
    "runtime.backend": "onnxruntime",
    "runtime.intra_op_threads": 2,
    "compile.graph_level": "all",
}
INT8 = {"quantize.mode": "int8_dynamic", "quantize.per_channel": True}
RECIPES = {
    "fp32": {"quantize.mode": "none"},
    **{
        f"int8 dynamic, {share:.0%} in fp32{', fused' if fused else ''}": {
            **INT8,
            "quantize.float_share": share,
            "compile.fusion": fused,
        }
        for fused in (False, True)
        for share in (0.0, 0.15, 0.3)
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="a runs folder's cache")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    load_before = list(os.getloadavg())
    workload = MiniLMWorkload(args.cache, split="search")
    rows: dict[str, Candidate] = {
        "eager": Candidate(backend="torch", torch_model=workload.torch_model())
    }
    recipes = {name: {**ORT, **recipe} for name, recipe in RECIPES.items()}
    for name, recipe in recipes.items():
        rows[name] = build_candidate(recipe, workload, args.cache)
    scores = quality(rows, workload)
    times = timing(rows, workload, args.rounds)
    eager, fp32 = times["eager"]["p50_ms"], times["fp32"]["p50_ms"]
    table = []
    for name in recipes:
        q, t = scores[name], times[name]
        table.append(
            [
                name,
                f"{q['reviews']:.4f} / {q['search_words']:.4f}",
                f"{q['held_out_documents']:.4f} / {q['held_out_words']:.4f}",
                "yes" if min(q[k] for k in q if k != "task_quality") >= 0.99 else "no",
                f"{t['p50_ms']:.2f} / {t['p90_ms']:.2f}",
                f"{eager / t['p50_ms']:.2f}x",
                f"{fp32 / t['p50_ms']:.2f}x",
            ]
        )
    header = [
        "build (ONNX Runtime, 2 threads, graph level all)",
        "cosine: reviews / search words",
        "held-out: documents / words",
        "all >= 0.99",
        "p50 / p90 ms, batch 1",
        "vs eager",
        "vs ORT fp32",
    ]
    payload = {
        "recipes": {n: {"recipe": r, "text": describe_recipe(r)} for n, r in recipes.items()},
        "notes": {n: list(rows[n].notes) for n in recipes},
        "quality": scores,
        "timing": times,
        "rounds": args.rounds,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
    }
    write("int8-mixed", payload, table, header)


if __name__ == "__main__":
    main()
