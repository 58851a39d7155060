"""Compression that removes work, measured: structured pruning on digits-cnn (batch 64) and
distilled MiniLM students against the 6-layer teacher (batch 1 x 128 tokens), each pair timed
interleaved in the same runtime and precision, plus the cost of reusing a cached student.

    .venv/bin/python benchmarks/compression.py [--runs-dir runs] [--steps 300]

Writes benchmarks/results/compression.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import onnx
from _common import write  # benchmarks/ is run as a folder of scripts
from onnx import numpy_helper

from autoaccel.builder import build_candidate
from autoaccel.evaluate import evaluate_candidate
from autoaccel.evaluate.measure import MeasureConfig, measure_interleaved
from autoaccel.evaluate.runners import open_runner
from autoaccel.workloads import load_workload


def onnx_weights(path: Path) -> int:
    model = onnx.load(str(path))
    return int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer))


def timed_pair(workload, candidates: dict, batch: int, seconds: float) -> dict:
    inputs = workload.latency_inputs(batch)
    fns = {}
    for name, cand in candidates.items():
        predict = open_runner(cand, workload.input_names)
        fns[name] = lambda p=predict: p(inputs)
    return measure_interleaved(fns, MeasureConfig().scaled(seconds), rounds=6)


def digits(cache: Path, seconds: float) -> tuple[dict, list[list[str]]]:
    w = load_workload("digits-cnn", cache)
    ort = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}
    recipes = {
        "dense fp32": ort,
        "structured 50% + 300 fine-tune steps": {
            **ort,
            "prune.mode": "structured",
            "prune.amount": 0.5,
            "prune.finetune_steps": 300,
        },
    }
    cands = {k: build_candidate(r, w, cache) for k, r in recipes.items()}
    lat = timed_pair(w, cands, batch=64, seconds=seconds)
    rows, out = [], {}
    for name, cand in cands.items():
        acc = evaluate_candidate(cand, w, MeasureConfig().scaled(0.05)).quality["accuracy"]
        out[name] = {
            "weights": onnx_weights(cand.onnx_path),
            "accuracy": acc,
            "latency_b64_ms": lat[name].median_ms,
            "p90_ms": lat[name].p90_ms,
            "runs": lat[name].n_runs,
            "recipe": recipes[name],
        }
        rows.append(
            [
                "digits-cnn",
                name,
                f"{out[name]['weights']:,}",
                f"{acc:.4f}",
                f"{lat[name].median_ms:.3f} / {lat[name].p90_ms:.3f} (b64)",
                "",
            ]
        )
    base = out["dense fp32"]["latency_b64_ms"]
    for r, name in zip(rows, cands, strict=True):
        r[-1] = f"{base / out[name]['latency_b64_ms']:.2f}x"
    return out, rows


def minilm(cache: Path, seconds: float, steps: int) -> tuple[dict, list[list[str]]]:
    w = load_workload("minilm", cache)
    ort = {
        "runtime.backend": "onnxruntime",
        "runtime.intra_op_threads": 2,
        "compile.graph_level": "all",
        "compile.fusion": True,
    }
    recipes = {"teacher, 6 layers": ort}
    for layers in (3, 2):
        recipes[f"student, {layers} layers"] = {
            **ort,
            "distill.mode": "student",
            "distill.layers": layers,
            "distill.width": 1.0,
            "distill.steps": steps,
        }
    cands, build_s = {}, {}
    for name, recipe in recipes.items():
        t0 = time.perf_counter()
        cands[name] = build_candidate(recipe, w, cache)
        build_s[name] = (time.perf_counter() - t0, cands[name].train_seconds)
    # reuse: the same student with a different downstream step must not train again
    t0 = time.perf_counter()
    reused = build_candidate(
        {**recipes["student, 3 layers"], "quantize.mode": "int8_dynamic"}, w, cache
    )
    reuse = {"build_seconds": time.perf_counter() - t0, "train_seconds": reused.train_seconds}
    lat = timed_pair(w, cands, batch=1, seconds=seconds)
    rows, out = [], {}
    teacher_ms = lat["teacher, 6 layers"].median_ms
    for name, cand in cands.items():
        q = evaluate_candidate(cand, w, MeasureConfig().scaled(0.05)).quality
        out[name] = {
            "quality": q,
            "latency_ms": lat[name].median_ms,
            "p90_ms": lat[name].p90_ms,
            "runs": lat[name].n_runs,
            "speedup_vs_teacher": teacher_ms / lat[name].median_ms,
            "build_seconds": build_s[name][0],
            "train_seconds": build_s[name][1],
            "recipe": recipes[name],
        }
        rows.append(
            [
                "minilm",
                name,
                f"{onnx_weights(cand.onnx_path):,}",
                f"{q['task_quality']:.4f} (cos {q['teacher_cosine']:.3f})",
                f"{lat[name].median_ms:.2f} / {lat[name].p90_ms:.2f}",
                f"{teacher_ms / lat[name].median_ms:.2f}x",
            ]
        )
    out["cached student reuse"] = {
        **reuse,
        "first_train_seconds": build_s["student, 3 layers"][1],
        "share_of_first_training": reuse["build_seconds"]
        / max(build_s["student, 3 layers"][1], 1e-9),
    }
    return out, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--steps", type=int, default=300, help="distillation steps per student")
    parser.add_argument("--seconds", type=float, default=6.0, help="timing budget per pair")
    args = parser.parse_args()
    cache = (args.runs_dir / "cache").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    d_out, d_rows = digits(cache, args.seconds)
    m_out, m_rows = minilm(cache, args.seconds, args.steps)
    write(
        "compression",
        {
            "digits_cnn": d_out,
            "minilm": m_out,
            "protocol": "ONNX Runtime fp32 (fused for MiniLM), pairs timed "
            "interleaved in 6 rounds, median / p90",
        },
        d_rows + m_rows,
        ["workload", "candidate", "ONNX weights", "quality", "p50 / p90 ms", "speedup"],
    )
    r = m_out["cached student reuse"]
    print(
        f"cached student reuse: {r['build_seconds']:.1f} s to rebuild vs "
        f"{r['first_train_seconds']:.1f} s of training ({r['share_of_first_training']:.1%})"
    )


if __name__ == "__main__":
    main()
