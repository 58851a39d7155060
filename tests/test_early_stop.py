"""Early stopping of training trials that cannot reach the accuracy limit."""

from __future__ import annotations

import copy
import sqlite3
from types import SimpleNamespace

import optuna
import pytest

import autoaccel
from autoaccel.early_stop import (
    FRACTIONS,
    Curve,
    HeadroomRule,
    TrainingStopped,
    TrialMonitor,
    curves_from,
    rule_for,
    training_stages,
    untrained,
)


def _curves(*gains_at_quarter: float, stage: str = "distill") -> list[Curve]:
    return [Curve(stage, {0.25: 0.5, 0.5: 0.5 + g / 2}, 0.5 + g) for g in gains_at_quarter]


def test_rule_never_stops_before_enough_curves():
    rule = HeadroomRule(min_accuracy=0.9, history=_curves(0.01, 0.02), margin=0.0)
    rule.check("distill", 0.25, 0.0)  # hopeless, but only two curves to learn from


def test_rule_stops_run_that_cannot_reach_limit_even_with_best_recovery():
    rule = HeadroomRule(min_accuracy=0.9, history=_curves(0.05, 0.10, 0.20), margin=0.01)
    assert rule.headroom("distill", 0.5) == pytest.approx(0.10)
    rule.check("distill", 0.25, 0.5)  # hopeless, but the limit is judged at the last check
    with pytest.raises(TrainingStopped, match="below the limit 0.9000") as stop:
        rule.check("distill", 0.5, 0.7)  # at most 0.80 + margin 0.01 < 0.90
    assert stop.value.projected == pytest.approx(0.80)


def test_rule_keeps_run_that_best_recovery_could_lift_to_limit():
    rule = HeadroomRule(min_accuracy=0.9, history=_curves(0.05, 0.10, 0.20), margin=0.01)
    rule.check("distill", 0.5, 0.80)  # 0.90 reachable: goes on
    rule.check("distill", 0.5, 0.795)  # 0.895 + margin 0.01 >= 0.90: still goes on


def test_another_recipes_quantization_loss_never_lowers_what_a_run_can_reach():
    rule = HeadroomRule(min_accuracy=0.6, history=_curves(-0.03, -0.02, -0.01), margin=0.0)
    assert rule.headroom("distill", 0.5) == 0.0  # they lost quality after training
    rule.check("distill", 0.5, 0.6)  # at the limit now: it may end there


def test_rule_learns_only_from_the_same_stage():
    rule = HeadroomRule(min_accuracy=0.9, history=_curves(0.0, 0.0, 0.0, stage="prune"), margin=0)
    rule.check("distill", 0.5, 0.1)  # no distill curves yet
    with pytest.raises(TrainingStopped):
        rule.check("prune", 0.5, 0.1)


def test_a_run_that_trains_twice_is_judged_in_its_last_stage_only():
    rule = HeadroomRule(min_accuracy=0.9, history=_curves(0.0, 0.0, 0.0), margin=0.0)
    history = rule.history + _curves(0.0, 0.0, 0.0, stage="prune")
    rule = HeadroomRule(min_accuracy=0.9, history=history, margin=0.0)
    monitor = TrialMonitor(rule, lambda model: 0.1, stages=("distill", "prune"))
    assert monitor("distill").fractions == () and monitor("prune").fractions == FRACTIONS
    monitor("distill")(object(), 0.5)  # hopeless as a student, but a fine-tune follows
    with pytest.raises(TrainingStopped):
        monitor("prune")(object(), 0.5)
    assert monitor.curve == {"distill": {0.5: 0.1}, "prune": {0.5: 0.1}}


def _frontier_rule(other: tuple[float, float], own_ms: float | None) -> HeadroomRule:
    """Limit 0.5 (never the reason here), 0.20 of headroom at 25 %, margin 0.01."""
    history = _curves(0.05, 0.10, 0.20)
    return HeadroomRule(0.5, history, 0.01, frontier=[other], objective_ms=own_ms)


def test_a_run_that_cannot_reach_the_frontier_is_stopped():
    # at most 0.70 + 0.20 = 0.90; a candidate twice as fast scores 0.95 >= 0.90 + 0.01
    with pytest.raises(TrainingStopped, match="cannot reach the frontier") as stop:
        _frontier_rule((0.95, 1.0), own_ms=2.0).check("distill", 0.25, 0.70)
    assert stop.value.projected == pytest.approx(0.90)
    assert "the same build runs in 2 ms" in str(stop.value)


@pytest.mark.parametrize(
    ("other", "own_ms", "why"),
    [
        ((0.95, 1.0), None, "this build was never timed: its speed is unknown"),
        ((0.95, 1.95), 2.0, "the other is faster only within timing noise"),
        ((0.905, 1.0), 2.0, "the other is better only within the margin"),
        ((0.95, 3.0), 2.0, "the other is slower"),
    ],
)
def test_a_run_that_could_still_reach_the_frontier_goes_on(other, own_ms, why):
    _frontier_rule(other, own_ms).check("distill", 0.25, 0.70)


