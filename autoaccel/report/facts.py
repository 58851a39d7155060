"""The report's facts, read from the study storage alone: no candidate is rebuilt or re-timed
and the workload is not loaded, so `autoaccel report --study NAME` can run any time later."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from autoaccel.confirmation import attach_confirmations, stored_confirmations
from autoaccel.errors import UserError
from autoaccel.frontier import OBJECTIVES, Point, figure, machine_baselines, pareto, points
from autoaccel.recommend import attach_limits, choose, recommend
from autoaccel.report.fidelity import FIDELITY_FILE, Fidelity, read_fidelity
from autoaccel.report.words import UNUSABLE, counts, outcome

GOALS: dict[str, str] = {
    "latency": "lowest latency",
    "cost": "lowest cost per million inferences",
    "energy": "lowest energy per inference",
    "throughput": "highest throughput",
    "local": "best on this machine (measured)",
}


@dataclass(frozen=True)
class TargetBest:
    """One target: its fastest build within the limit (None if none) and build counts."""

    target: str
    best: Point | None
    complete: int
    feasible: int
    failed: int
    reason: str | None = None  # why no build runs there at all (an estimated target)


@dataclass(frozen=True)
class GoalPick:
    """The pick for one goal and each target's best for it, best first."""

    goal: str
    point: Point | None
    why: str
    ranking: list[Point]


@dataclass(frozen=True)
class Trouble:
    """Trials that gave no usable candidate, grouped by kind and reason."""

    kind: str
    reason: str
    trials: tuple[int, ...]


@dataclass(frozen=True)
class Importance:
    objective: str
    values: dict[str, float]
    note: str | None = None


@dataclass(frozen=True)
class Facts:
    study: str
    workload: dict[str, str]
    limit: float
    prefer: str
    baseline: dict[str, Any]
    points: list[Point]
    """Every build measured here, and every build projected on each estimated target."""
    measured: list[Point]
    frontier: list[Point]
    """The frontier measured here (what the recommendation is chosen from)."""
    recommendation: dict[str, Any]
    targets: list[TargetBest]
    goals: list[GoalPick]
    importances: list[Importance]
    troubles: list[Trouble]
    fidelity: Fidelity | None
    states: dict[str, int]
    """How the trials ended, in `words.OUTCOMES` (complete, failed, infeasible, ...)."""
    limits: dict[str, float] = field(default_factory=dict)
    """The study's other limits (`--limit`): figure -> largest drop below the baseline."""


