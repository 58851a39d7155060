"""From stored trials to the Pareto frontier and one recommendation.

Everything here is rebuilt from the study's storage alone, so a resumed or concurrent search
always reports the same frontier for the same trials.

Policy (`recommend(..., prefer=...)`, `choose`). The search hands `recommend` only the builds
measured here: the recommendation is for this machine. Every other target's best build + plan
is ranked apart (`autoaccel.placement`); `choose` also picks across targets for the report's
goals, where the tie rule below applies.

- Only feasible candidates count: quality within the accuracy limit of the baseline. An
  infeasible point is never recommended; when none is feasible the recommendation is `null`
  with a `reason` and the `closest` points (smallest quality drop first).
- `prefer` names the figure to minimise: `latency` (median ms of one batch; the default),
  `cost` ($ per million inferences) or `energy` (joules per inference). For cost and energy
  only candidates that have the figure count (a target without a published price has no
  cost); the pick lies on the frontier of quality against that figure (`objective_frontier`;
  for latency, Optuna's `best_trials`), or within noise of its best point (tie rule).
- Tie rule, measured over estimated: a figure measured here is evidence, an estimate is a
  cost model's opinion. A measured candidate whose figure is within the noise of the best
  figure wins over an estimated best: within 15 % when the measured latency is under 1 ms
  (sub-millisecond timings on a shared 2-core machine move that much between runs), within
  5 % otherwise. Cost and energy of a measured candidate are its measured latency times the
  profile's price or power, so the same relative noise applies. Among tied measured points
  the better figure wins, then the higher quality.
- Whatever the pick, its summary says whether the latency is measured or estimated
  (`estimated:<profile>`), and speedup is against a measured baseline. `best_measured` is
  the fastest feasible point measured on the machine writing the recommendation: the one
  re-timed side by side with the baseline at the end of a search.
- Machines: when workers on several machines share a study, each machine measures its own
  baseline, a measured trial's speedup is against its own machine's baseline, and measured
  points are labelled `cpu-local@<host>`, so the report's per-target tables group them by
  machine and no figure from one machine is read as if it came from another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import optuna

from autoaccel.errors import UserError
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
    energy_source: str | None = None
    objective_ms: float | None = None
    """What the study minimised: the latency (single-stream; the default) or ms per query
    (offline/server)."""
    scenario: dict[str, Any] = field(default_factory=dict)
    machine: str | None = None
    """The host that measured a measured point (None for estimates and older studies)."""
    plan: dict[str, int] | None = None
    """An estimated point's plan (its scenario's pick); None for a measured point."""
    plans: dict[str, str] = field(default_factory=dict)
    """An estimated point's plan per goal (latency, throughput, cost, energy), in words: each
    figure of the point is that goal's best plan for this build on its target."""
    speedup_basis: str = "measured"
    """What `speedup` divides: `measured` (this machine's measured baseline) or
    `estimated:<profile>` (the baseline projected on the same target by the same model)."""

    def __post_init__(self) -> None:
        if self.objective_ms is None:
            object.__setattr__(self, "objective_ms", self.latency_ms)

    @property
    def measured(self) -> bool:
        return self.latency_source == "measured"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


BASELINE_PREFIX = "baseline@"


def baseline_key(host: str) -> str:
    """The study user attr holding the baseline measured on `host`."""
    return f"{BASELINE_PREFIX}{host}"


