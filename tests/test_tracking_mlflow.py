"""What a search leaves in MLflow, read back through MLflow's own client: trial runs dated
and named as the trials were, one parent per invocation that ran a trial, the frontier as a
table, and the recommended model logged (ONNX flavour, signature) and registered."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

import autoaccel
from autoaccel.config import RunPaths
from autoaccel.tracking import Tracker
from autoaccel.tracking_views import log_recommended, run_name
from autoaccel.workloads import load_workload

# in-process (isolation has its own tests): a search's worker start-up is seconds
FAST = {"measure_seconds": 0.03, "space": "quick", "isolate": False}
STUDY = "seed-mlp-quick"


@pytest.fixture(scope="module")
def searched(tmp_path_factory, seeded_calibration):
    """One search of 3 trials, then the same command again (the study is at its budget)."""
    runs = tmp_path_factory.mktemp("tracking") / "runs"
    first = autoaccel.search("seed-mlp", budget=3, runs_dir=runs, **FAST)
    again = autoaccel.search("seed-mlp", budget=3, runs_dir=runs, **FAST)
    client = MlflowClient(tracking_uri=first.tracking_uri)
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{runs / 'optuna.db'}")
    return SimpleNamespace(
        runs=runs, first=first, again=again, client=client, exp=experiment, study=study
    )


def _runs(s, role: str):
    return s.client.search_runs([s.exp], filter_string=f"tags.`autoaccel.role` = '{role}'")


def test_trial_runs_span_the_trial_and_are_named_after_its_recipe(searched):
    trials = {t.number: t for t in searched.study.trials}
    runs = _runs(searched, "trial")
    assert sorted(int(r.data.tags["trial"]) for r in runs) == [0, 1, 2]
    assert len({r.info.run_name for r in runs}) == 3
    for run in runs:
        t = trials[int(run.data.tags["trial"])]
        assert run.info.run_name == run_name(t.number, t.user_attrs["recipe"])
        assert run.info.run_name.startswith(f"t{t.number} ")
        assert run.data.tags["mlflow.parentRunId"] == searched.first.parent_run_id
        began = t.datetime_start.timestamp() * 1000
        ended = t.datetime_complete.timestamp() * 1000  # told to Optuna just after logging
        assert abs(run.info.start_time - began) < 50
        assert ended - 2000 < run.info.end_time <= ended + 50
        if "duplicate_of" not in t.user_attrs:  # the run spans the trial, however short it
            # was (a cached seed-mlp build timed for 0.03 s can take under 100 ms)
            assert run.info.end_time - run.info.start_time >= 0.5 * (ended - began)


def test_run_name_says_the_recipe_in_a_few_words():
    recipe = {
        "runtime.backend": "onnxruntime",
        "runtime.intra_op_threads": 2,
        "compile.graph_level": "all",
        "compile.fusion": True,
        "quantize.mode": "int8_dynamic",
    }
    assert run_name(7, recipe) == "t7 ORT fused int8-dyn 2thr"
    student = {"runtime.backend": "torch", "distill.mode": "student", "distill.layers": 2}
    assert run_name(12, student) == "t12 torch student-2L"


def test_a_rerun_that_adds_no_trial_adds_no_parent_and_refreshes_the_last(searched):
    (parent,) = _runs(searched, "study")
    assert parent.info.run_id == searched.first.parent_run_id == searched.again.parent_run_id
    assert parent.info.status == "FINISHED" and parent.info.run_name == f"search {STUDY}"
    assert parent.data.params["budget"] == "3" and "baseline_latency_ms" in parent.data.metrics
    assert "outputs_refreshed" in parent.data.tags
    assert parent.data.tags["verdict"] == searched.again.recommendation["verdict"]
    assert searched.again.n_trials == 3 and len(searched.study.trials) == 3
    assert (searched.runs / STUDY / "recommendation.json").exists()  # outputs written again
    logged = {f.path for f in searched.client.list_artifacts(parent.info.run_id)}
    assert {"recommendation.json", "report.html", "frontier.json"} <= logged


def test_parent_run_holds_the_frontier_as_a_table(searched):
    table = searched.client.load_table(
        searched.exp, "frontier.json", run_ids=[searched.first.parent_run_id]
    )
    front = searched.again.frontier  # the re-run replaced the table: never appended
    assert list(table["trial"]) == [p["trial"] for p in front]
    assert list(table["speedup"]) == pytest.approx([p["speedup"] for p in front])
    names = {int(r.data.tags["trial"]): r.info.run_name for r in _runs(searched, "trial")}
    assert list(table["run"]) == [names[p["trial"]] for p in front]
    chosen = (searched.again.recommendation["recommended"] or {}).get("trial")
    assert list(table["recommended"]) == [p["trial"] == chosen for p in front]


def test_the_search_registers_its_recommended_model_once_per_run(searched):
    """A `recommend` verdict measured here logs and registers the winner; the re-run that
    added no trial does not register the same trial on the same run again."""
    versions = searched.client.search_model_versions(f"name = '{STUDY}'")
    picks = [
        r.recommendation["recommended"]["trial"]
        for r in (searched.first, searched.again)
        if r.recommendation["verdict"] == "recommend"
    ]
    assert {int(v.tags["trial"]) for v in versions} == set(picks)
    assert len({(v.run_id, v.tags["trial"]) for v in versions}) == len(versions)
    assert all(v.run_id == searched.first.parent_run_id for v in versions)


def test_recommended_model_is_an_onnx_mlflow_model_with_a_signature_in_the_registry(
    searched, tmp_path
):
    """Logged into a store of its own (so whatever the search's verdict was, this runs): the
    model file comes from the search's build cache, is served by MLflow's pyfunc, and is a
    version of the study's registered model linked to the parent run (the Models column)."""
    import mlflow.pyfunc

    paths = RunPaths(searched.runs)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, STUDY, tmp_path / "artifacts")
    tracker.start_parent(f"search {STUDY}", {"budget": 3}, {"study": STUDY})
    parent = tracker.ensure_parent()
    warnings: list[str] = []
    search = SimpleNamespace(
        tracker=tracker,
        workload=load_workload("seed-mlp", paths.cache),
        paths=paths,
        emit=lambda kind, words: warnings.append(words),
    )
    pick = searched.first.frontier[0]
    assert log_recommended(search, STUDY, pick) == "1" and warnings == []
    assert log_recommended(search, STUDY, pick) is None  # the same trial on the same run

    client = MlflowClient(tracking_uri=uri)
    (registered,) = client.search_registered_models(filter_string=f"name = '{STUDY}'")
    (version,) = client.search_model_versions(f"name = '{STUDY}'")
    assert registered.name == STUDY and str(version.version) == "1"
    assert version.run_id == parent and version.tags["trial"] == str(pick["trial"])
    run = client.get_run(parent)
    (output,) = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.source_run_id == parent and logged.tags["trial"] == str(pick["trial"])
    assert version.source == f"models:/{output.model_id}"
    _assert_in_the_models_column(client, run, logged, version)

    model = mlflow.pyfunc.load_model(f"models:/{STUDY}/1")
    assert "onnx" in model.metadata.flavors
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["x"]
    assert signature.inputs.inputs[0].shape[0] == -1  # any batch size
    x = search.workload.latency_inputs(4)
    (predicted,) = model.predict(x).values()
    assert predicted.shape[0] == 4 and np.isfinite(predicted).all()


