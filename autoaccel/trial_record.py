"""Record a trial's end in both stores: the Optuna study (what the sampler learns from, and
what reports are rebuilt from) and its MLflow run (what a person reviews).

Only measured figures enter `study.tell`: the objective is the measured target's (cpu-local's)
latency or scenario figure. Each estimated target's projection of the build is stored beside
it (`projections` user attr, `projected.<target>.*` MLflow metrics and a `projections.json`
artifact), never told to the sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from autoaccel.early_stop import TrainingStopped
from autoaccel.frontier import objective_of
from autoaccel.trial_eval import Outcome


@dataclass
class TrialEvent:
    """What the progress display is told after each trial."""

    number: int
    done: int
    budget: int
    failed: int
    state: str
    speedup: float | None = None
    feasible: bool = False
    reason: str | None = None


class TrialRecorder:
    """Writes trials' ends for one search (its study, tracker, limit and machine)."""

    def __init__(
        self,
        study: optuna.Study,
        tracker,
        limit: float,
        machine: dict,
        objective: str,
        limits: dict[str, float] | None = None,
    ):
        self.study = study
        self.tracker = tracker
        self.limit = limit
        self.limits = dict(limits or {})
        """More limits (`--limit`): figure -> largest drop, each its own Optuna constraint."""
        self.machine = machine
        self.objective = objective  # the measured target the study optimises

    def tags(self) -> dict[str, str]:
        return {
            "target": self.objective,
            "latency_source": "measured",
            "pareto": "false",
            "machine": str(self.machine["host"]),  # workers on many machines
        }

    def complete(
        self, trial, recipe: dict[str, Any], out: Outcome, baseline: dict[str, Any], metric: str
    ) -> tuple[float, bool]:
        """A built, judged, measured and projected candidate; returns (speedup, feasible)."""
        accuracy = out.quality[metric]
        drop = baseline["accuracy"] - accuracy
        mine = out.objective
        paired = mine.get("paired")
        if paired:  # timed beside the baseline: the ratio is the figure (evaluate.paired)
            speedup = paired["speedup"]
            objective = objective_of(baseline) / speedup  # on the baseline's quiet scale
        else:
            objective = mine["objective_ms"]
            speedup = objective_of(baseline) / objective
        feasible = self._constrain(trial, drop, out.quality, baseline)
        hardware = {
            k: v for k, v in mine.items() if k not in ("twin", "source", "device", "paired")
        }
        trial.set_user_attr(
            "result",
            {
                "quality": out.quality,
                "quality_cached": out.quality_cached,
                "latency_ms": mine["latency_ms"],
                "objective_ms": objective,
                "latency_p90_ms": mine["latency_p90_ms"],
                "latency_runs": mine["latency_runs"],
                "latency_source": "measured",
                "target": self.objective,
                "size_mb": out.size_mb,
                "machine": self.machine,
                "notes": out.notes,
                "seconds": {"build": out.build_s, "train": out.train_s, **out.seconds},
                "hardware": {**hardware, "batch_size": 1},
                "measured": out.measured,
                **({"paired": paired} if paired else {}),
            },
        )
        trial.set_user_attr("projections", out.projections)
        metrics = {
            **{f"quality.{k}": v for k, v in out.quality.items()},
            **self._drops(out.quality, baseline),
            "accuracy": accuracy,
            "accuracy_drop": drop,
            "latency_ms": mine["latency_ms"],
            "latency_p90_ms": mine["latency_p90_ms"],
            "latency_runs": mine["latency_runs"],
            "speedup": speedup,
            **_paired_metrics(paired),
            "objective_ms": objective,
            "size_mb": out.size_mb,
            "seconds.build": out.build_s,
            "seconds.train": out.train_s,
            **{f"seconds.{k}": v for k, v in out.seconds.items()},
            **{k: v for k, v in hardware.items() if isinstance(v, int | float)},
            **{
                f"scenario.{k}": v
                for k, v in mine["scenario"].items()
                if isinstance(v, int | float) and k != "objective_ms"
            },
            **measured_metrics(out.measured),
            **projection_metrics(out.projections),
        }
        if out.curve:
            trial.set_user_attr("curve", out.curve)
            metrics.update(curve_metrics(out.curve))
        if out.untrained_ms is not None:  # timed before training, for the early-stop rule
            trial.set_user_attr("untrained_ms", out.untrained_ms)
            metrics["untrained_objective_ms"] = out.untrained_ms
        tags = {**self.tags(), "feasible": str(feasible).lower()}
        files = {"projections.json": out.projections, "measured.json": out.measured}
        self._log(trial, recipe, metrics, tags, json_files=files)
        self.study.tell(trial, [accuracy, objective])
        return speedup, feasible

    def _constrain(self, trial, drop: float, quality: dict, baseline: dict[str, Any]) -> bool:
        """Tell Optuna every limit as a constraint (feasible when all are <= 0): the judged
        metric's as `accuracy_drop`, each `--limit` as `limit.<figure>`; whether all hold."""
        trial.set_constraint("accuracy_drop", drop - self.limit)
        feasible = drop <= self.limit
        for name, over in self._drops(quality, baseline).items():
            excess = over - self.limits[name.removeprefix("drop.")]
            trial.set_constraint(f"limit.{name.removeprefix('drop.')}", excess)
            feasible = feasible and excess <= 0
        return feasible

    def _drops(self, quality: dict, baseline: dict[str, Any]) -> dict[str, float]:
        """Each limited figure's drop below the baseline, as `drop.<figure>`."""
        return {f"drop.{k}": baseline["quality"][k] - quality[k] for k in self.limits}

    def stopped(self, trial, recipe, stop: TrainingStopped, baseline_accuracy: float) -> None:
        """A training run the early-stopping rule cut short: PRUNED, with the accuracy
        constraint it was projected to violate, so samplers learn to avoid its region."""
        projected_drop = baseline_accuracy - stop.projected
        trial.set_constraint("accuracy_drop", projected_drop - self.limit)
        trial.set_user_attr("curve", stop.curve)
        trial.set_user_attr("early_stopped", str(stop))
        trial.set_user_attr("fail_reason", str(stop))
        metrics = {"seconds.build": stop.seconds, **curve_metrics(stop.curve)}
        if stop.untrained_ms is not None:
            trial.set_user_attr("untrained_ms", stop.untrained_ms)
            metrics["untrained_objective_ms"] = stop.untrained_ms
        tags = {**self.tags(), "early_stopped": "true", "fail_reason": str(stop)}
        tags["feasible"] = "false"
        self._log(trial, recipe, metrics, tags, status="KILLED")
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def stopped_again(self, trial, recipe, earlier) -> None:
        """The same recipe as an early-stopped trial: it would stop again."""
        reason = earlier.user_attrs["early_stopped"]
        for key, value in earlier.constraints.items():
            trial.set_constraint(key, value)
        trial.set_user_attr("early_stopped", reason)
        trial.set_user_attr("duplicate_of", earlier.number)
        tags = {**self.tags(), "early_stopped": "true", "fail_reason": reason}
        tags.update(feasible="false", duplicate_of=str(earlier.number))
        self._log(trial, recipe, {}, tags, status="KILLED")
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def reuse(self, trial, recipe, earlier, baseline: dict[str, Any]) -> tuple[float, bool]:
        """The same recipe as a completed trial (samplers repeat points in small spaces): its
        figures are shown again instead of spending minutes on the same candidate.

        Told to Optuna as PRUNED with the earlier trial's constraints, not as COMPLETE with
        its values: a second COMPLETE copy of a Pareto point fills TPE's "good" group with it
        and makes the next repeat likelier (trial 34 of a study came back 18 times); PRUNED,
        a feasible repeat joins the other group and the sampler looks elsewhere. The earlier
        trial stays the one observation of the recipe (and the only one a frontier, fANOVA or
        export sees); `workers.counted` does not charge the repeat to the budget."""
        drop = baseline["accuracy"] - earlier.values[0]
        quality = earlier.user_attrs["result"]["quality"]
        feasible = self._constrain(trial, drop, quality, baseline)
        trial.set_user_attr("result", earlier.user_attrs["result"])
        trial.set_user_attr("projections", earlier.user_attrs.get("projections", {}))
        trial.set_user_attr("duplicate_of", earlier.number)
        speedup = objective_of(baseline) / earlier.values[1]
        metrics = {
            **self._drops(quality, baseline),
            "accuracy": earlier.values[0],
            "accuracy_drop": drop,
            "latency_ms": earlier.values[1],
            "speedup": speedup,
        }
        tags = {**self.tags(), "feasible": str(feasible).lower()}
        tags["duplicate_of"] = str(earlier.number)
        self._log(trial, recipe, metrics, tags)
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return speedup, feasible

    def fail(
        self,
        trial,
        recipe,
        reason: str,
        trace: str = "",
        infeasible: bool = False,
        kind: str = "",
    ) -> None:
        """Record a failed trial. A recipe that cannot run as asked (InfeasibleRecipe, its
        `kind` kept) is told to Optuna as PRUNED with a violated constraint, not FAIL:
        samplers ignore FAIL trials and would keep proposing the same impossible recipe,
        while TPE ranks infeasible trials below every feasible one and learns to avoid them.
        Any other failure is FAIL with its traceback kept in the study (`traceback` user
        attr) and in the MLflow run (tag: its end; `traceback.txt`: all of it), so a bug is
        never mistaken for an impossible recipe and can be debugged from either store."""
        tags = {**self.tags(), "fail_reason": reason[:5000], "infeasible": str(infeasible).lower()}
        if infeasible and kind:
            tags["infeasible_kind"] = kind
        files = {}
        if trace:
            tags["traceback"] = trace[-5000:]
            files["traceback.txt"] = trace
        self._log(trial, recipe, {}, tags, failed=True, text_files=files or None)
        trial.set_user_attr("fail_reason", reason)
        if trace:
            trial.set_user_attr("traceback", trace[-_TRACE_CHARS:])
        if infeasible:
            if kind:
                trial.set_user_attr("infeasible_kind", kind)
            trial.set_constraint("recipe_runs", 1.0)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _log(self, trial, recipe: dict[str, Any], metrics, tags, **kw: Any) -> None:
        """The trial's MLflow run, dated from the trial's start (when it was asked for) to
        now (its end), and its id kept with the trial (none while the record waits for the
        tracking server: its `trial` tag finds it then)."""
        run_id = self.tracker.log_trial(
            trial.number, recipe, metrics, tags, start=trial.datetime_start, **kw
        )
        if run_id is not None:
            trial.set_user_attr("mlflow_run_id", run_id)


