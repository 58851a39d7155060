"""The switch sweep: the fastest models within the limit on the runtimes and numeric formats
they never ran with, those never timed on a model of their size first."""

from __future__ import annotations

import optuna
import pytest
from recombine_study import BASELINE, ORT, OV_F32, TEACHER, _student, _trial

from autoaccel.recombine import SWEEP, USER_ATTR, enqueue, is_model_key, recombine_notes
from autoaccel.recombine.sweep import _toward_accuracy, sweep, switch_keys

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


def _switches(c: dict) -> tuple:
    return (c["swept"], c["recipe"]["runtime.backend"], c["recipe"]["quantize.mode"])


def test_the_fastest_models_run_each_combination_of_switches_they_never_ran_with(study):
    found = sweep(study, BASELINE, 10)
    # the two fastest models within the limit, each new runtime x format once; the third
    # is out of the limit
    assert sorted(map(_switches, found)) == [
        (3, "onnxruntime", "int8_dynamic"),
        (3, "openvino", "int8_dynamic"),
        (3, "openvino", "none"),
        (4, "onnxruntime", "int8_dynamic"),
        (4, "onnxruntime", "none"),
        (4, "openvino", "int8_dynamic"),
    ]
    # without the models' work, the fit's order: int8 halved the teacher's time
    first = found[0]
    assert _switches(first) == (3, "onnxruntime", "int8_dynamic")
    assert first["recipe"] == {**_student(1), **INT8}
    assert first["expected_ms"] < 2.0
    (openvino,) = [c for c in found if _switches(c) == (3, "openvino", "none")]
    assert openvino["recipe"]["runtime.ov_precision"] == "f32"  # switched on with its default
    assert openvino["changed"] == "runtime.backend"


def test_a_value_never_timed_on_a_model_of_its_size_comes_before_the_fits_favourite(study):
    study.add_trial(_trial(_student(2), {**OV_F32, "runtime.ov_precision": "bf16"}, 2.5))  # 6
    found = sweep(study, BASELINE, 10, cost=_work)
    # int8 only ran on the teacher (6x the work): the fit extrapolates it to the students;
    # OpenVINO and ONNX Runtime without int8 ran on students: timed at that size already.
    # The second model is student 2 on its fastest build (trial 6)
    never = [_switches(c) for c in found if not c["timed_near"]]
    assert [c["timed_near"] for c in found] == sorted(c["timed_near"] for c in found)
    assert {m for m, _, q in never} == {3, 6} and all(q == "int8_dynamic" for _, _, q in never)
    assert (3, "openvino", "none") in [_switches(c) for c in found if c["timed_near"]]


SHARES = {
    "quantize.per_channel": [True, False],
    "quantize.float_share": [0.0, 0.15, 0.3],
    "compile.fusion": [False, True],
}


def test_a_format_that_broke_the_limit_is_retried_toward_its_accurate_settings():
    int8 = {**INT8, "quantize.per_channel": True, "quantize.float_share": 0.0}
    unfused, fused = {"compile.fusion": False}, {"compile.fusion": True}
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, {**ORT, **unfused}, 20.0, choices=SHARES))  # 0
    s.add_trial(_trial(TEACHER, {**OV_F32, **unfused}, 18.0, choices=SHARES))  # 1: the fastest
    s.add_trial(_trial(TEACHER, {**int8, **unfused}, 12.0, drop=0.05, choices=SHARES))  # 2
    s.add_trial(_trial(TEACHER, {**int8, **fused}, 10.0, drop=0.04, choices=SHARES))  # 3
    found = sweep(s, BASELINE, 10)
    got = [
        (c["recipe"]["runtime.backend"], c["recipe"]["quantize.float_share"])
        for c in found
        if c["recipe"]["quantize.mode"] == "int8_dynamic"
    ]
    # every int8 run of this model broke the limit: back with more of it in float, the
    # smaller step first, on either runtime; never again as it broke
    assert sorted(got) == [
        ("onnxruntime", 0.15),
        ("onnxruntime", 0.3),
        ("openvino", 0.15),
        ("openvino", 0.3),
    ]
    for runtime in ("onnxruntime", "openvino"):
        shares = [f for r, f in got if r == runtime]
        assert shares == [0.15, 0.3]
    assert all(
        c["recipe"]["quantize.per_channel"] for c in found if "quantize.per_channel" in c["recipe"]
    )
    # on ONNX Runtime, from the fastest int8 run that broke it (fused), not the model's
    # fastest build; on OpenVINO ORT's fusion is not a setting at all
    fused_on = {"onnxruntime": True, "openvino": None}
    assert all(
        c["params"].get("compile.fusion") is fused_on[c["recipe"]["runtime.backend"]]
        for c in found
        if c["recipe"]["quantize.mode"] == "int8_dynamic"
    )