def _assert_in_the_models_column(client, run, logged, version) -> None:
    """What MLflow 3's runs table reads for a run's Models column: the logged models that a
    search of the run's experiment returns (its first page), grouped by `source_run_id`,
    named with the registered versions listed in their `mlflow.modelVersions` tag. A model
    filed under the Default experiment (what `mlflow.onnx.log_model(run_id=...)` does
    without an active run) is never found there, nor are its files in the study's folder."""
    import json

    experiment = client.get_experiment(run.info.experiment_id)
    assert logged.experiment_id == experiment.experiment_id != "0"
    assert str(logged.status) == "READY"
    first_page = client.search_logged_models(
        experiment_ids=[experiment.experiment_id], max_results=50
    )
    shown = [m for m in first_page if m.source_run_id == run.info.run_id]
    assert [m.model_id for m in shown] == [logged.model_id]
    listed = json.loads(logged.tags["mlflow.modelVersions"])
    assert {"name": version.name, "version": str(version.version)} in [
        {"name": v["name"], "version": str(v["version"])} for v in listed
    ]
    assert logged.artifact_location.startswith(experiment.artifact_location)
    assert not client.search_logged_models(experiment_ids=["0"])


def test_a_model_that_cannot_be_logged_is_a_warning_not_a_failure(searched):
    paths = RunPaths(searched.runs)
    tracker = Tracker(searched.first.tracking_uri, STUDY, paths.artifacts)
    warnings: list[str] = []
    search = SimpleNamespace(
        tracker=tracker,
        workload=load_workload("seed-mlp", paths.cache),
        paths=paths,
        emit=lambda kind, words: warnings.append(words),
    )
    pick = {"trial": 99, "recipe": {"runtime.backend": "no-such-runtime"}, "description": ""}
    assert log_recommended(search, STUDY, pick) is None
    (said,) = warnings
    assert said.startswith(f"the recommended model was not logged to MLflow ({STUDY}):")
    assert "no-such-runtime" in said
