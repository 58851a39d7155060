"""Project one build on every target: each target's cost model over its own plan grid.

A trial builds and measures one candidate here; this places that same build on every other
piece of hardware at no trial cost. The build's ONNX graph is analysed once (at batch 1; the
cost models scale work and activations with a plan's batch), every plan of every target's
grid is estimated, plans a target cannot run are counted with their reason, and per goal the
best plan is kept:

- `latency`: the lowest latency of one request (batch-1 plans; tensor and pipeline
  parallelism may lower it, data parallelism never does);
- `throughput`: the most inferences per second (any plan: data parallelism multiplies it);
- `cost`: the lowest $ per million inferences (targets with a published price);
- `energy`: the fewest joules per inference;
- `scenario`: the plan the study's scenario picks (single-stream: `latency`; offline: the
  cheapest throughput where a price is known, else the most per device; server: the largest
  Poisson rate whose simulated p99 meets the latency bound, replicas multiplying it).

What is stored per target (`Projection.as_dict`) is small and self-describing, so a report is
rebuilt from storage alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from autoaccel.errors import InfeasibleRecipe
from autoaccel.projection.plans import PlanGrid, describe_plan
from autoaccel.targets.base import Estimate, GraphCost, Plan, Target

GOALS = ("latency", "throughput", "cost", "energy")


@dataclass(frozen=True)
class PlanFigures:
    """One plan's estimated figures (what a goal's pick stores)."""

    plan: dict[str, int]
    latency_ms: float
    throughput_qps: float
    energy_j: float | None
    cost_per_million_usd: float | None
    cost_per_hour_usd: float | None
    devices: int
    objective_ms: float
    """ms per query by the scenario's measure: the latency (single-stream), 1000 /
    throughput (offline), 1000 / sustained rate (server)."""
    breakdown_ms: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    server: dict[str, Any] | None = None

    @property
    def description(self) -> str:
        return describe_plan(self.plan)


@dataclass(frozen=True)
class Projection:
    """A build on one target: the best plan per goal, or why no plan can run."""

    target: str
    kind: str
    source: str
    feasible_plans: int
    infeasible: dict[str, int]  # reason -> plans it ruled out
    best: dict[str, PlanFigures]  # goal -> pick (no entry: no plan has that figure)

    @property
    def feasible(self) -> bool:
        return self.feasible_plans > 0

    @property
    def reason(self) -> str | None:
        """Why no plan runs (the commonest reason), when none does."""
        if self.feasible or not self.infeasible:
            return None
        return max(self.infeasible, key=self.infeasible.__getitem__)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def project_build(
    onnx_path: Path,
    shapes: dict[str, tuple[int, ...]],
    targets: dict[str, Target],
    grid: PlanGrid,
    scenario: str = "single-stream",
    latency_bound_ms: float = 100.0,
) -> dict[str, dict[str, Any]]:
    """Every target's projection of the model file, by target name (as stored)."""
    graph = analyze_cached(str(onnx_path), tuple((k, tuple(v)) for k, v in shapes.items()))
    return {
        name: project_target(target, graph, grid, scenario, latency_bound_ms).as_dict()
        for name, target in targets.items()
    }


