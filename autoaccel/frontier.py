"""From stored trials to the Pareto frontier and one recommendation.

Everything here is rebuilt from the study's storage alone, so a resumed or concurrent search
always reports the same frontier for the same trials.

The recommendation policy that reads these points is `autoaccel.recommend`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import optuna

from autoaccel.confirmation import stored_confirmations
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
    speedup_ci: tuple[float, float] | None = None
    """A measured speedup's 95 % interval (`evaluate.paired`); None for older or estimated."""
    rounds: int | None = None  # interleaved rounds behind a measured speedup
    contended: bool = False  # other work was busy on the CPU while it was timed
    confirmed: bool = False  # its speedup is the end-of-search confirmation's
    paired_ms: tuple[float, float] | None = None
    """(candidate, baseline) figures over all runs of the window its speedup was timed in."""

    @property
    def noise(self) -> float:
        """The relative noise of this point's figure: its interval's half width where it has
        one, else the protocol's rule of thumb (`tie_tolerance`)."""
        if self.speedup_ci:
            low, high = self.speedup_ci
            return max((high - low) / (2 * self.speedup), MIN_NOISE)
        return tie_tolerance(self.latency_ms)

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
    confirmations = stored_confirmations(study.user_attrs)
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
        paired = result.get("paired")
        confirmed = confirmations.get(t.number)
        if confirmed:
            paired = confirmed  # the later, longer timing by the same rule is the one quoted
        speedup = paired["speedup"] if paired else objective_of(own) / t.values[1]
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
                speedup=speedup,
                size_mb=result["size_mb"],
                quality=result["quality"],
                feasible=all(v <= 0 for v in t.constraints.values()),
                throughput_qps=scenario.get("throughput_qps", hardware.get("throughput_qps")),
                energy_j=hardware.get("energy_j"),
                cost_per_million_usd=hardware.get("cost_per_million_usd"),
                batch_size=hardware.get("batch_size", 1),
                energy_source=hardware.get("energy_source"),
                objective_ms=objective_of(own) / speedup if paired else t.values[1],
                scenario=scenario,
                machine=host,
                speedup_ci=(paired["ci_low"], paired["ci_high"]) if paired else None,
                rounds=paired["rounds"] if paired else None,
                contended=bool(paired and paired["contention"]["busy"]),
                confirmed=confirmed is not None,
                paired_ms=(paired["candidate_ms"], paired["reference_ms"]) if paired else None,
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
    """Feasible points no other feasible point dominates beyond noise, fastest first.

    `q` dominates `p` when it is at least as good on quality and on the objective, and
    better on one of them, where "at least as good" and "better" on the objective allow for
    the timing noise of both (their intervals' half widths): a point only 3 % slower than
    another whose figures move 10 % between timings stays on the frontier. `study` is kept
    for callers; the frontier is rebuilt from the points alone."""
    del study
    pool = [p for p in all_points if p.feasible]

    def dominates(q: Point, p: Point) -> bool:
        margin = 1 + max(p.noise, q.noise)
        return (
            q.accuracy >= p.accuracy
            and q.objective_ms <= p.objective_ms * margin
            and (q.accuracy > p.accuracy or q.objective_ms * margin < p.objective_ms)
        )

    front = [p for p in pool if not any(dominates(q, p) for q in pool if q is not p)]
    return sorted(front, key=lambda p: (p.objective_ms, -p.accuracy, p.trial))


def objective_of(baseline: dict[str, Any]) -> float:
    """The baseline's value of the study's objective (studies before scenarios: latency)."""
    return baseline.get("objective_ms", baseline["latency_ms"])


# prefer -> (Point attribute, words for people)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "latency": ("objective_ms", "median latency (ms per query in offline/server scenarios)"),
    "cost": ("cost_per_million_usd", "cost per million inferences"),
    "energy": ("energy_j", "energy per inference"),
}
MIN_NOISE = 0.02  # the least relative noise any timing is credited with
SUB_MS_NOISE = 0.15  # relative noise of a sub-millisecond measured latency
NOISE = 0.05  # relative noise of a measured latency of 1 ms or more


def tie_tolerance(latency_ms: float) -> float:
    """How far (relative) a measured figure may be above the best and still tie with it."""
    return SUB_MS_NOISE if latency_ms < 1.0 else NOISE


def figure(point: Point, prefer: str) -> float | None:
    return getattr(point, objective_spec(prefer)[0])


def objective_frontier(all_points: list[Point], prefer: str = "latency") -> list[Point]:
    """Feasible points that have the figure and that no other such point beats on both
    quality and the figure; best figure first."""
    pool = with_figure(all_points, prefer)
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


def objective_spec(prefer: str) -> tuple[str, str]:
    if prefer not in OBJECTIVES:
        raise UserError(f"prefer {prefer!r}: use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[prefer]


def with_figure(all_points: list[Point], prefer: str) -> list[Point]:
    return [p for p in all_points if p.feasible and figure(p, prefer) is not None]
