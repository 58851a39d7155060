"""Stop a training trial early when it clearly cannot end on the frontier.

Optuna's pruners (`trial.report` / `should_prune`) do not support multi-objective studies, so
the rule is ours, and deliberately conservative:

At fixed fractions of a training run (`FRACTIONS`) the model's quality is computed on the
workload's judging data (the same `evaluate` the trial ends with, run on the torch model). From
the study's completed training trials we learn the largest *gain* any of them made from that
fraction of the same stage (distill or prune) to its final quality (the trial's objective,
after export and quantization): `headroom(f) = max(final - q_f)`. A run is stopped when even
that much gain, plus a margin, cannot lift it to the accuracy limit:

    q_f + headroom(f) + margin < baseline - max_drop

Such a trial would be infeasible, and under Optuna's constrained domination every feasible
point dominates every infeasible one: it is *clearly dominated*. Nothing is stopped until
`n_startup` completed curves of that stage exist. A stopped trial is told to Optuna as PRUNED
with its projected constraint violation, its training time and curve are kept, and nothing
partial is cached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

FRACTIONS = (0.25, 0.5)
"""Where runs are checked: early enough to save most of the training, late enough to learn."""


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
    ) -> None:
        super().__init__(reason)
        self.projected = projected
        self.curve = curve or {}
        self.seconds = seconds

    def __reduce__(self):  # keep every field across the isolated worker's pipe
        return (type(self), (str(self), self.projected, self.curve, self.seconds))


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

    def headroom(self, stage: str, fraction: float) -> float | None:
        """The largest gain from `fraction` to the end seen in this stage's curves, or None
        while fewer than `n_startup` curves say anything about that fraction."""
        gains = [c.final - c.points[fraction] for c in self.history if c.stage == stage]
        gains = [g for g in gains if g == g]  # drop NaN
        if len(gains) < self.n_startup:
            return None
        return max(gains)

    def check(self, stage: str, fraction: float, quality: float) -> None:
        """Raise `TrainingStopped` when the run cannot reach the limit."""
        headroom = self.headroom(stage, fraction)
        if headroom is None:
            return
        projected = quality + headroom
        if projected + self.margin < self.min_accuracy:
            raise TrainingStopped(
                f"stopped at {fraction:.0%} of {stage} training: quality {quality:.4f}, at "
                f"most {projected:.4f} by the best recovery in {self.count(stage)} earlier "
                f"trials, below the limit {self.min_accuracy:.4f}",
                projected,
            )

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

    def __call__(self, stage: str) -> _StageMonitor:
        return _StageMonitor(self, stage)


@dataclass
class _StageMonitor:
    trial: TrialMonitor
    stage: str

    @property
    def fractions(self) -> tuple[float, ...]:
        return self.trial.fractions

    def __call__(self, model: Any, fraction: float) -> None:
        quality = self.trial.evaluate(model)
        self.trial.curve.setdefault(self.stage, {})[fraction] = quality
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