_TRACE_CHARS = 20_000
"""The end of a traceback kept in the study (a MySQL TEXT holds 64 KB); MLflow has it all."""


def same_recipe(study: optuna.Study, recipe: dict[str, Any]):
    """The completed (or early-stopped) trial that judged exactly this recipe, or None
    (never a repeat of it)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for t in study.get_trials(deepcopy=False, states=states):
        if "duplicate_of" in t.user_attrs:
            continue
        if t.user_attrs.get("recipe") == recipe and (
            "result" in t.user_attrs or "early_stopped" in t.user_attrs
        ):
            return t
    return None


def measured_metrics(measured: dict[str, dict[str, Any]]) -> dict[str, float]:
    """`measured.<target>.latency_ms` and its twin's estimate, for every measured target."""
    out = {}
    for name, figures in measured.items():
        if "latency_ms" in figures:
            out[f"measured.{name}.latency_ms"] = figures["latency_ms"]
        twin = (figures.get("twin") or {}).get("best", {}).get("latency")
        if twin:
            out[f"measured.{name}.twin_estimate_ms"] = twin["latency_ms"]
    return out


def projection_metrics(projections: dict[str, dict[str, Any]]) -> dict[str, float]:
    """`projected.<target>.<figure>` of the plan each target's scenario picks."""
    out = {}
    for name, proj in projections.items():
        pick = proj["best"].get("scenario")
        if pick is None:
            continue
        for key in ("latency_ms", "throughput_qps", "cost_per_million_usd", "energy_j"):
            if pick.get(key) is not None:
                out[f"projected.{name}.{key}"] = pick[key]
    return out


def curve_metrics(curve: dict[str, dict[float, float]]) -> dict[str, float]:
    """`train_quality.<stage>.<percent>` metrics: the quality seen during training."""
    return {
        f"train_quality.{stage}.{round(float(f) * 100)}pct": q
        for stage, points in curve.items()
        for f, q in points.items()
    }


def _paired_metrics(paired: dict[str, Any] | None) -> dict[str, float]:
    """The speedup's interval, rounds and the other work during its timing, for MLflow."""
    if not paired:
        return {}
    return {
        "speedup_ci_low": paired["ci_low"],
        "speedup_ci_high": paired["ci_high"],
        "speedup_rounds": paired["rounds"],
        "timing.other_cores": paired["contention"]["other_cores"],
        "timing.load_avg": paired["contention"]["load_avg"],
    }
