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
the 1-minute load average it was measured under, and the host and CPU it was measured on.

First use: `ensure_calibrated` (called as a search starts) calibrates when the runs folder has
no entry for this CPU and thread count: the same 31 graphs at a shorter timing budget
(`FIRST_USE_PROTOCOL`, 15-25 s on 2 cores), plus the memory bandwidth. `autoaccel calibrate`
redoes it with the full budget. `AUTOACCEL_CALIBRATION=<a cpu-local.json>` copies that file's
entry instead of timing one (identical machines; the test suite).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.errors import UserError
from autoaccel.evaluate.measure import MeasureConfig, measure_interleaved
from autoaccel.targets.base import GraphCost
from autoaccel.targets.calibration_file import (
    FORMAT,
    PROFILE_NAME,
    apply_calibration,
    calibrated_threads,
    calibration_entry,
    calibration_path,
    load_calibration,
    read_calibration_file,
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
    "FIRST_USE_PROTOCOL",
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
    "first_use_calibration",
    "fit",
    "load_calibration",
    "micro_suite",
    "predict_ms",
    "run_microbenchmarks",
]

CALIBRATION_PROTOCOL = MeasureConfig().scaled(0.4)
"""Timing budget per micro-benchmark: 31 graphs, ~25-35 s per thread count on 2 cores."""
FIRST_USE_PROTOCOL = MeasureConfig().scaled(0.15)
"""The first-use calibration's budget per micro-benchmark: the same graphs, 15-25 s in all."""
SEED_ENV = "AUTOACCEL_CALIBRATION"


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
    suite: str | None = None,
) -> dict[str, Any]:
    """Measure the memory bandwidth, time the micro-benchmarks with `threads` intra-op threads
    (default: the usable cores), fit the CPU model of this machine's derived profile to them,
    and store the result as this thread count's entry of `<runs_dir>/calibration/cpu-local.json`
    (other counts' entries are kept). `suite` names the run in the entry. Returns it."""
    import socket

    from autoaccel.machine import usable_cores
    from autoaccel.targets.calibration_microbenchmarks import copy_bandwidth
    from autoaccel.targets.local_cpu import TEMPLATE, local_profile, read_cpu_facts
    from autoaccel.targets.profile import Figure, load_profile

    threads = threads or usable_cores()
    load = os.getloadavg()[0]
    facts = read_cpu_facts()
    cache = (facts.cache_mb or 32.0) * 1e6
    gbps, where = copy_bandwidth(int(min(max(256 * 2**20, 8 * cache), facts.memory_gb * 1e9 / 8)))
    bandwidth = Figure(value=round(gbps, 2), source=where)
    profile = local_profile(load_profile(TEMPLATE), facts, bandwidth=bandwidth)
    samples = run_microbenchmarks(threads, cfg, quick=quick)
    result = fit(profile, samples)
    # other work on the machine slows the timings (2-thread ones most): keep the evidence
    result["load_avg_1min"] = round(max(load, os.getloadavg()[0]), 2)
    result["host"] = socket.gethostname()
    result["suite"] = suite or ("quick" if quick else "full")
    result["memory_bandwidth_gbps"] = bandwidth.value
    result["memory_bandwidth_source"] = bandwidth.source
    result["clock_ghz"] = facts.clock_ghz
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


def first_use_calibration(
    root: Path,
    threads: int | None = None,
    emit: Callable[[str, Any], None] | None = None,
    cfg: MeasureConfig = FIRST_USE_PROTOCOL,
    quick: bool = False,
) -> dict[str, Any]:
    """This machine's calibration for `threads` intra-op threads (default: the usable cores)
    in `<root>/calibration/`: the stored entry when one was measured on this CPU, else a
    first-use calibration, timed now (`cfg`; other workers of this runs folder wait on the
    measuring lock) or copied from `$AUTOACCEL_CALIBRATION`. Returns the entry."""
    from autoaccel.machine import usable_cores
    from autoaccel.workers import measure_lock

    threads = threads or usable_cores()
    say = emit or (lambda kind, payload: None)
    cpu = cpu_model_name()
    Path(root).mkdir(parents=True, exist_ok=True)
    with measure_lock(Path(root)):
        entry = calibration_entry(root, threads)
        if entry is not None and entry.get("cpu", cpu) == cpu:
            return entry
        seed = os.environ.get(SEED_ENV)
        if seed:
            copied = read_calibration_file(Path(seed), threads)
            if copied is None:
                raise UserError(f"{SEED_ENV}={seed}: no calibration entry in that file")
            entry = {**copied, "threads": threads, "copied_from": seed}
            store_calibration_entry(root, threads, entry)
            return entry
        say(
            "status",
            f"calibrating the cpu-local cost model on this machine ({threads} threads, "
            "first use, ~20 s; autoaccel calibrate redoes it in full)",
        )
        entry = calibrate(root, threads, cfg, quick=quick, suite="first use")
        say(
            "status",
            f"cpu-local calibrated: fit error (median) {entry['fit_mdape']:.0f} % over "
            f"{entry['n_samples']} micro-benchmarks, load average {entry['load_avg_1min']:g}",
        )
        return entry