def _done(recipe: dict, quality: float, ms: float, feasible: bool = True):
    return optuna.trial.create_trial(
        values=[quality, ms],
        user_attrs={"recipe": recipe},
        constraints={"accuracy_drop": -0.01 if feasible else 0.02},
    )


def test_rule_for_times_the_build_from_a_trial_that_differs_only_in_training():
    student = {"distill.mode": "student", "distill.layers": 3, "quantize.mode": "int8_dynamic"}
    done = [
        _done({**student, "distill.steps": 150}, 0.80, 2.0),
        _done({**student, "quantize.mode": "none", "distill.steps": 150}, 0.81, 3.0),
        _done({"distill.mode": "none"}, 0.99, 1.5, feasible=False),
    ]
    rule = rule_for(done, {**student, "distill.steps": 600, "distill.alpha": 0.5}, 0.7, 0.01)
    assert rule.objective_ms == 2.0  # the int8 build of the same student, not the fp32 one
    assert sorted(rule.frontier) == [(0.80, 2.0), (0.81, 3.0)]  # feasible ones only
    other = rule_for(done, {**student, "distill.layers": 2}, 0.7, 0.01)
    assert other.objective_ms is None  # another architecture: unknown until built


def test_rule_for_takes_an_untrained_timing_where_no_trained_build_was_timed():
    student = {"distill.mode": "student", "distill.layers": 2, "distill.steps": 150}
    stopped = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        user_attrs={"recipe": student, "untrained_ms": 4.0},
    )
    rule = rule_for([stopped, _done({"distill.mode": "none"}, 0.9, 9.0)], student, 0.7, 0.01)
    assert rule.objective_ms == 4.0
    trained = _done({**student, "distill.steps": 400}, 0.8, 3.0)
    assert rule_for([stopped, trained], student, 0.7, 0.01).objective_ms == 3.0  # trained wins


def test_an_untrained_build_is_timed_only_where_the_rule_could_use_it():
    student = {"distill.mode": "student", "distill.steps": 150, "prune.mode": "none"}
    rule = HeadroomRule(0.5, _curves(0.0, 0.0, 0.0), 0.01, frontier=[(0.9, 1.0)])
    assert rule.wants_timing(student)
    assert not rule.wants_timing({**student, "distill.steps": 0})  # nothing to train
    assert not HeadroomRule(0.5, _curves(0.0, 0.0), 0.01, frontier=[(0.9, 1.0)]).wants_timing(
        student
    )  # two curves: the rule does not speak yet
    assert not HeadroomRule(0.5, _curves(0.0, 0.0, 0.0), 0.01).wants_timing(
        student
    )  # none feasible
    timed = HeadroomRule(
        0.5, _curves(0.0, 0.0, 0.0), 0.01, frontier=[(0.9, 1.0)], objective_ms=2.0
    )
    assert not timed.wants_timing(student)
    pruned = {"prune.mode": "structured", "prune.finetune_steps": 300}
    assert not rule.wants_timing(pruned)  # no prune curves
    assert training_stages({**student, **pruned}) == ["distill", "prune"]
    assert untrained({**student, **pruned}) == {
        **student,
        **pruned,
        "distill.steps": 0,
        "prune.finetune_steps": 0,
    }


def test_a_dominated_build_is_timed_untrained_and_stops_at_a_quarter(tmp_path, seed_mlp):
    from autoaccel.evaluate.measure import MeasureConfig
    from autoaccel.targets import load_targets
    from autoaccel.trial_eval import CandidateEvaluator, EvalSettings

    cache = tmp_path / "cache"
    settings = EvalSettings(
        workload="seed-mlp",
        model=None,
        data=None,
        metric=seed_mlp.metric,
        cache=cache,
        root=tmp_path,
        targets=load_targets(["cpu-local"]),
        measure=MeasureConfig().scaled(0.03),
        batch_sizes=(1,),
        scenario="single-stream",
        latency_bound_ms=100.0,
        arrival_rate=None,
        reference={"runtime.backend": "onnxruntime"},
    )
    steps: list[str] = []
    evaluator = CandidateEvaluator(settings, seed_mlp, on_status=steps.append)
    recipe = {"runtime.backend": "onnxruntime", "distill.mode": "student", "distill.width": 0.5}
    # a feasible candidate far faster than anything, and better than any model can score
    rule = HeadroomRule(0.0, _curves(0.0, 0.0, 0.0), 0.0, frontier=[(2.0, 1e-9)], baseline_ms=1.0)
    with pytest.raises(TrainingStopped, match="cannot reach the frontier") as stop:
        evaluator.run({**recipe, "distill.steps": 40}, rule)
    assert steps[0] == "timing the build untrained, to see whether its training can pay"
    assert 0 < stop.value.untrained_ms == rule.objective_ms
    assert "ms (timed untrained, before training), and a completed" in str(stop.value)
    assert list(stop.value.curve["distill"]) == [0.25]  # stopped at the first check
    assert not list(cache.glob(".untrained-*"))  # the scratch build is gone
    assert not (cache / "torch").exists() or not any((cache / "torch").iterdir())
    # a build that could still reach the frontier trains to the end, timed as usual
    rule = HeadroomRule(0.0, _curves(0.0, 0.0, 0.0), 0.0, frontier=[(0.0, 1e-9)], baseline_ms=1.0)
    out = evaluator.run({**recipe, "distill.steps": 20}, rule)
    assert out.untrained_ms is not None and "untrained_timing" in out.seconds
    assert list(out.curve["distill"]) == list(FRACTIONS)


