"""Calibration of the cpu-local cost model: time small ONNX graphs here, fit the CPU model's
measured rates to them, and keep the result in `<runs>/calibration/cpu-local.json`.

The micro-benchmarks (`micro_suite`, 31 graphs) are built with onnx.helper: fp32 MatMul from
1x64x64 to 512x1024x1024 and two Convs (compute-bound), element-wise Add from 1e3 to 3e7
elements (memory-bound, from cache to DRAM), chains of 16 and 64 tiny Adds (per-op dispatch),
int8 products (MatMulInteger, the dynamic-quantization patterns of MatMul and Conv, a QDQ
MatMul), the vector ops of a transformer (Softmax, LayerNormalization, erf-GELU, Transpose) and
the ONNX Runtime contrib ops fusion produces (Attention, SkipLayerNormalization, BiasGelu).
Each is opened like a candidate (`open_runner`), timed by the protocol
(`measure_interleaved`) and analysed by `autoaccel.targets.graph.analyze`, so the measured
time and the modelled one count the same nodes. `fit` then picks the rates of the contract in
`autoaccel.targets.cpu` (compute_eta, vector_eta, memory_eta, cache_eta, overhead_us,
run_overhead_us, plus an op type's own compute_eta / vector_eta where it runs far from the
rest) that minimise the squared error of log(time).

Layout: `autoaccel.targets.calibration_microbenchmarks` builds the graphs,
`autoaccel.targets.calibration_fit` fits the rates, `autoaccel.targets.calibration_file` stores
them and applies them to the cpu-local profile; this module times the graphs and runs the
whole calibration. The names of those modules stay importable from here.

Intra-op threads change compute-bound ops ~1.9x here and the cost model has no notion of
threads, so a calibration is per thread count: the file keeps one entry per count (merged on
write) and `apply_calibration` picks the one a session runs with (the nearest one calibrated).
Other work on this shared machine slows the timings, 2-thread ones most; each entry records
the 1-minute load average it was measured under.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.evaluate.measure import MeasureConfig, measure_interleaved
from autoaccel.targets.base import GraphCost
from autoaccel.targets.calibration_file import (
    FORMAT,
    PROFILE_NAME,
    apply_calibration,
    calibrated_threads,
    calibration_path,
    load_calibration,
    store_calibration_entry,
)
from autoaccel.targets.calibration_fit import (
    FITTED,
    calibrated_profile,
    cpu_model_name,
    fit,
    is_rate_key,
    predict_ms,
)
from autoaccel.targets.calibration_microbenchmarks import Micro, micro_suite

__all__ = [
    "CALIBRATION_PROTOCOL",
    "FITTED",
    "FORMAT",
    "PROFILE_NAME",
    "Micro",
    "apply_calibration",
    "calibrate",
    "calibrated_profile",
    "calibrated_threads",
    "calibration_path",
    "cpu_model_name",
    "fit",
    "load_calibration",
    "micro_suite",
    "predict_ms",
    "run_microbenchmarks",
]

CALIBRATION_PROTOCOL = MeasureConfig().scaled(0.4)
"""Timing budget per micro-benchmark: 31 graphs, ~15-20 s per thread count on 2 cores."""


def run_microbenchmarks(
    threads: int, cfg: MeasureConfig = CALIBRATION_PROTOCOL, quick: bool = False
) -> list[dict[str, Any]]:
    """Time each micro-benchmark graph here and analyse it.

    Each sample: name, kind, threads, measured_ms (median), p90_ms, n_runs and graph (the
    `GraphCost` of the same file). Sessions are opened like a candidate's (`open_runner`:
    graph level all, sequential, `threads` intra-op threads) and timed interleaved.
    """
    import onnx

    from autoaccel.evaluate.runners import open_runner
    from autoaccel.targets.graph import analyze
    from autoaccel.techniques import Candidate

    rng = np.random.default_rng(0)
    suite = micro_suite(quick)
    graphs: dict[str, GraphCost] = {}
    fns: dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory(prefix="autoaccel-calibrate-") as tmp:
        for i, micro in enumerate(suite):
            model, feeds = micro.build(rng)
            path = Path(tmp) / f"micro{i}.onnx"
            onnx.save(model, str(path))
            graphs[micro.name] = analyze(path, {k: v.shape for k, v in feeds.items()})
            session = {"intra_op_threads": threads, "graph_level": "all"}
            candidate = Candidate(backend="onnxruntime", onnx_path=path, session=session)
            predict = open_runner(candidate, tuple(feeds))
            fns[micro.name] = lambda p=predict, f=feeds: p(f)
        latencies = measure_interleaved(fns, cfg, rounds=4)
    return [
        {
            "name": micro.name,
            "kind": micro.kind,
            "threads": threads,
            "measured_ms": latencies[micro.name].median_ms,
            "p90_ms": latencies[micro.name].p90_ms,
            "n_runs": latencies[micro.name].n_runs,
            "graph": graphs[micro.name],
        }
        for micro in suite
    ]


def calibrate(
    runs_dir: Path,
    threads: int | None = None,
    cfg: MeasureConfig = CALIBRATION_PROTOCOL,
    quick: bool = False,
) -> dict[str, Any]:
    """Time the micro-benchmarks with `threads` intra-op threads (default: the usable cores),
    fit the CPU model to them, and store the result as this thread count's entry of
    `<runs_dir>/calibration/cpu-local.json` (other counts' entries are kept). Returns it."""
    from autoaccel.machine import usable_cores
    from autoaccel.targets.profile import PROFILES_DIR, load_profile

    threads = threads or usable_cores()
    profile = load_profile(PROFILES_DIR / f"{PROFILE_NAME}.yaml")
    load = os.getloadavg()[0]
    samples = run_microbenchmarks(threads, cfg, quick=quick)
    result = fit(profile, samples)
    # other work on the machine slows the timings (2-thread ones most): keep the evidence
    result["load_avg_1min"] = round(max(load, os.getloadavg()[0]), 2)
    fitted = calibrated_profile(profile, {k: v for k, v in result.items() if is_rate_key(k)})
    result["samples"] = [
        {
            "name": s["name"],
            "kind": s["kind"],
            "measured_ms": round(s["measured_ms"], 5),
            "predicted_ms": round(predict_ms(fitted, s["graph"]), 5),
            "n_runs": s["n_runs"],
        }
        for s in samples
    ]
    store_calibration_entry(runs_dir, threads, result)
    return result
