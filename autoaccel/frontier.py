"""From stored trials to the Pareto frontier and one recommendation.

Everything here is rebuilt from the study's storage alone, so a resumed or concurrent search
always reports the same frontier for the same trials.

Policy (prefer latency): among feasible frontier points (accuracy drop within the limit), the
one with the lowest median latency, whatever its target; its summary says whether that latency
is measured or estimated (`estimated:<profile>`), and speedup is always against the baseline
measured on this machine. `best_measured` is the fastest feasible point measured here: the one
re-timed side by side with the baseline at the end of a search.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from autoaccel.techniques import describe_recipe


@dataclass(frozen=True)
class Point:
    trial: int
    recipe: dict[str, Any]
    description: str
    target: str
    accuracy: float
    accuracy_drop: float
    latency_ms: float
    latency_p90_ms: float
    latency_source: str
    speedup: float
    size_mb: float
    quality: dict[str, float] = field(default_factory=dict)
    feasible: bool = True
    throughput_qps: float | None = None
    energy_j: float | None = None
    cost_per_million_usd: float | None = None
    batch_size: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def points(study: optuna.Study, baseline: dict[str, Any]) -> list[Point]:
    """Every completed trial as a point (feasible or not)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        result = t.user_attrs.get("result")
        if not result or "duplicate_of" in t.user_attrs:  # the same candidate, counted once
            continue
        recipe = t.user_attrs.get("recipe", t.params)
        hardware = result.get("hardware", {})
        out.append(
            Point(
                trial=t.number,
                recipe=recipe,
                description=describe_recipe(recipe),
                target=result["target"],
                accuracy=t.values[0],
                accuracy_drop=baseline["accuracy"] - t.values[0],
                latency_ms=t.values[1],
                latency_p90_ms=result["latency_p90_ms"],
                latency_source=result["latency_source"],
                speedup=baseline["latency_ms"] / t.values[1],
                size_mb=result["size_mb"],
                quality=result["quality"],
                feasible=all(v <= 0 for v in t.constraints.values()),
                throughput_qps=hardware.get("throughput_qps"),
                energy_j=hardware.get("energy_j"),
                cost_per_million_usd=hardware.get("cost_per_million_usd"),
                batch_size=hardware.get("batch_size", 1),
            )
        )
    return out


def pareto(study: optuna.Study, all_points: list[Point]) -> list[Point]:
    """Feasible, non-dominated points (Optuna's `best_trials`), fastest first."""
    best = {t.number for t in study.best_trials}
    return sorted((p for p in all_points if p.trial in best), key=lambda p: p.latency_ms)


def recommend(
    study_name: str,
    workload: dict[str, str],
    baseline: dict[str, Any],
    limit: float,
    frontier: list[Point],
    all_points: list[Point],
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "study": study_name,
        "workload": workload["name"],
        "metric": workload["metric"],
        "metric_description": workload["metric_description"],
        "baseline": baseline,
        "accuracy_limit": {
            "max_drop": limit,
            "min_accuracy": baseline["accuracy"] - limit,
            "unit": f"absolute {workload['metric']} (same unit as the metric)",
        },
        "policy": "prefer latency: fastest feasible frontier point",
        "recommended": None,
        "reason": None,
        "frontier": [p.as_dict() for p in frontier],
    }
    if frontier:
        best = frontier[0]
        rec["recommended"] = {**best.as_dict(), "summary": summary(best, baseline, workload)}
    measured = [p for p in all_points if p.feasible and p.latency_source == "measured"]
    if measured:
        # the best on this machine, measured: what a user can run and re-time today
        here = min(measured, key=lambda p: p.latency_ms)
        rec["best_measured"] = {**here.as_dict(), "summary": summary(here, baseline, workload)}
    else:
        rec["best_measured"] = None
    if not frontier and all_points:
        closest = sorted(all_points, key=lambda p: p.accuracy_drop)[:3]
        rec["reason"] = (
            f"no candidate kept {workload['metric']} within {limit} of the baseline "
            f"({baseline['accuracy']:.4f}); the closest was trial {closest[0].trial} "
            f"(drop {closest[0].accuracy_drop:.4f})"
        )
        rec["closest"] = [p.as_dict() for p in closest]
    elif not frontier:
        rec["reason"] = "no trial completed; see the failed trials' reasons"
    return rec


def summary(point: Point, baseline: dict[str, Any], workload: dict[str, str]) -> str:
    source = (
        f"measured on {point.target}"
        if point.latency_source == "measured"
        else f"{point.latency_source}, against the baseline measured on {baseline['target']}"
    )
    drop = point.accuracy_drop
    change = f"{workload['metric']} {-drop:+.4f}" if drop else f"{workload['metric']} unchanged"
    return (
        f"{point.description}: {point.speedup:.1f}x faster than {baseline['description']} "
        f"({point.latency_ms:.3f} ms vs {baseline['latency_ms']:.3f} ms, {source}), "
        f"{change} ({point.accuracy:.4f} vs {baseline['accuracy']:.4f})"
    )
