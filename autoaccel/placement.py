"""Every target's own frontier and the hardware-selection ranking, from stored projections.

Each completed trial stores, per estimated target, the best plan per goal for its build
(`autoaccel.projection`). Here each (build, target) becomes one estimated `Point`: quality is
the build's (really run here), every speed, energy and $ figure is that target's cost model at
the goal's best plan, and its speedup is against the *baseline projected on the same target
by the same model*, so a cost model's bias cancels in the ratio instead of being quoted as a
speedup over this CPU. The ranking compares targets on each one's best build + plan within
the quality limit; it compares estimates with the measured target(s) here, and says so.
"""

from __future__ import annotations

from typing import Any

import optuna

from autoaccel.frontier import Point
from autoaccel.projection.plans import describe_plan
from autoaccel.recommend import choose
from autoaccel.techniques import describe_recipe

BASELINE_PROJECTIONS = "baseline_projections"
"""The study user attr holding the baseline build's projection on every target."""


def projected_points(study: optuna.Study, baseline: dict[str, Any]) -> list[Point]:
    """One estimated point per (completed build, target a plan of which can run it)."""
    base_proj = study.user_attrs.get(BASELINE_PROJECTIONS, {})
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        projections = t.user_attrs.get("projections")
        result = t.user_attrs.get("result")
        if not projections or not result or "duplicate_of" in t.user_attrs:
            continue
        recipe = t.user_attrs.get("recipe", t.params)
        for name, proj in projections.items():
            point = _point(t, recipe, result, name, proj, baseline, base_proj.get(name))
            if point is not None:
                out.append(point)
    return out


def _point(t, recipe, result, name, proj, baseline, base) -> Point | None:
    best = proj.get("best") or {}
    pick = best.get("scenario") or best.get("latency")
    if pick is None:
        return None
    base_best = (base or {}).get("best") or {}
    base_pick = base_best.get("scenario") or base_best.get("latency")
    if base_pick is not None:
        speedup, basis = base_pick["objective_ms"] / pick["objective_ms"], proj["source"]
    else:  # the baseline cannot run there (an int8-only chip): against the one measured here
        speedup = baseline.get("objective_ms", baseline["latency_ms"]) / pick["objective_ms"]
        basis = f"measured baseline on {baseline.get('target', 'cpu-local')} (cross-hardware)"
    latency = best.get("latency", pick)

    def fig(goal: str, key: str):
        return (best.get(goal) or {}).get(key)

    return Point(
        trial=t.number,
        recipe=recipe,
        description=f"{describe_recipe(recipe)}; {describe_plan(pick['plan'])}",
        target=name,
        accuracy=t.values[0],
        accuracy_drop=baseline["accuracy"] - t.values[0],
        latency_ms=latency["latency_ms"],
        latency_p90_ms=latency["latency_ms"],
        latency_source=proj["source"],
        speedup=speedup,
        size_mb=result["size_mb"],
        quality=result["quality"],
        feasible=all(v <= 0 for v in t.constraints.values()),
        throughput_qps=fig("throughput", "throughput_qps"),
        energy_j=fig("energy", "energy_j"),
        cost_per_million_usd=fig("cost", "cost_per_million_usd"),
        batch_size=pick["plan"]["batch_size"],
        energy_source=proj["source"] if fig("energy", "energy_j") is not None else None,
        objective_ms=pick["objective_ms"],
        scenario={**(pick.get("server") or {}), "plan": describe_plan(pick["plan"])},
        plan=pick["plan"],
        plans={goal: describe_plan(b["plan"]) for goal, b in best.items()},
        speedup_basis=basis,
    )


def infeasible_reasons(study: optuna.Study) -> dict[str, str]:
    """Target -> why no plan of it ran any completed build (the commonest reason), for the
    targets that ran none."""
    ran: set[str] = set()
    why: dict[str, dict[str, int]] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        for name, proj in (t.user_attrs.get("projections") or {}).items():
            if proj.get("feasible_plans"):
                ran.add(name)
            for reason, n in (proj.get("infeasible") or {}).items():
                why.setdefault(name, {})[reason] = why.get(name, {}).get(reason, 0) + n
    return {
        name: max(reasons, key=reasons.__getitem__)
        for name, reasons in why.items()
        if name not in ran and reasons
    }


def hardware_ranking(
    measured: list[Point], projected: list[Point], reasons: dict[str, str]
) -> list[dict[str, Any]]:
    """Targets by their best build + plan within the limit (lowest ms per query of the
    study's scenario first); targets with none say why. Measured rows are measured here,
    the others estimated: the `source` of each row says which."""
    by_target: dict[str, list[Point]] = {}
    for p in [*measured, *projected]:
        by_target.setdefault(p.target, []).append(p)
    rows = []
    for name, pts in by_target.items():
        best, _ = choose(pts, "latency")
        row: dict[str, Any] = {
            "target": name,
            "source": pts[0].latency_source,
            "builds": len(pts),
            "feasible_builds": sum(p.feasible for p in pts),
        }
        if best is None:
            row["reason"] = "no build within the quality limit"
        else:
            row.update(
                trial=best.trial,
                description=best.description,
                plan=best.plan,
                objective_ms=best.objective_ms,
                latency_ms=best.latency_ms,
                throughput_qps=best.throughput_qps,
                cost_per_million_usd=best.cost_per_million_usd,
                energy_j=best.energy_j,
                speedup=best.speedup,
                speedup_basis=best.speedup_basis,
            )
        rows.append(row)
    for name, reason in reasons.items():
        if name not in by_target:
            rows.append({"target": name, "source": f"estimated:{name}", "reason": reason})
    return sorted(rows, key=lambda r: (r.get("objective_ms") is None, r.get("objective_ms", 0)))