def machine_baselines(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """host -> the baseline that host measured."""
    return {
        k[len(BASELINE_PREFIX) :]: v
        for k, v in study.user_attrs.items()
        if k.startswith(BASELINE_PREFIX)
    }


def points(study: optuna.Study, baseline: dict[str, Any]) -> list[Point]:
    """Every completed trial as a point (feasible or not). A measured point's speedup and
    quality drop are against its own machine's baseline; with measured points from several
    machines, their target names the machine (`cpu-local@host`)."""
    baselines = machine_baselines(study)
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        result = t.user_attrs.get("result")
        if not result or "duplicate_of" in t.user_attrs:  # the same candidate, counted once
            continue
        recipe = t.user_attrs.get("recipe", t.params)
        hardware = result.get("hardware", {})
        scenario = hardware.get("scenario", {})
        host = (result.get("machine") or {}).get("host")
        own = baselines.get(host, baseline) if host else baseline
        out.append(
            Point(
                trial=t.number,
                recipe=recipe,
                description=describe_recipe(recipe),
                target=result["target"],
                accuracy=t.values[0],
                accuracy_drop=own["accuracy"] - t.values[0],
                latency_ms=result.get("latency_ms", t.values[1]),
                latency_p90_ms=result["latency_p90_ms"],
                latency_source=result["latency_source"],
                speedup=objective_of(own) / t.values[1],
                size_mb=result["size_mb"],
                quality=result["quality"],
                feasible=all(v <= 0 for v in t.constraints.values()),
                throughput_qps=scenario.get("throughput_qps", hardware.get("throughput_qps")),
                energy_j=hardware.get("energy_j"),
                cost_per_million_usd=hardware.get("cost_per_million_usd"),
                batch_size=hardware.get("batch_size", 1),
                energy_source=hardware.get("energy_source"),
                objective_ms=t.values[1],
                scenario=scenario,
                machine=host,
            )
        )
    hosts = {p.machine for p in out if p.measured and p.machine}
    if len(hosts) > 1:
        out = [
            replace(p, target=f"{p.target}@{p.machine}") if p.measured and p.machine else p
            for p in out
        ]
    return out


def pareto(study: optuna.Study, all_points: list[Point]) -> list[Point]:
    """Feasible, non-dominated points (Optuna's `best_trials`), fastest first."""
    best = {t.number for t in study.best_trials}
    return sorted((p for p in all_points if p.trial in best), key=lambda p: p.objective_ms)


def objective_of(baseline: dict[str, Any]) -> float:
    """The baseline's value of the study's objective (studies before scenarios: latency)."""
    return baseline.get("objective_ms", baseline["latency_ms"])


# prefer -> (Point attribute, words for people)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "latency": ("objective_ms", "median latency (ms per query in offline/server scenarios)"),
    "cost": ("cost_per_million_usd", "cost per million inferences"),
    "energy": ("energy_j", "energy per inference"),
}
SUB_MS_NOISE = 0.15  # relative noise of a sub-millisecond measured latency
NOISE = 0.05  # relative noise of a measured latency of 1 ms or more


def tie_tolerance(latency_ms: float) -> float:
    """How far (relative) a measured figure may be above the best and still tie with it."""
    return SUB_MS_NOISE if latency_ms < 1.0 else NOISE


def figure(point: Point, prefer: str) -> float | None:
    return getattr(point, _objective(prefer)[0])


def objective_frontier(all_points: list[Point], prefer: str = "latency") -> list[Point]:
    """Feasible points that have the figure and that no other such point beats on both
    quality and the figure; best figure first."""
    pool = _pool(all_points, prefer)
    front = [
        p
        for p in pool
        if not any(
            q.accuracy >= p.accuracy
            and figure(q, prefer) <= figure(p, prefer)
            and (q.accuracy > p.accuracy or figure(q, prefer) < figure(p, prefer))
            for q in pool
        )
    ]
    return sorted(front, key=lambda p: (figure(p, prefer), -p.accuracy, p.trial))


def choose(all_points: list[Point], prefer: str = "latency") -> tuple[Point | None, str]:
    """The policy's pick among feasible points for one objective, and why (module doc)."""
    attr, words = _objective(prefer)
    feasible = [p for p in all_points if p.feasible]
    pool = _pool(all_points, prefer)
    if not pool:
        why = (
            f"none of the {len(feasible)} feasible candidates has a {words} figure"
            if feasible
            else "no candidate meets the accuracy limit"
        )
        return None, why
    best = min(pool, key=lambda p: (figure(p, prefer), -p.accuracy, not p.measured, p.trial))
    why = f"lowest {words} among {len(pool)} feasible candidate{'s' * (len(pool) != 1)}"
    if best.measured:
        return best, why
    value = figure(best, prefer)
    tied = [
        p
        for p in pool
        if p.measured and figure(p, prefer) <= value * (1 + tie_tolerance(p.latency_ms))
    ]
    if not tied:
        return best, f"{why} ({best.latency_source})"
    pick = min(tied, key=lambda p: (figure(p, prefer), -p.accuracy, p.trial))
    tol = tie_tolerance(pick.latency_ms)
    mine, theirs = _fmt(figure(pick, prefer), prefer), _fmt(value, prefer)
    return pick, (
        f"{why.replace('lowest', 'within noise of the lowest')}: trial {pick.trial}, measured "
        f"on {pick.target} ({mine}), ties within {tol:.0%} with trial {best.trial} "
        f"({best.latency_source}, {theirs}); a measured figure is preferred to an estimate"
    )


