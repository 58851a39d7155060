"""Stop a training trial early when it clearly cannot end on the frontier.

Optuna's pruners (`trial.report` / `should_prune`) do not support multi-objective studies, so
the rule is ours, and deliberately conservative:

At fixed fractions of a training run (`FRACTIONS`) the model's quality is computed on the
workload's judging data (the same `evaluate` the trial ends with, run on the torch model). From
the study's completed training trials we learn the largest *gain* any of them made from that
fraction of the same stage (distill or prune) to its final quality (the trial's objective,
after export and quantization), never below 0: `headroom(f) = max(0, final - q_f)` over
them. A run is stopped when even that much gain, plus a margin, cannot lift it to the
accuracy limit:

    q_f + headroom(f) + margin < baseline - max_drop

judged at the last check only (0.5: a small student can gain more after a quarter than the
larger ones whose curves came first), and in a recipe that trains twice (a student, then a
pruned student's fine-tune) only in its last stage, as the later stage trains toward the
teacher too (its first stage is not checked at all). Such a trial would be infeasible, and
under Optuna's constrained domination every feasible point dominates every infeasible one:
it is *clearly dominated*. Nothing is stopped until `n_startup` completed curves of that
stage exist.

The same bound also stops a run that could stay within the limit but never reach the
frontier (multi-fidelity: full training only for students that can end on it). Training
changes weights, never the build: a trial whose recipe equals a completed one's except for
`TRAINING_ONLY` settings (steps, temperature, alpha, fine-tune steps) runs as fast as that
build did, so its objective is known before it trains. It is stopped when a completed
feasible candidate is faster beyond timing noise (`NOISE`) and better than even its best
reachable quality plus the margin:

    q_f + headroom(f) + margin <= q_other   and   objective_other * (1 + NOISE) <= own

Where no such build was timed, the trial times its own build *untrained* before it trains
(the same structure and quantization with the training steps at 0: weights change what a
model computes, not how long it takes), in a short interleaved timing beside the baseline,
so a slow architecture that cannot beat a faster, better candidate stops at a quarter of its
training instead of finishing it. The timing is kept (`untrained_ms`) for later trials of the
same build, and only taken when the rule could use it: a stage with enough curves and a
feasible candidate to compare with. A stopped trial is told to Optuna as PRUNED with its
projected constraint violation, its training time and curve are kept, and nothing partial is
cached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

FRACTIONS = (0.25, 0.5)
"""Where runs are checked: early enough to save most of the training, late enough to learn."""
TRAINING_ONLY = ("distill.steps", "distill.temperature", "distill.alpha", "prune.finetune_steps")
"""Recipe settings that change how a model is trained, never what is built and timed."""
NOISE = 0.05
"""How much faster (relative) another candidate must be to count as faster than a build."""
UNTRAINED = " (timed untrained, before training)"
TRAINING_STEPS = {"distill.steps": "distill", "prune.finetune_steps": "prune"}
"""Step counts of the training stages (recipe key -> stage): 0 builds the model untrained."""


class TrainingStopped(Exception):
    """A training run stopped by the rule; `projected` is the best final quality it could
    still reach by the study's own history; `curve` and `seconds` are what the trial keeps
    of the run (filled in by the evaluator)."""

    def __init__(
        self,
        reason: str,
        projected: float,
        curve: dict[str, dict[float, float]] | None = None,
        seconds: float = 0.0,
        untrained_ms: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.projected = projected
        self.curve = curve or {}
        self.seconds = seconds
        self.untrained_ms = untrained_ms

    def __reduce__(self):  # keep every field across the isolated worker's pipe
        fields = (str(self), self.projected, self.curve, self.seconds, self.untrained_ms)
        return (type(self), fields)


@dataclass(frozen=True)
class Curve:
    """Quality of one completed trial's training stage at each checked fraction, and its
    final objective value."""

    stage: str
    points: dict[float, float]
    final: float


@dataclass
class HeadroomRule:
    min_accuracy: float
    history: list[Curve]
    margin: float
    n_startup: int = 3
    frontier: list[tuple[float, float]] = field(default_factory=list)
    """(quality, objective ms) of the study's completed feasible candidates."""
    objective_ms: float | None = None
    """This trial's objective where a build with the same recipe but its training settings
    was timed already, trained or not; None: not known yet (the evaluator may time it
    untrained: `wants_timing`)."""
    baseline_ms: float | None = None
    """The baseline's objective: an untrained build timed beside the baseline is put on its
    scale, as every completed trial's objective is."""
    timed_how: str = ""
    """How `objective_ms` was timed, for the stop's reason ('' for a trained build)."""

    def wants_timing(self, recipe: dict[str, Any]) -> bool:
        """Whether timing this recipe's untrained build could let the rule stop its
        training: its speed is unknown, some completed feasible candidate could dominate
        it, and a stage it trains has enough curves for the rule to speak."""
        if self.objective_ms is not None or not self.frontier:
            return False
        return any(self.headroom(st, FRACTIONS[0]) is not None for st in training_stages(recipe))

    def headroom(self, stage: str, fraction: float) -> float | None:
        """The largest gain from `fraction` to the end seen in this stage's curves, or None
        while fewer than `n_startup` curves say anything about that fraction."""
        gains = [c.final - c.points[fraction] for c in self.history if c.stage == stage]
        gains = [g for g in gains if g == g]  # drop NaN
        if len(gains) < self.n_startup:
            return None
        # never below 0: a final below the run's own quality at `fraction` is another
        # recipe's quantization or export losing quality, not something this run must lose
        return max(0.0, *gains)

    def check(self, stage: str, fraction: float, quality: float) -> None:
        """Raise `TrainingStopped` when the run cannot reach the limit."""
        headroom = self.headroom(stage, fraction)
        if headroom is None:
            return
        projected = quality + headroom
        reach = (
            f"quality {quality:.4f}, at most {projected:.4f} by the best recovery in "
            f"{self.count(stage)} earlier trials"
        )
        # below the limit: judged only at the last check, where the least gain is left to
        # guess (a 1-layer student gains more after a quarter than the larger ones whose
        # curves came first); faster-and-better candidates are judged at every check
        last = fraction == FRACTIONS[-1]
        if last and projected + self.margin < self.min_accuracy:
            raise TrainingStopped(
                f"stopped at {fraction:.0%} of {stage} training: {reach}, below the limit "
                f"{self.min_accuracy:.4f}",
                projected,
            )
        better = self.dominated_by(projected)
        if better is not None:
            raise TrainingStopped(
                f"stopped at {fraction:.0%} of {stage} training: {reach}; the same build "
                f"runs in {self.objective_ms:.4g} ms{self.timed_how}, and a completed "
                "candidate is faster "
                f"({better[1]:.4g} ms) and better ({better[0]:.4f}): it cannot reach the "
                "frontier",
                projected,
            )

    def dominated_by(self, projected: float) -> tuple[float, float] | None:
        """The best-quality completed candidate that is faster than this build beyond noise
        and better than `projected` plus the margin, or None."""
        if self.objective_ms is None:
            return None
        faster = [
            (q, ms)
            for q, ms in self.frontier
            if ms * (1 + NOISE) <= self.objective_ms and q >= projected + self.margin
        ]
        return max(faster, default=None)

    def count(self, stage: str) -> int:
        return sum(c.stage == stage for c in self.history)


