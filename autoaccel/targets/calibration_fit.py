"""Fitting the CPU cost model's measured rates to timed micro-benchmarks.

`fit` picks the rates of the contract in `autoaccel.targets.cpu` (compute_eta, vector_eta,
memory_eta, cache_eta, overhead_us, run_overhead_us, plus an op type's own compute_eta /
vector_eta where it runs far from the rest) that minimise the squared error of log(time)
between the samples `autoaccel.targets.calibrate.run_microbenchmarks` measured and the CPU
model's prediction for the same analysed graphs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.targets.base import GraphCost, Plan
from autoaccel.targets.cpu import CpuTarget
from autoaccel.targets.profile import HardwareProfile

FITTED = ("compute_eta", "vector_eta", "memory_eta", "cache_eta", "overhead_us", "run_overhead_us")
"""The machine-wide rates `fit` always writes (see `autoaccel.targets.cpu` for each)."""
_START = (0.5, 0.1, 1.0, 3.0, 0.5, 5.0)
_BOUNDS = (1e-3, 1e3)


def is_rate_key(key: str) -> bool:
    """A key `autoaccel.targets.cpu` reads as a measured rate (machine-wide or per op type)."""
    return key in FITTED or key.split(".")[0] in ("compute_eta", "vector_eta") and "." in key


def calibrated_profile(profile: HardwareProfile, values: dict[str, float]) -> HardwareProfile:
    return profile.model_copy(update={"calibrated": {**(profile.calibrated or {}), **values}})


def predict_ms(profile: HardwareProfile, graph: GraphCost) -> float:
    """The CPU model's latency of `graph` as analysed (its first dim is the batch, so the
    plan's batch is the graph's own: nothing is rescaled)."""
    return CpuTarget(profile).estimate(graph, Plan(batch_size=graph.batch_size)).latency_ms


def _own_op(graph: GraphCost) -> str | None:
    """The per-op key a sample can fit: its only matrix op type, else its only op type that
    does arithmetic; None when several share the work."""
    matrix = {n.op_type for n in graph.nodes if n.macs}
    vector = {n.op_type for n in graph.nodes if n.flops and not n.macs}
    if len(matrix) == 1:
        return f"compute_eta.{matrix.pop()}"
    return f"vector_eta.{vector.pop()}" if not matrix and len(vector) == 1 else None


def _least_squares(
    profile: HardwareProfile,
    samples: Sequence[dict[str, Any]],
    keys: Sequence[str],
    start: Sequence[float],
    fixed: dict[str, float],
) -> tuple[dict[str, float], float]:
    """Factors `keys` minimising sum (log predicted - log measured)^2, from three starts."""
    from scipy.optimize import least_squares

    measured = np.log([s["measured_ms"] for s in samples])
    graphs = [s["graph"] for s in samples]
    lo, hi = math.log(_BOUNDS[0]), math.log(_BOUNDS[1])

    def residuals(x: np.ndarray) -> np.ndarray:
        prof = calibrated_profile(profile, {**fixed, **dict(zip(keys, np.exp(x), strict=True))})
        return np.log([predict_ms(prof, g) for g in graphs]) - measured

    best = None
    for factor in (1.0, 0.3, 3.0):
        x0 = np.clip(np.log(np.asarray(start, dtype=float) * factor), lo + 1e-6, hi - 1e-6)
        result = least_squares(residuals, x0, bounds=(lo, hi), diff_step=1e-3)
        if best is None or result.cost < best.cost:
            best = result
    values = {k: float(v) for k, v in zip(keys, np.exp(best.x), strict=True)}
    return values, 2 * float(best.cost)


def fit(profile: HardwareProfile, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The measured rates of `autoaccel.targets.cpu` that minimise the squared error of
    log(time) between `samples`' measured_ms and the CPU model of `profile` with them.

    First the machine-wide rates (compute_eta, vector_eta, memory_eta, cache_eta,
    overhead_us, run_overhead_us) on all samples; then, one op type at a time, the op type
    whose own rate (fitted on the samples whose work is that op type alone) differs most from
    the machine-wide one, if by more than 1.5x, is kept and the machine-wide rates refitted
    without its pull; until no op type differs that much."""
    if not samples:
        raise ValueError("fit needs at least one sample")
    groups: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        if (key := _own_op(sample["graph"])) is not None:
            groups.setdefault(key, []).append(sample)
    own: dict[str, float] = {}
    rates, _ = _least_squares(profile, samples, FITTED, _START, own)
    while len(own) < len(groups):
        candidates = {}
        for key, group in groups.items():
            if key not in own:
                general = rates[key.split(".")[0]]
                value, _ = _least_squares(profile, group, [key], [general], {**rates, **own})
                candidates[key] = (abs(math.log(value[key] / general)), value[key])
        key, (distance, value) = max(candidates.items(), key=lambda kv: kv[1][0])
        if distance <= math.log(1.5):
            break
        own[key] = value
        rates, _ = _least_squares(profile, samples, FITTED, [rates[k] for k in FITTED], own)
    fitted = {**rates, **own}
    prof = calibrated_profile(profile, fitted)
    errors = [abs(predict_ms(prof, s["graph"]) / s["measured_ms"] - 1) * 100 for s in samples]
    return {
        **{k: round(v, 6) for k, v in sorted(fitted.items(), key=lambda kv: kv[0] not in FITTED)},
        "threads": int(samples[0].get("threads") or 0),
        "cpu": cpu_model_name(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "n_samples": len(samples),
        "fit_mdape": round(float(np.median(errors)), 2),
    }


def cpu_model_name() -> str:
    """lscpu's "Model name" (falling back to /proc/cpuinfo), "unknown" if neither says."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"