def gather(
    study: optuna.Study,
    *,
    workload_info: dict[str, str] | None = None,
    limit: float | None = None,
    prefer: str = "latency",
    fidelity: dict[str, Any] | Path | None = None,
) -> Facts:
    """Everything the report says, from the study's storage. `workload_info` (name, metric,
    metric_description) and `limit` default to what the study recorded; `fidelity` is the
    cost-model fidelity result, or a path to its JSON (default: the benchmark's file)."""
    baseline = study.user_attrs.get("baseline")
    if not baseline:
        raise UserError(
            f"study {study.study_name!r} has no baseline yet: run `autoaccel search` first"
        )
    identity = study.user_attrs.get("identity", {})
    workload = _workload(workload_info, identity, baseline)
    recorded = identity.get("max_accuracy_drop")
    if limit is None:
        if recorded is None:
            raise UserError(f"study {study.study_name!r} records no accuracy limit: pass one")
        limit = float(recorded)
    from autoaccel.placement import hardware_ranking, infeasible_reasons, projected_points

    found = points(study, baseline)
    measured = [p for p in found if p.measured]
    # estimated: each build projected on each target (and estimated trials of older studies)
    projected = projected_points(study, baseline) + [p for p in found if not p.measured]
    limits = dict(identity.get("limits", {}))
    if recorded is None or not math.isclose(limit, recorded):
        # judged against another limit than the one the search ran with (and its others)
        def within(p: Point) -> bool:
            drops = [baseline["quality"][k] - p.quality.get(k, -math.inf) for k in limits]
            return p.accuracy_drop <= limit + 1e-12 and all(
                d <= v for d, v in zip(drops, limits.values(), strict=True)
            )

        measured, projected = (
            [replace(p, feasible=within(p)) for p in pts] for pts in (measured, projected)
        )
    all_points = measured + projected
    frontier = pareto(study, measured)
    rec = recommend(
        study.study_name,
        workload,
        baseline,
        limit,
        frontier,
        measured,
        prefer,
        machine_baselines(study),
    )
    reasons = infeasible_reasons(study)
    rec["hardware"] = hardware_ranking(measured, projected, reasons)
    attach_confirmations(rec, stored_confirmations(study.user_attrs))
    attach_limits(rec, limits, baseline)
    rec["warnings"] = list(study.user_attrs.get("warnings", []))
    rec["notes"] = list(study.user_attrs.get("notes", []))
    trials = study.get_trials(deepcopy=False)
    return Facts(
        study=study.study_name,
        workload=workload,
        limit=limit,
        prefer=prefer,
        baseline=baseline,
        points=all_points,
        measured=measured,
        frontier=frontier,
        recommendation=rec,
        targets=_targets(trials, measured, projected, reasons),
        goals=[_goal(goal, all_points) for goal in GOALS],
        importances=_importances(study, workload["metric"]),
        troubles=_troubles(trials, measured, workload["metric"], limit),
        fidelity=read_fidelity(FIDELITY_FILE if fidelity is None else fidelity, workload, trials),
        states=counts(trials),
        limits=limits,
    )


def _workload(
    info: dict[str, str] | None, identity: dict[str, Any], baseline: dict[str, Any]
) -> dict[str, str]:
    quality = baseline.get("quality", {})
    metric = baseline.get("metric") or next(  # studies from before the baseline said so
        (k for k, v in quality.items() if v == baseline["accuracy"]), "quality"
    )
    found = {
        "name": str(identity.get("workload", "workload")),
        "metric": metric,
        "metric_description": "",
    }
    return {**found, **(info or {})}


def _targets(
    trials: list[optuna.trial.FrozenTrial],
    measured: list[Point],
    projected: list[Point],
    reasons: dict[str, str],
) -> list[TargetBest]:
    """Every target's best build within the limit: the measured ones' from their trials
    (failed = trials that failed here), the estimated ones' from the projections (failed =
    builds no plan of the target could run)."""
    failed_here = sum(outcome(t.state.name, t.user_attrs) in UNUSABLE for t in trials)
    unrunnable: dict[str, int] = {}
    for t in trials:
        for name, proj in (t.user_attrs.get("projections") or {}).items():
            if not proj.get("feasible_plans"):
                unrunnable[name] = unrunnable.get(name, 0) + 1
    by_target: dict[str, list[Point]] = {}
    for p in [*measured, *projected]:
        by_target.setdefault(p.target, []).append(p)
    rows = []
    for name, mine in by_target.items():
        best, _ = choose(mine, "latency")
        failed = failed_here if mine[0].measured else unrunnable.get(name, 0)
        rows.append(TargetBest(name, best, len(mine), sum(p.feasible for p in mine), failed))
    for name, reason in reasons.items():
        if name not in by_target:
            rows.append(TargetBest(name, None, 0, 0, unrunnable.get(name, 0), reason))
    return sorted(
        rows, key=lambda r: (r.best is None, r.best.objective_ms if r.best else 0.0, r.target)
    )


