"""Build once, place everywhere: every trial is a build measured here; every estimated target
is projected for every build, beside the measurement, never told to the sampler."""

from __future__ import annotations

import json
import sqlite3

import optuna
import pytest
from typer.testing import CliRunner

import autoaccel
from autoaccel.cli import app
from autoaccel.errors import UserError
from autoaccel.workers import counted

# in-process (isolation has its own tests): a search's worker start-up is seconds
FAST = {"measure_seconds": 0.03, "isolate": False}
ESTIMATED = ["nvidia-t4", "nvidia-a100-80gb", "google-edge-tpu"]


def _space(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text("version: 1\n" + text)
    return str(path)


def _study(runs, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'optuna.db'}")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A seed-mlp search over fp32 and int8 builds, projected on three estimated targets."""
    tmp = tmp_path_factory.mktemp("placed")
    space = _space(
        tmp,
        "targets:\n  batch_size: [1, 8]\n  data: [1, 2]\n  tensor: [1, 2]\n"
        "techniques:\n  quantize:\n    mode: [none, int8_static]\n"
        "  runtime:\n    intra_op_threads: [1, 2]\n",
    )
    runs = tmp / "runs"
    result = autoaccel.search(
        "seed-mlp", budget=6, runs_dir=runs, space=space, targets=ESTIMATED, **FAST
    )
    return runs, result, _study(runs, result.study)


def test_every_trial_is_measured_here_and_only_measured_values_reach_optuna(searched):
    runs, result, study = searched
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    repeats = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert done and len(done) <= 4  # the space has 4 builds; each is judged once
    assert len(done) + len(repeats) == len(study.trials) and counted(study.trials, 6) == 6
    for t in done:
        res = t.user_attrs["result"]
        assert res["latency_source"] == "measured" and res["target"] == "cpu-local"
        assert res["latency_runs"] > 0
        assert "target.name" not in t.user_attrs["recipe"]  # hardware is not searched
        assert t.values[1] == pytest.approx(res["objective_ms"])
        projected = {
            pick["latency_ms"]
            for proj in t.user_attrs["projections"].values()
            for pick in proj["best"].values()
        }
        assert t.values[1] not in projected  # no estimate in any objective


def test_every_estimated_target_is_projected_for_every_build(searched):
    _, _, study = searched
    for t in study.trials:
        if t.state.name != "COMPLETE" or "duplicate_of" in t.user_attrs:
            continue
        projections = t.user_attrs["projections"]
        assert set(projections) == set(ESTIMATED)
        int8 = t.user_attrs["recipe"]["quantize.mode"] == "int8_static"
        edge = projections["google-edge-tpu"]
        # an int8-only chip runs the int8 builds and says why it cannot run the float ones
        assert (edge["feasible_plans"] > 0) is int8
        if not int8:
            assert "int8" in next(iter(edge["infeasible"]))
        t4 = projections["nvidia-t4"]
        assert t4["source"] == "estimated:nvidia-t4"
        assert t4["feasible_plans"] == 2 * 2 * 2  # batch x data x tensor; no pipeline listed
        assert set(t4["best"]) >= {"latency", "throughput", "cost", "energy", "scenario"}
        a100 = projections["nvidia-a100-80gb"]
        assert a100["feasible_plans"] == 2 * 2 * 2  # batch x data x tensor, within 8 devices
        assert a100["best"]["throughput"]["plan"]["data"] == 2  # replicas multiply throughput
        assert a100["best"]["latency"]["plan"]["batch_size"] == 1
        twin = t.user_attrs["result"]["measured"]["cpu-local"]["twin"]
        assert twin["source"] == "estimated:cpu-local"  # the cost model beside the measurement


def test_recommendation_is_measured_and_every_target_is_ranked(searched):
    runs, result, study = searched
    rec = json.loads((runs / result.study / "recommendation.json").read_text())
    assert rec["recommended"]["latency_source"] == "measured"
    assert all(p["latency_source"] == "measured" for p in rec["frontier"])
    rows = {row["target"]: row for row in rec["hardware"]}
    assert set(rows) == {"cpu-local", *ESTIMATED}
    assert rows["cpu-local"]["source"] == "measured"
    for name in ("nvidia-t4", "nvidia-a100-80gb"):
        row = rows[name]
        assert row["source"] == f"estimated:{name}" and row["plan"]["batch_size"] == 1
        assert row["speedup_basis"] == f"estimated:{name}"  # against the baseline there
    assert set(study.user_attrs["baseline_projections"]) == set(ESTIMATED)
    report = (runs / result.study / "report.md").read_text()
    for name in ESTIMATED:
        assert name in report


def test_projections_are_tracked_in_mlflow(searched):
    runs, result, _ = searched
    con = sqlite3.connect(runs / "mlflow.db")
    sources = {v for (v,) in con.execute("select value from tags where key = 'latency_source'")}
    keys = {k for (k,) in con.execute("select distinct key from metrics")}
    con.close()
    assert sources == {"measured"}
    assert {"projected.nvidia-t4.latency_ms", "measured.cpu-local.latency_ms"} <= keys
    assert list((runs / "mlartifacts").rglob("projections.json"))


def _settings(tmp_path, workload, cache_dir, targets):
    """What a trial's evaluator needs: these targets, batch-1 plans only, short timings."""
    from autoaccel.evaluate.measure import MeasureConfig
    from autoaccel.projection.plans import PlanGrid
    from autoaccel.trial_eval import EvalSettings

    return EvalSettings(
        workload="seed-mlp",
        model=None,
        data=None,
        metric=workload.metric,
        cache=cache_dir,
        root=tmp_path,
        targets=targets,
        measure=MeasureConfig().scaled(0.03),
        batch_sizes=(1,),
        scenario="single-stream",
        latency_bound_ms=100.0,
        arrival_rate=None,
        grid=PlanGrid.from_block({"batch_size": [1]}),
    )


def test_quality_is_judged_once_per_built_model(tmp_path, seed_mlp, cache_dir):
    from autoaccel.targets import load_targets
    from autoaccel.trial_eval import CandidateEvaluator

    settings = _settings(tmp_path, seed_mlp, cache_dir, load_targets(["nvidia-l4"]))
    evaluator = CandidateEvaluator(settings, seed_mlp)
    recipe = {"runtime.backend": "onnxruntime", "quantize.mode": "int8_dynamic"}
    first = evaluator.run({**recipe, "runtime.intra_op_threads": 1})
    again = evaluator.run({**recipe, "runtime.intra_op_threads": 2})  # same file, other threads
    assert again.quality_cached and again.quality == first.quality
    assert set(again.projections) == {"nvidia-l4"}
    torch_build = evaluator.run({"runtime.backend": "torch"})  # projected from its export
    assert torch_build.projections["nvidia-l4"]["feasible_plans"] == 1


def test_unknown_target_is_a_user_error_naming_the_choices(tmp_path):
    with pytest.raises(UserError, match="unknown target.*nvidia-l4"):
        autoaccel.search("seed-mlp", budget=1, runs_dir=tmp_path / "r", targets=["nvidia-l5"])
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_targets_list_says_which_targets_are_measured_and_show_prints_profiles():
    runner = CliRunner(env={"COLUMNS": "160"})
    listed = runner.invoke(app, ["targets", "list"])
    assert listed.exit_code == 0
    line = next(x for x in listed.output.splitlines() if "cpu-local" in x)
    assert "measured here" in line
    edge = next(x for x in listed.output.splitlines() if "google-edge-tpu" in x)
    assert "estimated" in edge
    shown = runner.invoke(app, ["targets", "show", "nvidia-t4"])
    assert shown.exit_code == 0 and "bandwidth_gbps" in shown.output and "source" in shown.output


def test_a_measured_device_that_cannot_run_a_build_is_recorded_not_failed(
    tmp_path, seed_mlp, cache_dir
):
    from autoaccel.targets import load_targets
    from autoaccel.targets.gpu import GpuTarget
    from autoaccel.targets.measured import CUDA, MeasuredTarget
    from autoaccel.trial_eval import CandidateEvaluator

    found = load_targets(["nvidia-t4"])
    gpu = MeasuredTarget(CUDA, "cuda", GpuTarget(found["nvidia-t4"].profile))  # none here
    measured_first = {"cpu-local": found["cpu-local"], CUDA: gpu, "nvidia-t4": found["nvidia-t4"]}
    settings = _settings(tmp_path, seed_mlp, cache_dir, measured_first)
    assert settings.objective_target == "cpu-local"
    out = CandidateEvaluator(settings, seed_mlp).run({"runtime.backend": "onnxruntime"})
    assert out.objective is out.measured["cpu-local"] and out.objective["latency_runs"] > 0
    assert "CUDA" in out.measured[CUDA]["infeasible"]  # this machine has no GPU
    assert out.measured["cpu-local"]["twin"]["source"] == "estimated:cpu-local"
    assert set(out.projections) == {"nvidia-t4"}
