"""How a trial's end is recorded: a failure keeps its traceback in both stores, a recipe that
cannot run for a known reason is PRUNED with that reason and its kind."""

from __future__ import annotations

import optuna

from autoaccel.trial_record import TrialRecorder


class _Tracker:
    """Records what would be logged to MLflow."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def log_trial(self, number, params, metrics, tags, **kwargs) -> str:
        self.calls.append({"number": number, "tags": tags, **kwargs})
        return f"run-{number}"


def _recorder() -> tuple[optuna.Study, _Tracker, TrialRecorder]:
    study = optuna.create_study(directions=["maximize", "minimize"])
    tracker = _Tracker()
    return study, tracker, TrialRecorder(study, tracker, 0.01, {"host": "here"}, "cpu-local")


def test_fail_keeps_the_traceback_in_the_study_and_the_mlflow_run():
    study, tracker, recorder = _recorder()
    trace = "Traceback (most recent call last):\n  ...\nRuntimeError: plugin bug\n"
    recorder.fail(study.ask(), {"runtime.backend": "openvino"}, "RuntimeError: plugin bug", trace)
    frozen = study.trials[0]
    assert frozen.state == optuna.trial.TrialState.FAIL
    assert frozen.user_attrs["fail_reason"] == "RuntimeError: plugin bug"
    assert frozen.user_attrs["traceback"] == trace
    logged = tracker.calls[0]
    assert logged["failed"] is True
    assert logged["tags"]["traceback"] == trace and logged["tags"]["infeasible"] == "false"
    assert logged["text_files"] == {"traceback.txt": trace}


def test_fail_keeps_only_the_end_of_a_huge_traceback_in_the_study():
    study, tracker, recorder = _recorder()
    trace = "x" * 50_000 + "RuntimeError: the last line"
    recorder.fail(study.ask(), {}, "RuntimeError: the last line", trace)
    kept = study.trials[0].user_attrs["traceback"]
    assert len(kept) < len(trace) and kept.endswith("RuntimeError: the last line")
    assert tracker.calls[0]["text_files"]["traceback.txt"] == trace  # MLflow has all of it


def test_infeasible_is_pruned_with_its_reason_and_kind_and_no_traceback():
    study, tracker, recorder = _recorder()
    reason = "InfeasibleRecipe: OpenVINO cannot convert op(s) com.example.Frobnicate"
    recorder.fail(study.ask(), {}, reason, infeasible=True, kind="openvino_op")
    frozen = study.trials[0]
    assert frozen.state == optuna.trial.TrialState.PRUNED
    assert frozen.constraints == {"recipe_runs": 1.0}
    assert frozen.user_attrs["fail_reason"] == reason
    assert frozen.user_attrs["infeasible_kind"] == "openvino_op"
    assert "traceback" not in frozen.user_attrs
    tags = tracker.calls[0]["tags"]
    assert tags["infeasible"] == "true" and tags["infeasible_kind"] == "openvino_op"
    assert "traceback" not in tags and not tracker.calls[0]["text_files"]