def _goal(goal: str, all_points: list[Point]) -> GoalPick:
    by_target: dict[str, list[Point]] = {}
    for p in all_points:
        by_target.setdefault(p.target, []).append(p)
    if goal in OBJECTIVES:
        pick, why = choose(all_points, goal)
        ranking = [b for pts in by_target.values() if (b := choose(pts, goal)[0]) is not None]
        ranking.sort(key=lambda p: (figure(p, goal), p.trial))
        return GoalPick(goal, pick, why, ranking)
    if goal == "throughput":
        pool = [p for p in all_points if p.feasible and p.throughput_qps]
        ranking = []
        for pts in by_target.values():
            mine = [p for p in pts if p in pool]
            if mine:
                ranking.append(max(mine, key=lambda p: (p.throughput_qps, p.accuracy)))
        ranking.sort(key=lambda p: -p.throughput_qps)
        why = f"highest throughput among {len(pool)} feasible candidates (batch and replicas)"
        return GoalPick(goal, ranking[0] if ranking else None, why, ranking)
    measured = [p for p in all_points if p.measured]
    pick, why = choose(measured, "latency")
    if pick is None:
        why = "no candidate measured on this machine meets the accuracy limit"
    ranking = [b for pts in by_target.values() if (b := choose(pts, "latency")[0]) and b.measured]
    why = why.replace("feasible", "feasible measured")
    return GoalPick(goal, pick, why, sorted(ranking, key=lambda p: p.latency_ms))


def _importances(study: optuna.Study, metric: str) -> list[Importance]:
    """fANOVA importance of each parameter present in every completed trial, per objective
    (latency on a log scale: targets differ by orders of magnitude)."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    done = [t for t in done if t.values and len(t.values) >= 2]
    out = []
    for i, name in ((0, metric), (1, "latency (log)")):
        values = [t.values[i] for t in done]
        if len(done) < 2:
            note = f"needs at least 2 completed trials ({len(done)} so far)"
        elif len(set(values)) < 2:
            note = f"every completed trial has the same {name}: no parameter changed it"
        elif i == 1 and min(values) <= 0:
            note = "a latency of zero or less cannot be put on a log scale"
        else:
            note = None
        if note:
            out.append(Importance(name, {}, note))
            continue
        target = (lambda t: t.values[0]) if i == 0 else (lambda t: math.log(t.values[1]))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = optuna.importance.get_param_importances(
                    study,
                    # 16 trees, not 64: 4x faster (3 s, not 12 s, on 100
                    # trials) with the same top three (benchmarks/overhead.py)
                    evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0, n_trees=16),
                    target=target,
                )
        except Exception as exc:  # too few trials, single-valued parameters, ...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            out.append(Importance(name, {}, f"not computed: {first[:200]}"))
            continue
        clean = {k: float(v) for k, v in got.items() if math.isfinite(v)}
        note = None if clean else "no parameter varied across every completed trial"
        out.append(Importance(name, clean, note))
    return out


def _troubles(
    trials: list[optuna.trial.FrozenTrial], all_points: list[Point], metric: str, limit: float
) -> list[Trouble]:
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for t in trials:
        reason = t.user_attrs.get("fail_reason") or t.user_attrs.get("early_stopped") or ""
        kind = outcome(t.state.name, t.user_attrs)
        if kind in (None, "complete"):
            continue
        if kind == "unfinished":
            reason = "interrupted, or still running in another process"
        reason = reason or "no reason recorded"
        groups.setdefault((kind, _shape(reason)), []).append((t.number, reason))
    out = [
        Trouble(kind, items[0][1], tuple(n for n, _ in items))
        for (kind, _), items in groups.items()
    ]
    over = [p for p in all_points if not p.feasible]
    if over:
        drops = [p.accuracy_drop for p in over]
        reason = (
            f"{metric} dropped {min(drops):.4f} to {max(drops):.4f} below the baseline "
            f"(limit {limit})"
        )
        out.append(Trouble("over the accuracy limit", reason, tuple(p.trial for p in over)))
    order = ["failed", "infeasible", "stopped early", "over the accuracy limit"]
    return sorted(
        out, key=lambda g: (order.index(g.kind) if g.kind in order else 9, -len(g.trials))
    )


def _shape(reason: str) -> str:
    """A reason with its numbers blanked: reasons that differ only in figures group together."""
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", reason)[:300]
