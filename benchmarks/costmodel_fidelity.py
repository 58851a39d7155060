"""How well the calibrated cpu-local cost model ranks and predicts real candidates: build
~40 distinct local candidates (digits-cnn, minilm at 1 x 128 tokens, seed-mlp; quantization,
fusion, graph level, intra-op threads, untrained distilled students, structured pruning),
predict each one's batch-1 latency with `estimate_candidate` on the calibrated cpu-local
target, then measure it by the protocol, and report Spearman's rank correlation and the
median absolute percentage error (MdAPE), overall and per workload.

    .venv/bin/python benchmarks/costmodel_fidelity.py [--runs-dir /tmp/fidelity-runs]
        [--cache-dir /tmp/fidelity-cache] [--quick] [--recalibrate]

Calibration (`autoaccel.targets.calibrate`) is per intra-op thread count; a count missing from
`<runs-dir>/calibration/cpu-local.json` is calibrated first. Writes
benchmarks/results/costmodel_fidelity.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import write  # benchmarks/ is run as a folder of scripts
from scipy.stats import spearmanr

from autoaccel.builder import build_candidate
from autoaccel.evaluate.measure import MeasureConfig, measure_interleaved
from autoaccel.evaluate.runners import open_runner
from autoaccel.projection import estimate_candidate
from autoaccel.targets import Plan, load_targets, make_target
from autoaccel.targets.calibrate import FITTED, apply_calibration, calibrate, calibrated_threads
from autoaccel.workloads import load_workload

ORT = {"runtime.backend": "onnxruntime", "compile.graph_level": "all"}
INT8_DYNAMIC = {"quantize.mode": "int8_dynamic", "quantize.per_channel": True}
INT8_STATIC = {"quantize.mode": "int8_static", "quantize.per_channel": True}


def student(layers: int, width: float) -> dict[str, Any]:
    """An untrained student: same graph, same latency as a trained one, no training time."""
    return {
        "distill.mode": "student",
        "distill.layers": layers,
        "distill.width": width,
        "distill.steps": 0,
    }


def pruned(amount: float) -> dict[str, Any]:
    return {"prune.mode": "structured", "prune.amount": amount, "prune.finetune_steps": 0}


def recipes(quick: bool) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """(description, recipe) per workload; every recipe names its intra-op threads."""

    def r(threads: int, **parts: Any) -> dict[str, Any]:
        merged = {**ORT, "runtime.intra_op_threads": threads}
        for part in parts.values():
            merged.update(part)
        return merged

    digits = [
        ("fp32", r(2)),
        ("fp32, 1 thread", r(1)),
        ("graph level disable", r(2, g={"compile.graph_level": "disable"})),
        ("graph level basic", r(2, g={"compile.graph_level": "basic"})),
        ("int8 dynamic", r(2, q=INT8_DYNAMIC)),
        ("int8 dynamic, 1 thread", r(1, q=INT8_DYNAMIC)),
        ("int8 static", r(2, q=INT8_STATIC)),
        ("int8 static, 1 thread", r(1, q=INT8_STATIC)),
        ("int8 static per-tensor", r(2, q={**INT8_STATIC, "quantize.per_channel": False})),
        ("pruned 25%", r(2, p=pruned(0.25))),
        ("pruned 50%", r(2, p=pruned(0.5))),
        ("pruned 75%", r(2, p=pruned(0.75))),
        ("pruned 75%, 1 thread", r(1, p=pruned(0.75))),
        ("pruned 50% + int8 static", r(2, p=pruned(0.5), q=INT8_STATIC)),
    ]
    fused = {"compile.fusion": True}
    minilm = [
        ("teacher fp32", r(2)),
        ("teacher fp32, 1 thread", r(1)),
        ("teacher fp32 fused", r(2, f=fused)),
        ("teacher fp32 fused, 1 thread", r(1, f=fused)),
        ("teacher graph level disable", r(2, g={"compile.graph_level": "disable"})),
        ("teacher graph level basic", r(2, g={"compile.graph_level": "basic"})),
        ("teacher int8 dynamic", r(2, q=INT8_DYNAMIC)),
        ("teacher int8 dynamic fused", r(2, f=fused, q=INT8_DYNAMIC)),
        ("teacher int8 dynamic fused, 1 thread", r(1, f=fused, q=INT8_DYNAMIC)),
        ("teacher int8 static fused", r(2, f=fused, q=INT8_STATIC)),
    ]
    for layers, width in [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (5, 1.0)]:
        minilm.append(
            (f"student {layers}L w{width:g} fused", r(2, s=student(layers, width), f=fused))
        )
    for layers, width in [(2, 0.5), (4, 0.5), (6, 0.5), (3, 0.75), (6, 0.75)]:
        minilm.append(
            (f"student {layers}L w{width:g} fused", r(2, s=student(layers, width), f=fused))
        )
    minilm += [
        ("student 3L w1 fused, 1 thread", r(1, s=student(3, 1.0), f=fused)),
        ("student 2L w1 int8 dynamic fused", r(2, s=student(2, 1.0), f=fused, q=INT8_DYNAMIC)),
        ("student 4L w0.5 int8 dynamic", r(2, s=student(4, 0.5), q=INT8_DYNAMIC)),
        ("student 3L w0.75 unfused", r(2, s=student(3, 0.75))),
    ]
    seed = [
        ("fp32", r(2)),
        ("fp32, 1 thread", r(1)),
        ("int8 dynamic", r(2, q=INT8_DYNAMIC)),
        ("int8 static", r(2, q=INT8_STATIC)),
    ]
    if quick:
        digits = [digits[0], digits[4], digits[6], digits[11]]
        minilm = [minilm[2], minilm[7], minilm[11], minilm[15]]
        seed = seed[:1]
    return {"digits-cnn": digits, "minilm": minilm, "seed-mlp": seed}


def calibrated_targets(runs_dir: Path, threads: set[int], recalibrate: bool) -> dict[int, Any]:
    """The cpu-local target per thread count, calibrating the counts not yet in the file."""
    have = set() if recalibrate else calibrated_threads(runs_dir)
    for count in sorted(threads - have):
        t0 = time.perf_counter()
        fitted = calibrate(runs_dir, threads=count)
        rates = {k: v for k, v in fitted.items() if k in FITTED or "." in k}
        print(
            f"calibrated {count} thread(s) in {time.perf_counter() - t0:.0f} s: {rates}, "
            f"fit MdAPE {fitted['fit_mdape']} % on {fitted['n_samples']} micro-benchmarks"
        )
    profile = load_targets(["cpu-local"])["cpu-local"].profile
    return {t: make_target(apply_calibration(profile, runs_dir, threads=t)) for t in threads}


def run_workload(
    name: str, items, cache: Path, targets, plain, seconds: float
) -> list[dict[str, Any]]:
    """Build, predict (calibrated and plain profile) and measure one workload's candidates;
    the measurements are interleaved in rounds, so drift on the shared machine hits all."""
    workload = load_workload(name, cache)
    inputs = workload.latency_inputs(1)
    rows, fns = [], {}
    for desc, recipe in items:
        t0 = time.perf_counter()
        cand = build_candidate(recipe, workload, cache)
        threads = int(recipe["runtime.intra_op_threads"])
        est, graph = estimate_candidate(cand.onnx_path, workload, targets[threads], Plan())
        uncalibrated, _ = estimate_candidate(cand.onnx_path, workload, plain, Plan())
        predict = open_runner(cand, workload.input_names)
        fns[desc] = lambda p=predict: p(inputs)
        rows.append(
            {
                "workload": name,
                "candidate": desc,
                "recipe": recipe,
                "threads": threads,
                "predicted_ms": est.latency_ms,
                "uncalibrated_ms": uncalibrated.latency_ms,
                "breakdown_ms": est.breakdown_ms,
                "nodes": len(graph.nodes),
                "gflop": graph.flops / 1e9,
                "weight_mb": graph.weight_bytes / 1e6,
                "build_s": time.perf_counter() - t0,
            }
        )
        print(f"  built {name} / {desc} ({rows[-1]['build_s']:.0f} s)", flush=True)
    lat = measure_interleaved(fns, MeasureConfig().scaled(seconds), rounds=4)
    for row in rows:
        m = lat[row["candidate"]]
        row.update(measured_ms=m.median_ms, p90_ms=m.p90_ms, runs=m.n_runs)
        row["error_pct"] = 100 * (row["predicted_ms"] - m.median_ms) / m.median_ms
    return rows


def scores(rows: list[dict[str, Any]], key: str = "predicted_ms") -> dict[str, float]:
    pred = [r[key] for r in rows]
    meas = [r["measured_ms"] for r in rows]
    rho = round(float(spearmanr(pred, meas).statistic), 4) if len(rows) > 2 else None
    mdape = float(np.median([abs(p / m - 1) * 100 for p, m in zip(pred, meas, strict=True)]))
    return {"n": len(rows), "spearman": rho, "mdape_pct": round(mdape, 2)}


def rho(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summarize(rows: list[dict[str, Any]], workloads, key: str) -> dict[str, Any]:
    """Scores over all candidates and per workload; the overall rank correlation is helped by
    the 1000x between workloads, so the mean of the per-workload ones is reported too."""
    out = {"all": scores(rows, key)}
    out |= {w: scores([r for r in rows if r["workload"] == w], key) for w in workloads}
    per = [out[w]["spearman"] for w in workloads if out[w]["n"] >= 5]
    out["mean_within_workload_spearman"] = round(float(np.mean(per)), 4) if per else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/fidelity-runs"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/fidelity-cache"))
    parser.add_argument("--quick", action="store_true", help="a dozen candidates (smoke run)")
    parser.add_argument("--recalibrate", action="store_true", help="calibrate even if stored")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per candidate")
    args = parser.parse_args()
    start, load = time.perf_counter(), os.getloadavg()[0]
    cache = args.cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    plan = recipes(args.quick)
    threads = {int(r["runtime.intra_op_threads"]) for items in plan.values() for _, r in items}
    targets = calibrated_targets(args.runs_dir, threads, args.recalibrate)
    plain = load_targets(["cpu-local"])["cpu-local"]
    rows: list[dict[str, Any]] = []
    for name, items in plan.items():
        rows += run_workload(name, items, cache, targets, plain, args.seconds)
    summary = summarize(rows, plan, "predicted_ms")
    before = summarize(rows, plan, "uncalibrated_ms")
    calibration = {t: dict(target.profile.calibrated or {}) for t, target in targets.items()}
    for entry in calibration.values():
        entry.pop("samples", None)
    table = [
        [
            r["workload"],
            r["candidate"],
            str(r["threads"]),
            str(r["nodes"]),
            f"{r['predicted_ms']:.3f}",
            f"{r['measured_ms']:.3f}",
            f"{r['error_pct']:+.0f}",
            f"{r['uncalibrated_ms']:.3f}",
        ]
        for r in rows
    ]
    for key in ("all", *plan):
        s, b = summary[key], before[key]
        table.append(
            [
                f"**{key}**",
                f"n={s['n']}",
                "",
                "",
                f"Spearman {rho(s['spearman'])}",
                "",
                f"MdAPE {s['mdape_pct']:.0f}",
                f"Spearman {rho(b['spearman'])}, MdAPE {b['mdape_pct']:.0f}",
            ]
        )
    write(
        "costmodel_fidelity",
        {
            "summary": summary,
            "summary_uncalibrated": before,
            "calibration_by_threads": calibration,
            "seconds": time.perf_counter() - start,
            "load_avg_1min": {"start": load, "end": os.getloadavg()[0]},
            "quick": args.quick,
            "protocol": "batch 1 (minilm 1 x 128 tokens); predicted: estimate_candidate on the "
            "calibrated cpu-local target for the recipe's thread count, Plan(); measured: "
            "open_runner + measure_interleaved per workload (4 rounds), median",
            "candidates": rows,
        },
        table,
        [
            "workload",
            "candidate",
            "threads",
            "nodes",
            "predicted ms",
            "measured ms",
            "error %",
            "uncalibrated ms",
        ],
    )
    for key in ("all", *plan):
        s, b = summary[key], before[key]
        print(
            f"{key}: n={s['n']} Spearman {rho(s['spearman'])} MdAPE {s['mdape_pct']:.1f} % "
            f"(uncalibrated profile: {rho(b['spearman'])}, {b['mdape_pct']:.1f} %)"
        )
    print(f"mean within-workload Spearman {summary['mean_within_workload_spearman']}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
