"""Smaller models next to the cheapest ones within the limit, ranked by their work."""

from __future__ import annotations

import optuna
import pytest
from recombine_study import BASELINE, ORT, OV_BF16, OV_F32, TEACHER, _student, _trial

from autoaccel.recombine import (
    SMALLER_MODELS,
    enqueue,
    ranked_halves,
    recombine_notes,
    smaller_models,
)

WIDTHS = {"distill.width": [1.0, 0.5]}


def _work(model: dict) -> float:
    """A transformer's work: its layers (6 in the teacher) times its width."""
    if model.get("distill.mode", "none") == "none":
        return 6.0
    return model["distill.layers"] * model["distill.width"]


@pytest.fixture
def study():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0, choices=WIDTHS))  # 0
    s.add_trial(_trial(_student(2), ORT, 5.0, choices=WIDTHS))  # 1: cheapest within
    s.add_trial(_trial(TEACHER, OV_BF16, 8.0, choices=WIDTHS))  # 2: the fastest build
    s.add_trial(_trial(_student(1), OV_F32, 2.0, drop=0.05, choices=WIDTHS))  # 3: out
    return s


def test_the_next_smaller_student_is_built_like_its_base_models_fastest_trial(study):
    (only,) = smaller_models(study, BASELINE, 3, _work)
    # one layer broke the limit on every trial that had it; three layers is more work
    assert only["recipe"] == {**_student(2), "distill.width": 0.5, **ORT}
    assert (only["smaller_than"], only["changed"], only["build_trial"]) == (1, "distill.width", 1)
    assert only["cost_ratio"] == pytest.approx(0.5)
    assert only["expected_ms"] < 5.0  # below student 2's own time


def test_a_model_the_study_has_already_trained_is_not_proposed_again(study):
    study.add_trial(_trial({**_student(2), "distill.width": 0.5}, ORT, 4.0, choices=WIDTHS))
    # half width is trained now (re-pairing it is a cross); nothing else is smaller and new
    assert smaller_models(study, BASELINE, 3, _work) == []


def test_each_stage_enqueues_its_own_trials_and_says_why(study):
    crosses = enqueue(study, BASELINE, 1, cost=_work)
    assert [(c["model_trial"], c["build_trial"]) for c in crosses] == [(1, 2)]
    smaller = enqueue(study, BASELINE, 1, cost=_work, stage=SMALLER_MODELS)
    assert [c["smaller_than"] for c in smaller] == [1]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [
        c["params"] for c in crosses + smaller
    ]
    (note,) = recombine_notes(smaller)
    assert "trial 1 with distill.width 0.5 (50% of its FLOPs)" in note


def test_a_model_whose_work_cannot_be_counted_leaves_re_pairing_as_it_was(study):
    def broken(model: dict) -> float:
        raise RuntimeError("aten::weird has no FLOP formula")

    warned: list[str] = []
    chosen = enqueue(study, BASELINE, 2, cost=broken, warn=warned.append, stage=SMALLER_MODELS)
    assert chosen and all("variant_of" in c for c in chosen)  # build changes instead
    assert warned == [
        "re-pairing without model costs: a model's work could not be counted "
        "(aten::weird has no FLOP formula)"
    ]
    with pytest.raises(RuntimeError):
        enqueue(study, BASELINE, 8, cost=broken)  # crosses need the work too


def test_the_work_ranks_a_model_that_only_ran_on_a_slow_build():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 40.0))
    s.add_trial(_trial(TEACHER, OV_BF16, 8.0))
    s.add_trial(_trial(_student(1), ORT, 7.0))  # 1 layer: a sixth of the work, on ORT
    s.add_trial(_trial(_student(3), OV_BF16, 4.0))
    models, _ = ranked_halves(s, BASELINE, cost=_work)
    assert [h.recipe for h in models] == [_student(1), _student(3), TEACHER]


PRUNABLE = {
    "distill.width": [1.0, 0.5],
    "distill.steps": [150, 400],
    "prune.mode": ["none", "structured"],
    "prune.amount": [0.5],
    "prune.finetune_steps": [0, 300],
}


def _pruned_work(model: dict) -> float:
    """`_work`, halved by structured pruning."""
    return _work(model) * (0.5 if model.get("prune.mode") == "structured" else 1.0)


def test_a_smaller_model_trains_as_long_as_the_space_allows_from_the_stage_it_changes():
    student = {**_student(2), "prune.mode": "none"}  # 150 distillation steps
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(student, ORT, 5.0, choices=PRUNABLE))  # 0
    pruned_teacher = {**TEACHER, "prune.mode": "structured", "prune.amount": 0.5}
    s.add_trial(_trial({**pruned_teacher, "prune.finetune_steps": 0}, ORT, 12.0, 0.0, PRUNABLE))
    found = {
        (c["smaller_than"], c["changed"]): c for c in smaller_models(s, BASELINE, 10, _pruned_work)
    }
    narrower = found[(0, "distill.width")]
    assert narrower["recipe"] == {**student, "distill.width": 0.5, "distill.steps": 400, **ORT}
    assert narrower["params"]["distill.steps"] == 400  # what is enqueued trains that long
    assert narrower["longer"] == {"distill.steps": 400}
    pruned = found[(0, "prune.mode")]
    # its student is the cached one (150 steps): the pruned model is fine-tuned to recover
    assert pruned["recipe"] == {
        **student,
        "prune.mode": "structured",
        "prune.amount": 0.5,
        "prune.finetune_steps": 300,
        **ORT,
    }
    assert pruned["longer"] == {"prune.finetune_steps": 300}
    (note,) = recombine_notes([pruned])
    assert "trial 0 with prune.mode structured (50% of its FLOPs, prune.finetune_steps 300)" in (
        note
    )
    # a narrower student that kept quality with less training is proposed again with the
    # longest: the same speed at a better quality is a better point on the frontier
    narrow = {**student, "distill.width": 0.5}
    s.add_trial(_trial(narrow, OV_F32, 4.0, choices=PRUNABLE))
    again = {
        (c["smaller_than"], c["changed"]): c for c in smaller_models(s, BASELINE, 10, _pruned_work)
    }
    assert again[(0, "distill.width")]["recipe"]["distill.steps"] == 400