def test_curves_from_reads_stored_attrs_and_skips_two_stage_runs():
    def trial(curve, value):
        return SimpleNamespace(user_attrs={"curve": curve}, values=[value])

    stored = {"distill": {str(f): 0.4 for f in FRACTIONS}}  # JSON turns keys into strings
    two = {"distill": {str(f): 0.4 for f in FRACTIONS}, "prune": {"0.25": 0.3, "0.5": 0.3}}
    partial = {"distill": {"0.25": 0.4}}
    curves = curves_from([trial(stored, 0.7), trial(two, 0.7), trial(partial, 0.7)])
    assert curves == [Curve("distill", {0.25: 0.4, 0.5: 0.4}, 0.7)]


def test_training_loop_calls_monitor_at_fractions_and_stops_when_it_raises(
    seed_mlp, single_torch_thread
):
    from autoaccel.compress.distillation import kd_loss, logits_from_probs, train

    teacher = seed_mlp.torch_model()
    seen = []

    def monitor(model, fraction):
        assert not model.training  # checked in eval mode
        seen.append(fraction)
        if fraction == 0.5:
            raise TrainingStopped("enough", 0.0)

    def loss(s, t, y):
        return kd_loss(logits_from_probs(s), logits_from_probs(t), y, 4.0, 0.7)

    with pytest.raises(TrainingStopped):
        train(
            copy.deepcopy(teacher),
            teacher,
            seed_mlp.training_batches(),
            loss,
            steps=40,
            lr=1e-3,
            seed=0,
            input_names=seed_mlp.input_names,
            monitor=monitor,
            monitor_at=FRACTIONS,
        )
    assert seen == [0.25, 0.5]


def test_trial_monitor_records_every_check():
    rule = HeadroomRule(min_accuracy=0.0, history=[], margin=0.0)
    monitor = TrialMonitor(rule, evaluate=lambda model: 0.42)
    watch = monitor("prune")
    assert watch.fractions == FRACTIONS
    watch(object(), 0.25)
    assert monitor.curve == {"prune": {0.25: 0.42}}


SPACE = """
version: 1
techniques:
  runtime:
    backend: [onnxruntime]
  distill:
    mode: [student]
    width: [0.5]
    steps: [40]
"""


class AlwaysStop(HeadroomRule):
    """A rule that stops every run at its first check. At module level, so the candidate
    worker process can unpickle it: the stop travels back across the process boundary."""

    def check(self, stage, fraction, quality):
        raise TrainingStopped(f"stopped at {fraction:.0%} of {stage} training (test)", 0.0)


def test_search_prunes_stopped_trial_and_never_retrains_same_recipe(tmp_path, monkeypatch):
    from autoaccel import search_trial

    monkeypatch.setattr(
        search_trial,
        "_rule",
        lambda search, baseline, recipe: AlwaysStop(baseline["accuracy"], [], 0.01),
    )
    space = tmp_path / "distill.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    result = autoaccel.search(
        "seed-mlp",
        budget=2,
        runs_dir=runs,
        space=str(space),
        measure_seconds=0.03,
        targets=["cpu-local"],
    )
    # a one-point space: trial 0 stops, repeats 1-2 are free of the budget, 3 counts
    assert result.n_trials == 4 and result.recommendation["recommended"] is None
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{runs / 'optuna.db'}")
    first, second, *_ = study.trials
    assert first.state == second.state == optuna.trial.TrialState.PRUNED
    assert first.user_attrs["curve"].keys() == {"distill"}
    assert "stopped at 25% of distill training" in first.user_attrs["early_stopped"]
    assert first.constraints["accuracy_drop"] > 0  # told Optuna it is infeasible
    assert second.user_attrs["duplicate_of"] == 0 and "curve" not in second.user_attrs
    assert not (runs / "cache" / "torch").exists() or not any((runs / "cache" / "torch").iterdir())
    con = sqlite3.connect(runs / "mlflow.db")
    rows = con.execute(
        "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'early_stopped' and t.value = 'true'"
    ).fetchall()
    con.close()
    assert [r[0] for r in rows] == ["KILLED"] * 4