@dataclass
class TrialMonitor:
    """Watches every training stage of one trial; the build asks it for one per stage.

    `evaluate(model)` returns the workload's primary quality of a torch model. Every check
    is recorded in `curve` (stage -> {fraction: quality}) whether or not it stops the run,
    so later trials learn from this one.
    """

    rule: HeadroomRule
    evaluate: Callable[[Any], float]
    curve: dict[str, dict[float, float]] = field(default_factory=dict)
    fractions: tuple[float, ...] = FRACTIONS
    stages: tuple[str, ...] = ()
    """The stages the recipe trains, in order (`training_stages`): only the last is judged,
    since a later stage trains toward the teacher too (a pruned student's fine-tune lifted
    MiniLM students by up to 0.03 after their distillation ended). Empty: judge every one."""

    def __call__(self, stage: str) -> _StageMonitor:
        return _StageMonitor(self, stage)


@dataclass
class _StageMonitor:
    trial: TrialMonitor
    stage: str

    @property
    def judged(self) -> bool:
        return not self.trial.stages or self.stage == self.trial.stages[-1]

    @property
    def fractions(self) -> tuple[float, ...]:
        """Where the training loop calls back: none in a stage that is not judged (its
        curve would teach nothing either: a two-stage final belongs to neither stage)."""
        return self.trial.fractions if self.judged else ()

    def __call__(self, model: Any, fraction: float) -> None:
        quality = self.trial.evaluate(model)
        self.trial.curve.setdefault(self.stage, {})[fraction] = quality
        if self.judged:
            self.trial.rule.check(self.stage, fraction, quality)


