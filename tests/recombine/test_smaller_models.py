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
