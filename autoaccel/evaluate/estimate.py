"""Latency, throughput, energy and cost of a candidate on a target it is not running on.

The candidate's own ONNX graph is analysed at the plan's batch size (per-node work, bytes,
precision, sparsity) and handed to the target's cost model. Quality is still measured for
real, by running the same graph on the local CPU: only the timing is estimated, and every
figure says so (`source` = `estimated:<profile>`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from autoaccel.targets.base import Estimate, GraphCost, Plan, Target
from autoaccel.workloads.base import Workload


def estimate_candidate(
    onnx_path: Path, workload: Workload, target: Target, plan: Plan
) -> tuple[Estimate, GraphCost]:
    """The target's estimate for this model file under `plan` (raises InfeasibleRecipe)."""
    graph = analyze_cached(str(onnx_path), _shapes(workload, plan.batch_size))
    return target.estimate(graph, plan), graph


@lru_cache(maxsize=64)
def analyze_cached(onnx_path: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> GraphCost:
    """Model files are content-addressed by the build cache, so a path is a stable key."""
    from autoaccel.targets.graph import analyze

    return analyze(Path(onnx_path), dict(shapes))


def _shapes(workload: Workload, batch_size: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    inputs = workload.latency_inputs(batch_size)
    return tuple((name, tuple(int(d) for d in inputs[name].shape)) for name in inputs)


def local_figures(latency_ms: float, target: Target | None) -> dict[str, Any]:
    """Throughput, energy and cost of a *measured* batch-1 latency on this machine. The
    latency is measured; energy and cost multiply it by the cpu-local profile's power and
    price, so they are labelled estimated."""
    figures: dict[str, Any] = {"throughput_qps": 1000.0 / latency_ms}
    if target is None:
        return figures
    prof = target.profile
    figures["energy_j"] = prof.power_w.value * latency_ms / 1000.0
    if prof.price_per_hour_usd is not None:
        figures["cost_per_million_usd"] = (
            prof.price_per_hour_usd.value / 3600.0 * latency_ms / 1000.0 * 1e6
        )
    figures["energy_source"] = f"estimated:{prof.name} (profile power x measured latency)"
    return figures
