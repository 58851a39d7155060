"""Recipes that share the deciding settings of an infeasible trial fail at once; others don't."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from autoaccel.infeasible_memo import DECIDED_BY, known_infeasible

STREAMS = {
    "runtime.backend": "openvino",
    "runtime.intra_op_threads": 1,
    "runtime.ov_streams": 2,
    "runtime.ov_hint": "latency",
    "distill.mode": "student",
    "distill.layers": 3,
}


def _pruned(number: int, recipe: dict, kind: str | None, **attrs) -> optuna.trial.FrozenTrial:
    user = {"recipe": recipe, "fail_reason": f"{kind} happened", **attrs}
    if kind:
        user["infeasible_kind"] = kind
    trial = create_trial(
        state=TrialState.PRUNED,
        params={"x": 0},
        distributions={"x": CategoricalDistribution([0])},
        user_attrs=user,
    )
    trial.number = number
    return trial


def test_the_same_deciding_settings_with_another_student_fail_as_the_earlier_trial():
    earlier = _pruned(4, STREAMS, "openvino_streams")
    found = known_infeasible([earlier], {**STREAMS, "distill.layers": 2, "quantize.mode": "none"})
    assert found is not None
    trial, reason = found
    assert trial is earlier
    assert reason.startswith("openvino_streams happened (as trial 4, with the same ")
    assert "runtime.ov_streams=2" in reason and "not built again" in reason


def test_a_deciding_setting_that_differs_means_it_is_built():
    earlier = _pruned(4, STREAMS, "openvino_streams")
    assert known_infeasible([earlier], {**STREAMS, "runtime.intra_op_threads": 2}) is None
    assert known_infeasible([earlier], {**STREAMS, "runtime.backend": "onnxruntime"}) is None


def test_kinds_decided_by_the_whole_graph_and_early_stops_are_never_guessed_from():
    assert "openvino_op" not in DECIDED_BY and "ort_kernel" not in DECIDED_BY
    by_graph = _pruned(1, STREAMS, "openvino_op")
    stopped = _pruned(2, STREAMS, None, early_stopped="stopped at 25%")
    assert known_infeasible([by_graph, stopped], dict(STREAMS)) is None


def test_only_trials_that_really_ran_are_evidence():
    echo = _pruned(7, STREAMS, "openvino_streams", infeasible_as=4)
    assert known_infeasible([echo], dict(STREAMS)) is None


def test_histogram_calibration_is_decided_with_the_fusion_and_the_students_width():
    fused = {
        "quantize.mode": "int8_static",
        "quantize.calibration": "percentile",
        "compile.fusion": True,
        "distill.mode": "student",
        "distill.width": 1.0,
        "distill.layers": 4,
        "runtime.backend": "onnxruntime",
    }
    earlier = _pruned(9, fused, "quantize_calibration")
    assert known_infeasible([earlier], {**fused, "distill.layers": 2}) is not None
    assert known_infeasible([earlier], {**fused, "compile.fusion": False}) is None
    assert known_infeasible([earlier], {**fused, "distill.width": 0.5}) is None
    assert known_infeasible([earlier], {**fused, "quantize.calibration": "minmax"}) is None