def test_a_step_count_that_never_kept_quality_is_not_the_one_chosen():
    student = {**_student(2), "prune.mode": "none"}
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(student, ORT, 5.0, choices=PRUNABLE))
    longer = {**_student(3), "prune.mode": "none", "distill.steps": 400}
    s.add_trial(_trial(longer, ORT, 7.0, drop=0.05, choices=PRUNABLE))  # 400 steps: out
    (narrower,) = [
        c for c in smaller_models(s, BASELINE, 10, _pruned_work) if c["changed"] == "distill.width"
    ]
    assert narrower["recipe"]["distill.steps"] == 150 and narrower["longer"] == {}


def test_a_smaller_model_that_kept_quality_is_the_base_of_the_next_round():
    choices = {**PRUNABLE, "distill.steps": [150]}
    student = {**_student(2), "prune.mode": "none"}
    pruned_teacher = {**TEACHER, "prune.mode": "structured", "prune.amount": 0.5}
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(student, ORT, 5.0, choices=choices))  # 0
    s.add_trial(_trial({**pruned_teacher, "prune.finetune_steps": 0}, ORT, 30.0, 0.0, choices))
    first = smaller_models(s, BASELINE, 10, _pruned_work)
    assert {c["smaller_than"] for c in first} == {0, 1}
    s.add_trial(_trial({**student, "distill.width": 0.5}, ORT, 3.0, choices=choices))  # 2: ran
    second = smaller_models(s, BASELINE, 10, _pruned_work)
    assert second[0]["smaller_than"] == 2  # the cheapest expected step down from it
    found = {(c["smaller_than"], c["changed"]): c for c in second}
    assert found[(2, "prune.mode")]["recipe"] == {
        **student,
        "distill.width": 0.5,
        "prune.mode": "structured",
        "prune.amount": 0.5,
        "prune.finetune_steps": 300,
        **ORT,
    }


def test_a_model_whose_only_trial_found_its_build_infeasible_is_still_proposed(study):
    narrow = {**_student(2), "distill.width": 0.5}
    broken_build = {**ORT, "quantize.mode": "int8_static", "quantize.calibration": "entropy"}
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            params=narrow,
            distributions={
                k: optuna.distributions.CategoricalDistribution([v]) for k, v in narrow.items()
            },
            user_attrs={"recipe": {**narrow, **broken_build}, "infeasible_kind": "calibration"},
        )
    )
    # its calibration collected nothing: the model itself was never judged
    (only,) = smaller_models(study, BASELINE, 3, _work)
    assert only["recipe"] == {**narrow, **ORT}


def test_a_smaller_model_is_built_like_the_fastest_model_of_its_size():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0, choices=WIDTHS))  # 0
    s.add_trial(_trial(_student(2), ORT, 5.0, choices=WIDTHS))  # 1: only ever on ORT
    s.add_trial(_trial(_student(1), OV_BF16, 1.5, choices=WIDTHS))  # 2: work 1 on OpenVINO
    found = {c["smaller_than"]: c for c in smaller_models(s, BASELINE, 3, _work)}
    # half of student 2's width does student 1's work: built as student 1 ran fastest
    narrower = found[1]
    assert narrower["recipe"] == {**_student(2), "distill.width": 0.5, **OV_BF16}
    assert narrower["params"]["runtime.backend"] == "openvino"
    assert narrower["build_trial"] == 2


def _stopped(model: dict, over: float):
    """A training run the early-stopping rule cut short, projected `over` the limit."""
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params=model,
        distributions={
            k: optuna.distributions.CategoricalDistribution([v]) for k, v in model.items()
        },
        user_attrs={"recipe": {**model, **ORT}, "early_stopped": "stopped at 50%"},
        constraints={"accuracy_drop": over},
    )


@pytest.mark.parametrize("over, proposed", [(0.03, False), (-0.005, True)])
def test_a_value_every_run_of_which_was_stopped_short_of_the_limit_is_not_proposed(over, proposed):
    steps = {"distill.steps": [150, 400]}  # a new 1-layer student would train 400
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0, choices=steps))
    s.add_trial(_trial(_student(2), ORT, 5.0, choices=steps))
    s.add_trial(_stopped(_student(1), over))
    changed = {c["changed"] for c in smaller_models(s, BASELINE, 3, _work)}
    # stopped because it could not reach the limit: 1 layer is no step worth training for;
    # stopped only because a faster, better candidate existed: it says nothing of the limit
    assert ("distill.layers" in changed) == proposed
