"""The switch sweep: the fastest models within the limit on the runtimes and numeric formats
they never ran with, those never timed on a model of their size first."""

from __future__ import annotations

import optuna
import pytest
from recombine_study import BASELINE, ORT, OV_F32, TEACHER, _student, _trial

from autoaccel.recombine import SWEEP, USER_ATTR, enqueue, is_model_key, recombine_notes
from autoaccel.recombine.sweep import sweep, switch_keys

INT8 = {**ORT, "quantize.mode": "int8_dynamic"}


def _work(model: dict) -> float:
    if model.get("distill.mode", "none") == "none":
        return 6.0
    return float(model["distill.layers"])


@pytest.fixture
def study():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0))  # 0
    s.add_trial(_trial(TEACHER, INT8, 10.0))  # 1: int8 halves the teacher
    s.add_trial(_trial(TEACHER, OV_F32, 18.0))  # 2
    s.add_trial(_trial(_student(1), ORT, 2.0))  # 3: the fastest within the limit
    s.add_trial(_trial(_student(2), OV_F32, 3.0))  # 4: int8 never ran on a small model
    s.add_trial(_trial(_student(3), OV_F32, 4.0, drop=0.05))  # 5: out of the limit
    return s


def test_the_switches_are_the_build_settings_others_depend_on():
    keys = switch_keys()
    assert {"runtime.backend", "quantize.mode"} <= set(keys)
    assert not any(is_model_key(k) for k in keys)


def test_the_fastest_models_run_each_switch_value_they_never_ran_with(study):
    found = sweep(study, BASELINE, 10)
    got = [(c["swept"], c["changed"], c["recipe"][c["changed"]]) for c in found]
    # the two fastest models within the limit, each value once; the third is out of it
    assert sorted(got) == [
        (3, "quantize.mode", "int8_dynamic"),
        (3, "runtime.backend", "openvino"),
        (4, "quantize.mode", "int8_dynamic"),
        (4, "runtime.backend", "onnxruntime"),
    ]
    # without the models' work, the fit's order: int8 halved the teacher's time
    assert got[0] == (3, "quantize.mode", "int8_dynamic")
    first = found[0]
    assert first["recipe"] == {**_student(1), **INT8}
    assert first["expected_ms"] < 2.0
    (openvino,) = [c for c in found if c["swept"] == 3 and c["changed"] == "runtime.backend"]
    assert openvino["recipe"]["runtime.ov_precision"] == "f32"  # switched on with its default


def test_a_value_never_timed_on_a_model_of_its_size_comes_before_the_fits_favourite(study):
    study.add_trial(_trial(_student(2), {**OV_F32, "runtime.ov_precision": "bf16"}, 2.5))  # 6
    found = sweep(study, BASELINE, 10, cost=_work)
    got = [(c["swept"], c["changed"], c["timed_near"]) for c in found]
    # int8 only ran on the teacher (6x the work): the fit extrapolates it to the students;
    # OpenVINO ran on 2-layer students: it has been timed at that size already. The second
    # model is student 2 on its fastest build (trial 6)
    assert got[:2] == [(3, "quantize.mode", False), (6, "quantize.mode", False)]
    assert got[2:] == [(3, "runtime.backend", True), (6, "runtime.backend", True)]


def test_the_sweep_is_enqueued_last_and_said_in_the_notes(study):
    chosen = enqueue(study, BASELINE, 2, cost=_work, stage=SWEEP)
    assert [c["swept"] for c in chosen] == [3, 4]  # int8 on both: never timed on a student
    asked = study.ask()
    assert asked.user_attrs[USER_ATTR] == {"swept": 3, "changed": "quantize.mode"}
    (note,) = recombine_notes(chosen)
    assert note.startswith("2 trials run the fastest models within the limit")
    assert "trial 3 with quantize.mode int8_dynamic" in note


def test_a_full_sweep_leaves_its_trials_to_build_changes():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0))
    s.add_trial(_trial(TEACHER, INT8, 10.0))
    s.add_trial(_trial(TEACHER, OV_F32, 18.0))
    s.add_trial(_trial(TEACHER, {**OV_F32, "quantize.mode": "int8_dynamic"}, 9.0))
    assert sweep(s, BASELINE, 5) == []  # the one model ran every value of both switches
    chosen = enqueue(s, BASELINE, 2, stage=SWEEP)
    assert chosen and all("variant_of" in c for c in chosen)