def recommend(
    study_name: str,
    workload: dict[str, str],
    baseline: dict[str, Any],
    limit: float,
    frontier: list[Point],
    all_points: list[Point],
    prefer: str = "latency",
    baselines: dict[str, dict[str, Any]] | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """The recommendation JSON. `frontier` is quality against latency (Optuna's
    `best_trials`); `prefer` picks the objective the recommendation minimises; `baselines`
    (host -> baseline) gives each measured point its own machine's baseline; `host` is the
    machine whose best measured point is `best_measured` (default: this one)."""
    import socket

    host = host or socket.gethostname()
    baselines = baselines or {}

    def own(p: Point) -> dict[str, Any]:
        return baselines.get(p.machine, baseline) if p.machine else baseline

    _, words = _objective(prefer)
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
        "prefer": prefer,
        "policy": (
            f"prefer {prefer}: lowest {words} among the feasible builds measured here (other "
            "hardware is ranked apart, from each target's projections)"
        ),
        "recommended": None,
        "rationale": None,
        "reason": None,
        "frontier": [p.as_dict() for p in frontier],
    }
    candidates = all_points or frontier
    if prefer != "latency":
        rec["objective_frontier"] = [p.as_dict() for p in objective_frontier(candidates, prefer)]
    pick, why = choose(candidates, prefer)
    if pick is not None:
        rec["recommended"] = {**pick.as_dict(), "summary": summary(pick, own(pick), workload)}
        rec["rationale"] = why
    measured = [p for p in candidates if p.feasible and p.measured and p.machine in (None, host)]
    if measured:
        # the best on this machine, measured: what a user can run and re-time today
        here = min(measured, key=lambda p: p.objective_ms)
        rec["best_measured"] = {**here.as_dict(), "summary": summary(here, own(here), workload)}
    else:
        rec["best_measured"] = None
    machines = sorted({p.machine for p in candidates if p.measured and p.machine})
    if len(machines) > 1:
        rec["machines"] = {
            m: (baselines.get(m) or {}).get("machine", {"host": m}) for m in machines
        }
    if pick is None and any(p.feasible for p in candidates):
        rec["reason"] = f"prefer {prefer}: {why}"
    elif pick is None and candidates:
        closest = sorted(candidates, key=lambda p: (p.accuracy_drop, p.objective_ms))[:3]
        rec["reason"] = (
            f"no candidate kept {workload['metric']} within {limit} of the baseline "
            f"({baseline['accuracy']:.4f}); the closest was trial {closest[0].trial} "
            f"(drop {closest[0].accuracy_drop:.4f})"
        )
        rec["closest"] = [p.as_dict() for p in closest]
    elif pick is None:
        rec["reason"] = "no trial completed; see the failed trials' reasons"
    return rec


def _objective(prefer: str) -> tuple[str, str]:
    if prefer not in OBJECTIVES:
        raise UserError(f"prefer {prefer!r}: use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[prefer]


def _pool(all_points: list[Point], prefer: str) -> list[Point]:
    return [p for p in all_points if p.feasible and figure(p, prefer) is not None]


def _fmt(value: float, prefer: str) -> str:
    if prefer == "cost":
        return f"${value:.4g} per million"
    return f"{value:.4g} {'ms' if prefer == 'latency' else 'J'}"


def summary(point: Point, baseline: dict[str, Any], workload: dict[str, str]) -> str:
    source = (
        f"measured on {point.target}"
        if point.latency_source == "measured"
        else f"{point.latency_source}, against the baseline measured on {baseline['target']}"
    )
    drop = point.accuracy_drop
    change = f"{workload['metric']} {-drop:+.4f}" if drop else f"{workload['metric']} unchanged"
    scenario = point.scenario.get("scenario", "single-stream")
    if scenario == "single-stream":
        figures = f"{point.latency_ms:.3f} ms vs {baseline['latency_ms']:.3f} ms"
    else:
        base = baseline["scenario"]
        how = (
            f"batch {point.scenario['batch_size']}"
            if scenario == "offline"
            else f"max batch {point.scenario['max_batch']}, window "
            f"{point.scenario['window_ms']:g} ms, p99 {point.scenario['p99_ms']:.1f} ms <= "
            f"{point.scenario['latency_bound_ms']:g} ms"
        )
        figures = (
            f"{scenario}: {point.throughput_qps:,.0f} vs {base['throughput_qps']:,.0f} queries/s, "
            f"{how}"
        )
    return (
        f"{point.description}: {point.speedup:.1f}x faster than {baseline['description']} "
        f"({figures}, {source}), "
        f"{change} ({point.accuracy:.4f} vs {baseline['accuracy']:.4f})"
    )
