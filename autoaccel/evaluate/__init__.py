"""Evaluate a candidate: quality really run on validation data, latency by the protocol."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from autoaccel.evaluate.measure import DEFAULT_PROTOCOL, Latency, MeasureConfig, measure
from autoaccel.evaluate.runners import open_runner
from autoaccel.techniques import Candidate
from autoaccel.workloads.base import Workload


@dataclass(frozen=True)
class Evaluation:
    quality: dict[str, float]
    latency: Latency | None  # None when the candidate is estimated, not timed, here
    size_mb: float
    seconds: dict[str, float] = field(default_factory=dict)
    batches: dict[int, Latency] = field(default_factory=dict)
    """Latency of one batch per batch size, when more than batch 1 was timed (scenarios)."""


def evaluate_candidate(
    candidate: Candidate,
    workload: Workload,
    cfg: MeasureConfig = DEFAULT_PROTOCOL,
    time_it: bool = True,
    batch_sizes: tuple[int, ...] = (1,),
) -> Evaluation:
    """Quality on the validation data (always run for real) and, with `time_it`, latency by
    the measurement protocol: batch 1 alone, or every size in `batch_sizes` interleaved."""
    t0 = time.perf_counter()
    predict = open_runner(candidate, workload.input_names)
    t1 = time.perf_counter()
    quality = workload.evaluate(predict)
    bad = [k for k, v in quality.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"non-finite quality figure(s) {bad}: the candidate's outputs are broken")
    t2 = time.perf_counter()
    latency, batches = None, {}
    if time_it:
        latency, batches = time_runner(predict, workload, cfg, batch_sizes)
    t3 = time.perf_counter()
    return Evaluation(
        quality=quality,
        latency=latency,
        size_mb=model_size_mb(candidate),
        seconds={"open": t1 - t0, "quality": t2 - t1, "latency": t3 - t2},
        batches=batches,
    )


def time_runner(
    predict, workload: Workload, cfg: MeasureConfig = DEFAULT_PROTOCOL, batch_sizes=(1,)
) -> tuple[Latency, dict[int, Latency]]:
    """Latency by the protocol of an opened runner: batch 1 alone, or every size in
    `batch_sizes` interleaved (then also returned per size)."""
    if batch_sizes == (1,):
        inputs = workload.latency_inputs(1)
        return measure(lambda: predict(inputs), cfg), {}
    from autoaccel.evaluate.scenarios import measure_batches

    def run(b: int):
        inputs = workload.latency_inputs(b)
        return lambda: predict(inputs)

    batches = measure_batches(run, batch_sizes, cfg)
    return batches[1], batches


def model_size_mb(candidate: Candidate) -> float:
    if candidate.onnx_path is not None:
        return candidate.onnx_path.stat().st_size / 1e6
    params = candidate.torch_model.state_dict().values()
    return sum(t.numel() * t.element_size() for t in params) / 1e6


__all__ = ["Evaluation", "Latency", "MeasureConfig", "evaluate_candidate", "measure"]