def test_a_format_already_at_its_accurate_settings_is_retried_from_the_fastest_build():
    int8 = {**INT8, "quantize.per_channel": True, "quantize.float_share": 0.3}
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, {**OV_F32, "compile.fusion": False}, 18.0, choices=SHARES))
    s.add_trial(_trial(TEACHER, {**int8, "compile.fusion": True}, 9.0, drop=0.05, choices=SHARES))
    found = [c for c in sweep(s, BASELINE, 10) if c["recipe"]["runtime.backend"] == "onnxruntime"]
    # nothing is left to move on the int8 run itself: from the fastest build instead
    assert [
        (c["recipe"]["quantize.float_share"], c["recipe"]["compile.fusion"]) for c in found
    ] == [
        (0.15, False),
        (0.3, False),
    ]


def test_toward_accuracy_walks_down_as_well_as_up_the_choices():
    # int4's accurate block is the first choice: from the last, 64 and then 32
    space = {"quantize.block_size": optuna.distributions.CategoricalDistribution([32, 64, 128])}
    recipe = {"quantize.mode": "int4_weight", "quantize.block_size": 128}
    steps = _toward_accuracy(recipe, recipe, space)
    assert [r["quantize.block_size"] for _, r in steps] == [64, 32]


def test_the_sweep_is_enqueued_last_and_said_in_the_notes(study):
    chosen = enqueue(study, BASELINE, 2, cost=_work, stage=SWEEP)
    # int8 on the fastest student, on either runtime: never timed on a student
    assert [_switches(c) for c in chosen] == [
        (3, "onnxruntime", "int8_dynamic"),
        (3, "openvino", "int8_dynamic"),
    ]
    asked = study.ask()
    assert asked.user_attrs[USER_ATTR] == {"swept": 3, "changed": "quantize.mode"}
    (note,) = recombine_notes(chosen)
    assert note.startswith("2 trials run the fastest models within the limit")
    assert "trial 3 with quantize.mode int8_dynamic; trial 3 with runtime.backend openvino, " in (
        note
    )


def test_a_full_sweep_leaves_its_trials_to_build_changes():
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0))
    s.add_trial(_trial(TEACHER, INT8, 10.0))
    s.add_trial(_trial(TEACHER, OV_F32, 18.0))
    s.add_trial(_trial(TEACHER, {**OV_F32, "quantize.mode": "int8_dynamic"}, 9.0))
    assert sweep(s, BASELINE, 5) == []  # the one model ran every value of both switches
    chosen = enqueue(s, BASELINE, 2, stage=SWEEP)
    assert chosen and all("variant_of" in c for c in chosen)


def _curve(trial, stage: str, quality: float):
    """`trial` with its training's last check at `quality`."""
    trial.user_attrs["curve"] = {stage: {"0.25": quality - 0.02, "0.5": quality}}
    return trial


def test_a_model_that_kept_the_limit_in_training_is_swept_where_its_build_broke_it():
    int8 = {**INT8, "quantize.per_channel": True, "quantize.float_share": 0.0}
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, {**ORT, "compile.fusion": False}, 20.0, choices=SHARES))  # 0
    # 1: student 1 checked at 0.895 in training (limit 0.89), 0.85 after int8
    one = _trial(_student(1), {**int8, "compile.fusion": False}, 2.0, 0.05, SHARES)
    s.add_trial(_curve(one, "distill", 0.895))
    # 2: student 2 was out already in training; 3: student 3 broke another limit too
    s.add_trial(_curve(_trial(_student(2), int8, 3.0, 0.05, SHARES), "distill", 0.86))
    three = _trial(_student(3), int8, 4.0, 0.05, SHARES, {"limit.teacher_cosine": 0.02})
    s.add_trial(_curve(three, "distill", 0.9))
    found = sweep(s, BASELINE, 20)
    assert {c["swept"] for c in found} == {0, 1}
    mine = {
        (c["recipe"]["runtime.backend"], c["recipe"]["quantize.mode"])
        for c in found
        if c["swept"] == 1
    }
    # its float builds, and its own int8 toward accuracy (more of the graph in float)
    assert {("onnxruntime", "none"), ("openvino", "none")} <= set(mine)
    retried = [c for c in found if c["swept"] == 1 and c["recipe"].get("runtime.backend") ==
               "onnxruntime" and c["recipe"]["quantize.mode"] == "int8_dynamic"]  # fmt: skip
    assert [c["recipe"]["quantize.float_share"] for c in retried] == [0.15, 0.3]
    (note,) = recombine_notes(found[:1])
    assert "within it in training" in note


def test_a_model_changed_after_its_last_training_check_is_not_kept():
    choices = {**SHARES, "prune.mode": ["none", "nm_2_4"], "prune.finetune_steps": [0]}
    s = optuna.create_study(directions=["maximize", "minimize"])
    s.add_trial(_trial(TEACHER, ORT, 20.0, choices=choices))
    # 2:4 pruned after distillation with no fine-tune: the check saw the model before it
    pruned = {**_student(1), "prune.mode": "nm_2_4", "prune.finetune_steps": 0}
    s.add_trial(_curve(_trial(pruned, ORT, 2.0, 0.05, choices), "distill", 0.895))
    assert {c["swept"] for c in sweep(s, BASELINE, 20)} == {0}