@lru_cache(maxsize=32)
def analyze_cached(onnx_path: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> GraphCost:
    """Model files are content-addressed by the build cache, so a path is a stable key."""
    from autoaccel.targets.graph import analyze

    return analyze(Path(onnx_path), dict(shapes))


def estimate_candidate(
    onnx_path: Path, workload: Any, target: Target, plan: Plan
) -> tuple[Estimate, GraphCost]:
    """One target's estimate for a model file under one plan, the graph analysed at the plan's
    batch (the fidelity benchmarks' entry point; raises InfeasibleRecipe)."""
    inputs = workload.latency_inputs(plan.batch_size)
    shapes = tuple((k, tuple(int(d) for d in v.shape)) for k, v in inputs.items())
    graph = analyze_cached(str(onnx_path), shapes)
    return target.estimate(graph, plan), graph


def project_target(
    target: Target,
    graph: GraphCost,
    grid: PlanGrid,
    scenario: str = "single-stream",
    latency_bound_ms: float = 100.0,
) -> Projection:
    """The target's cost model over its plan grid: the best plan per goal."""
    runs: list[tuple[Plan, Estimate]] = []
    reasons: Counter[str] = Counter()
    for plan in grid.plans_for(target):
        try:
            runs.append((plan, target.estimate(graph, plan)))
        except InfeasibleRecipe as exc:
            reasons[str(exc)] += 1
    best: dict[str, PlanFigures] = {}
    if runs:
        best = _best_per_goal(runs, scenario, latency_bound_ms)
    return Projection(
        target=target.name,
        kind=target.profile.kind if target.profile is not None else target.kind,
        source=f"estimated:{target.profile.name}" if target.profile else target.source,
        feasible_plans=len(runs),
        infeasible=dict(reasons.most_common(3)),
        best=best,
    )


def _figures(plan: Plan, est: Estimate, objective_ms: float, **extra: Any) -> PlanFigures:
    return PlanFigures(
        plan=asdict(plan),
        latency_ms=est.latency_ms,
        throughput_qps=est.throughput_qps,
        energy_j=est.energy_j,
        cost_per_million_usd=est.cost_per_million_usd,
        cost_per_hour_usd=est.cost_per_hour_usd,
        devices=plan.devices,
        objective_ms=objective_ms,
        breakdown_ms=dict(est.breakdown_ms),
        notes=tuple(est.notes),
        **extra,
    )


def _best_per_goal(
    runs: list[tuple[Plan, Estimate]], scenario: str, bound_ms: float
) -> dict[str, PlanFigures]:
    def offline_ms(e: Estimate) -> float:
        return 1000.0 / e.throughput_qps

    own = (lambda e: e.latency_ms) if scenario == "single-stream" else offline_ms
    best: dict[str, PlanFigures] = {}
    single = [(p, e) for p, e in runs if p.batch_size == 1]
    if single:
        p, e = min(single, key=lambda r: (r[1].latency_ms, r[0].devices))
        best["latency"] = _figures(p, e, own(e))
    p, e = max(runs, key=lambda r: (r[1].throughput_qps, -r[0].devices))
    best["throughput"] = _figures(p, e, own(e))
    priced = [r for r in runs if r[1].cost_per_million_usd is not None]
    if priced:
        p, e = min(priced, key=lambda r: (r[1].cost_per_million_usd, -r[1].throughput_qps))
        best["cost"] = _figures(p, e, own(e))
    powered = [r for r in runs if r[1].energy_j is not None]
    if powered:
        p, e = min(powered, key=lambda r: (r[1].energy_j, -r[1].throughput_qps))
        best["energy"] = _figures(p, e, own(e))
    if scenario == "single-stream":
        if "latency" in best:
            best["scenario"] = best["latency"]
    elif scenario == "offline":
        if priced:
            best["scenario"] = best["cost"]
        else:
            p, e = max(runs, key=lambda r: (r[1].throughput_qps / r[0].devices, -r[0].devices))
            best["scenario"] = _figures(p, e, offline_ms(e))
    else:
        served = _server_pick(runs, bound_ms)
        if served is not None:
            best["scenario"] = served
    return best


def _server_pick(runs: list[tuple[Plan, Estimate]], bound_ms: float) -> PlanFigures | None:
    """Server: per tensor x pipeline layout (one replica), the largest Poisson rate whose
    simulated p99 meets the bound with dynamic batching over the grid's batch sizes
    (`evaluate.scenarios.server`, 2,000 requests); data-parallel replicas each take an equal
    random share of a Poisson stream, which is Poisson again, so d replicas sustain d times
    the rate. The layouts tried: one device, and the one with the lowest batch-1 latency."""
    from autoaccel.evaluate.measure import Latency
    from autoaccel.evaluate.scenarios import server

    layouts: dict[tuple[int, int], dict[int, tuple[Plan, Estimate]]] = {}
    for plan, est in runs:
        if plan.data == 1 and plan.micro_batches == 1:
            layouts.setdefault((plan.tensor, plan.pipeline), {})[plan.batch_size] = (plan, est)
    tried = {(1, 1)} & set(layouts)
    fastest = [k for k in layouts if 1 in layouts[k]]
    if fastest:
        tried.add(min(fastest, key=lambda k: layouts[k][1][1].latency_ms))
    pick = None
    for layout in sorted(tried):
        by_batch = layouts[layout]
        latencies = {
            b: Latency(e.latency_ms, e.latency_ms, e.latency_ms, 0, "estimated")
            for b, (_, e) in by_batch.items()
        }
        result = server(latencies, bound_ms, n_requests=2000, windows_ms=(0, 1, 5, 20))
        if result.sustained_qps <= 0:
            continue
        replicas = max(
            (p.data for p, _ in runs if (p.tensor, p.pipeline) == layout and p.micro_batches == 1),
            default=1,
        )
        rate = result.sustained_qps * replicas
        served = Plan(result.policy.max_batch, replicas, *layout, 1)
        est = next(e for p, e in runs if p == served)  # the replicas' own $ and energy
        figures = {
            "sustained_qps": rate,
            "max_batch": result.policy.max_batch,
            "window_ms": result.policy.window_ms,
            "p99_ms": result.p99_ms,
            "latency_bound_ms": bound_ms,
            "replicas": replicas,
        }
        if pick is None or rate > pick.server["sustained_qps"]:
            pick = _figures(served, est, 1000.0 / rate, server=figures)
    return pick


__all__ = [
    "GOALS",
    "PlanFigures",
    "PlanGrid",
    "Projection",
    "analyze_cached",
    "describe_plan",
    "estimate_candidate",
    "project_build",
    "project_target",
]