def curves_from(trials: Iterable[Any]) -> list[Curve]:
    """Curves of completed trials (Optuna FrozenTrials with a `curve` user attr).

    Only a trial whose curve has every checked fraction counts, and only for a single-stage
    run: with two stages the final quality cannot be attributed to either one.
    """
    out = []
    for t in trials:
        curve = t.user_attrs.get("curve") or {}
        if len(curve) != 1 or not t.values:
            continue
        ((stage, points),) = curve.items()
        points = {float(f): float(q) for f, q in points.items()}
        if all(f in points for f in FRACTIONS):
            out.append(Curve(stage, points, float(t.values[0])))
    return out


def model_stages(recipe: dict[str, Any]) -> list[str]:
    """The stages that change `recipe`'s model, trained or not, in build order."""
    active = {
        "distill": recipe.get("distill.mode") == "student",
        "prune": recipe.get("prune.mode", "none") != "none",
    }
    return [st for st in TRAINING_STEPS.values() if active[st]]


def training_stages(recipe: dict[str, Any]) -> list[str]:
    """The stages `recipe` trains (steps above 0), as the monitor names them."""
    steps = {st: key for key, st in TRAINING_STEPS.items()}
    return [st for st in model_stages(recipe) if recipe.get(steps[st], 0)]


def untrained(recipe: dict[str, Any]) -> dict[str, Any]:
    """The same build with no training: what times like the trained one."""
    return {**recipe, **{k: 0 for k in TRAINING_STEPS if k in recipe}}


def build_of(recipe: dict[str, Any]) -> tuple:
    """What a recipe builds and times, without how it trains: equal for two recipes whose
    candidates run equally fast."""
    return tuple(sorted((k, repr(v)) for k, v in recipe.items() if k not in TRAINING_ONLY))


def rule_for(
    trials: Iterable[Any],
    recipe: dict[str, Any],
    min_accuracy: float,
    margin: float,
    baseline_ms: float | None = None,
) -> HeadroomRule:
    """The rule for `recipe`'s trial from the study's finished trials (Optuna FrozenTrials
    with `recipe` and `curve` user attrs; completed ones with values (quality, objective ms),
    any with the `untrained_ms` its build was timed at before training)."""
    trials = [t for t in trials if "recipe" in t.user_attrs]
    done = [t for t in trials if t.values]
    feasible = [t for t in done if all(v <= 0 for v in t.constraints.values())]
    mine = build_of(recipe)
    same = sorted(t.values[1] for t in done if build_of(t.user_attrs["recipe"]) == mine)
    how = ""
    if not same:  # no trained build timed: one timed untrained, if any
        same = sorted(
            float(t.user_attrs["untrained_ms"])
            for t in trials
            if t.user_attrs.get("untrained_ms") and build_of(t.user_attrs["recipe"]) == mine
        )
        how = UNTRAINED if same else ""
    return HeadroomRule(
        min_accuracy=min_accuracy,
        history=curves_from(done),
        margin=margin,
        frontier=[(float(t.values[0]), float(t.values[1])) for t in feasible],
        objective_ms=float(same[len(same) // 2]) if same else None,
        baseline_ms=baseline_ms,
        timed_how=how,
    )


def torch_quality(workload: Any) -> Callable[[Any], float]:
    """The workload's primary metric for a torch model, on all usable cores."""

    def evaluate(model: Any) -> float:
        import torch

        from autoaccel.machine import usable_cores
        from autoaccel.workloads.base import Inputs

        threads = torch.get_num_threads()
        torch.set_num_threads(usable_cores())
        try:

            def predict(inputs: Inputs):
                with torch.inference_mode():
                    args = (torch.from_numpy(inputs[n]) for n in workload.input_names)
                    return model(*args).numpy()

            return float(workload.evaluate(predict)[workload.metric])
        finally:
            torch.set_num_threads(threads)

    return evaluate
