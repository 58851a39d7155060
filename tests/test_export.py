"""`autoaccel export`: the winner rebuilt from its recorded recipe, re-checked, handed over."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import optuna
import pytest
from test_cli import run

import autoaccel
from autoaccel.export import ExportMismatch, export_trial


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    runs = tmp_path_factory.mktemp("export") / "runs"
    space = runs.parent / "space.yaml"
    space.write_text(
        "version: 1\ntechniques:\n  quantize:\n    mode: [none, int8_dynamic, int8_static]\n"
        "  runtime:\n    backend: [onnxruntime, torch]\n"
    )
    autoaccel.search(
        "seed-mlp",
        budget=4,
        runs_dir=runs,
        space=str(space),
        measure_seconds=0.03,
        targets=["cpu-local"],
    )
    study = optuna.load_study(study_name="seed-mlp-space", storage=f"sqlite:///{runs}/optuna.db")
    return runs, study


def test_export_recommended_rebuilds_model_whose_quality_matches_the_trial(finished, tmp_path):
    runs, study = finished
    out = tmp_path / "model.onnx"
    done = run("export", "--recommended", "--runs-dir", str(runs), "--out", str(out))
    assert done.returncode == 0, done.stderr
    rec = json.loads((runs / "seed-mlp-space" / "recommendation.json").read_text())
    side = json.loads(out.with_suffix(".json").read_text())
    trial = next(t for t in study.trials if t.number == side["trial"])
    assert side["trial"] == rec["recommended"]["trial"]
    assert side["recipe"] == trial.user_attrs["recipe"]
    assert abs(side["rechecked"]["accuracy"] - trial.values[0]) <= side["rechecked"]["tolerance"]
    assert side["expected"]["latency_source"] == "measured"
    assert side["ort_session_config"] == {}  # nothing beyond SessionOptions' attributes
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.zeros((2, 64), dtype=np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (2, 10)
    assert "logged to MLflow run" in done.stdout


def test_export_of_a_named_trial_writes_that_trials_recipe(finished, tmp_path):
    runs, study = finished
    number = study.trials[-1].number
    out = tmp_path / "t.onnx"
    done = run("export", "--trial", str(number), "--runs-dir", str(runs), "--out", str(out))
    assert done.returncode == 0, done.stderr
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["trial"] == number and side["recipe"] == study.trials[-1].user_attrs["recipe"]


def test_export_that_does_not_reproduce_leaves_nothing_behind(finished, tmp_path):
    runs, study = finished
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportMismatch, match="nothing written"):
        export_trial(study, study.trials[0], out, runs / "cache", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "m.onnx"], "exactly one of --recommended or --trial"),
        (["--recommended", "--trial", "0", "--out", "m.onnx"], "exactly one of"),
        (["--trial", "999", "--out", "m.onnx"], "no completed trial"),
        (["--recommended", "--out", "m.txt"], "with .onnx"),
    ],
)
def test_export_bad_input_is_one_line_exit_2(finished, tmp_path, args, message):
    runs, _ = finished
    done = run("export", "--runs-dir", str(runs), *args)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1


def test_export_of_a_repeat_names_the_trial_that_judged_the_recipe():
    from autoaccel.errors import UserError
    from autoaccel.export import pick_trial

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 1.0]))
    repeat = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, user_attrs={"duplicate_of": 0}
    )
    study.add_trial(repeat)
    with pytest.raises(UserError, match="repeated trial 0's recipe.*export --trial 0"):
        pick_trial(study, 1)
