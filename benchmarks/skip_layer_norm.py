"""The two studies' picks with and without ONNX Runtime's SkipLayerNormalization
(`compile.skip_layer_norm`): the same build, the residual Add and LayerNorm fused or apart.

Each study's recommendation (`vs_peers.autoaccel_row`) is rebuilt with `compile.skip_layer_norm`
True and False and timed interleaved with PyTorch eager fp32 at batch 1 and 8, in rounds of
0.5-s blocks; quality as `int8_paths.quality` (cosine to eager on the study's texts and the
held-out ones, task_quality on the search half).

    .venv/bin/python benchmarks/skip_layer_norm.py --runs-dir /tmp/vsp-runs [--rounds 10]

Writes benchmarks/results/skip-layer-norm.{json,md}.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from _common import write  # benchmarks/ is run as a folder of scripts
from int8_paths import quality, timing
from vs_peers import autoaccel_row

from autoaccel.builder import build_candidate
from autoaccel.techniques import Candidate, describe_recipe

STUDIES = ("minilm-search-default", "minilm-search-default-teacher_cosine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    load_before = list(os.getloadavg())
    rows: dict[str, Candidate] = {}
    recipes: dict[str, dict] = {}
    workload = None
    for study in STUDIES:
        info, _, workload = autoaccel_row(args.runs_dir, study)
        for apart in (False, True):
            name = (
                f"{study} trial {info['trial']}, {'Add + LayerNorm' if apart else 'SkipLayerNorm'}"
            )
            recipes[name] = {**info["recipe"], "compile.skip_layer_norm": not apart}
            rows[name] = build_candidate(recipes[name], workload, args.runs_dir / "cache")
    rows = {"eager": Candidate(backend="torch", torch_model=workload.torch_model()), **rows}
    scores = quality(rows, workload)
    times = {b: timing(rows, workload, args.rounds, batch=b) for b in (1, 8)}
    table = []
    for name in recipes:
        q = scores[name]
        cells = [name, f"{q['task_quality']:.4f}"]
        cells.append(f"{q['reviews']:.4f} / {q['search_words']:.4f} / {q['held_out_words']:.4f}")
        for b in (1, 8):
            t, eager = times[b][name], times[b]["eager"]["p50_ms"]
            cells.append(f"{t['p50_ms']:.2f} / {t['p90_ms']:.2f} ({eager / t['p50_ms']:.2f}x)")
        table.append(cells)
    header = [
        "pick (rebuilt from its recipe)",
        "task_quality (search half)",
        "cosine to eager: reviews / search words / held-out words",
        "batch 1 p50 / p90 ms (vs eager)",
        "batch 8 p50 / p90 ms (vs eager)",
    ]
    payload = {
        "recipes": {n: {"recipe": r, "text": describe_recipe(r)} for n, r in recipes.items()},
        "quality": scores,
        "timing": times,
        "eager_p50_ms": {b: times[b]["eager"]["p50_ms"] for b in (1, 8)},
        "rounds": args.rounds,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
    }
    write("skip-layer-norm", payload, table, header)


if __name__ == "__main__":
    main()
