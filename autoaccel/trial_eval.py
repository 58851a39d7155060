"""Build and judge one candidate: the part of a trial that runs the user's model.

`CandidateEvaluator.run(recipe, rule)` builds the recipe, runs its quality on the validation
data, and times it on cpu-local or estimates it with the target's cost model. It is the same
code whether it runs in the search's own process or in the isolated worker process
(`autoaccel.isolation`); everything it needs is in `EvalSettings`, which pickles, so a fresh
process can rebuild it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoaccel.errors import InfeasibleRecipe
from autoaccel.evaluate import Evaluation
from autoaccel.evaluate.measure import MeasureConfig
from autoaccel.techniques.base import recipe_value
from autoaccel.techniques.target import LOCAL
from autoaccel.workers import measure_lock


@dataclass(frozen=True)
class EvalSettings:
    """What evaluating a candidate depends on, beyond the recipe."""

    workload: str | None
    model: Path | None
    data: Path | None
    metric: str  # the quality figure the limit applies to (`--metric`)
    cache: Path
    root: Path  # the runs folder: its lock file serialises timings across processes
    targets: dict[str, Any]  # name -> Target (cpu-local calibrated when a calibration exists)
    measure: MeasureConfig
    batch_sizes: tuple[int, ...]
    scenario: str
    latency_bound_ms: float
    arrival_rate: float | None


@dataclass
class Outcome:
    """A judged candidate: the evaluation, the hardware figures, and how it was built."""

    evaluation: Evaluation
    hardware: dict[str, Any]
    notes: list[str]
    build_s: float
    train_s: float
    curve: dict[str, dict[float, float]] = field(default_factory=dict)


def scenario_of(settings: EvalSettings, batches) -> dict[str, Any]:
    """The scenario's figures from per-batch latencies; a server that meets the latency bound
    at no rate is an infeasible recipe, with the reason."""
    from autoaccel.evaluate.scenarios import scenario_figures

    try:
        return scenario_figures(
            settings.scenario, batches, settings.latency_bound_ms, settings.arrival_rate
        )
    except ValueError as exc:
        raise InfeasibleRecipe(f"server scenario: {exc}") from None


class CandidateEvaluator:
    def __init__(self, settings: EvalSettings, workload=None) -> None:
        from autoaccel.workloads import load_workload

        self.settings = settings
        self.workload = workload or load_workload(
            settings.workload, settings.cache, settings.model, settings.data, settings.metric
        )

    def run(self, recipe: dict[str, Any], rule=None) -> Outcome:
        """Build and judge `recipe`. `rule` (an early-stopping `HeadroomRule`, or None)
        watches its training; a stopped run raises `TrainingStopped` carrying its curve."""
        from autoaccel.build import build_candidate
        from autoaccel.early_stop import TrainingStopped, TrialMonitor, torch_quality

        wl = self.workload
        monitor = None
        if rule is not None and wl.torch_model_available() and wl.output_kind:
            monitor = TrialMonitor(rule, torch_quality(wl))
        t0 = time.perf_counter()
        try:
            candidate = build_candidate(recipe, wl, self.settings.cache, monitor)
        except TrainingStopped as stop:
            stop.curve = dict(monitor.curve) if monitor else {}
            stop.seconds = time.perf_counter() - t0
            raise
        build_s = time.perf_counter() - t0
        ev, hardware = self._evaluate(candidate, recipe, recipe_value(recipe, "target.name"))
        return Outcome(
            evaluation=ev,
            hardware=hardware,
            notes=list(candidate.notes),
            build_s=build_s,
            train_s=candidate.train_seconds,
            curve=dict(monitor.curve) if monitor else {},
        )

    def close(self) -> None:
        """Nothing to release in-process; the isolated twin stops its worker here."""

    def _evaluate(self, candidate, recipe: dict[str, Any], target_name: str):
        """Quality, always run here; latency measured on cpu-local, else estimated by the
        target's cost model from the candidate's graph. Returns the evaluation and the
        hardware figures (throughput, energy, cost; what each rests on)."""
        from autoaccel.evaluate import Latency, evaluate_candidate
        from autoaccel.evaluate.estimate import estimate_candidate, local_figures
        from autoaccel.techniques.target import plan_of

        s, wl = self.settings, self.workload
        if target_name == LOCAL:
            with measure_lock(s.root):
                ev = evaluate_candidate(candidate, wl, s.measure, batch_sizes=s.batch_sizes)
            figures = local_figures(ev.latency.median_ms, s.targets.get(LOCAL))
            scenario = scenario_of(s, ev.batches or {1: ev.latency})
            return ev, {**figures, "batch_size": 1, "scenario": scenario}
        if candidate.onnx_path is None:
            raise InfeasibleRecipe(
                f"{target_name} is estimated from an ONNX graph; none was built"
            )
        target, plan = s.targets[target_name], plan_of(recipe)
        # estimate first: an infeasible plan or precision costs no quality run
        est, graph = estimate_candidate(candidate.onnx_path, wl, target, plan)
        ev = evaluate_candidate(candidate, wl, s.measure, time_it=False)
        latency = Latency(
            est.latency_ms, est.latency_ms, est.latency_ms, 0, est.source, target_name
        )
        figures = {
            "throughput_qps": est.throughput_qps,
            "batch_size": plan.batch_size,
            "devices": plan.devices,
            "macs": graph.macs,
            "weight_mb": graph.weight_bytes / 1e6,
            "breakdown_ms": est.breakdown_ms,
            "estimate_notes": list(est.notes),
        }
        if est.energy_j is not None:
            figures["energy_j"] = est.energy_j
            figures["energy_source"] = est.source
        if est.cost_per_million_usd is not None:
            figures["cost_per_million_usd"] = est.cost_per_million_usd
        batches = {1: latency}  # single-stream: the plan's batch latency
        if s.scenario != "single-stream":  # the scenario picks the batch size
            for b in s.batch_sizes:
                e, _ = estimate_candidate(
                    candidate.onnx_path, wl, target, replace(plan, batch_size=b)
                )
                batches[b] = Latency(
                    e.latency_ms, e.latency_ms, e.latency_ms, 0, e.source, target_name
                )
        figures["scenario"] = scenario_of(s, batches)
        return replace(ev, latency=latency), figures
