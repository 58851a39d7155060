"""Target hardware as a search dimension: measured here, estimated elsewhere, never mixed."""

from __future__ import annotations

import json
import sqlite3

import optuna
import pytest
from typer.testing import CliRunner

import autoaccel
from autoaccel.cli import app
from autoaccel.errors import UserError

FAST = {"measure_seconds": 0.03}


def _space(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text("version: 1\ntechniques:\n" + text)
    return str(path)


def _trials(runs, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'optuna.db'}").trials


def test_estimated_targets_are_labelled_and_carry_hardware_figures(tmp_path):
    space = _space(
        tmp_path,
        "  target:\n    batch_size: [1, 8]\n  quantize:\n    mode: [none, int8_static]\n",
    )
    runs = tmp_path / "runs"
    result = autoaccel.search(
        "seed-mlp",
        budget=8,
        runs_dir=runs,
        space=space,
        targets=["cpu-local", "nvidia-t4", "nvidia-a100-80gb"],
        **FAST,
    )
    trials = [t for t in _trials(runs, result.study) if t.state.name == "COMPLETE"]
    seen = {t.user_attrs["recipe"]["target.name"] for t in trials}
    assert len(seen) >= 2 and seen <= {"cpu-local", "nvidia-t4", "nvidia-a100-80gb"}
    for t in trials:
        res, name = t.user_attrs["result"], t.user_attrs["recipe"]["target.name"]
        if name == "cpu-local":
            assert res["latency_source"] == "measured" and res["latency_runs"] > 0
        else:
            assert res["latency_source"] == f"estimated:{name}" and res["latency_runs"] == 0
            hw = res["hardware"]
            assert hw["macs"] > 0 and hw["throughput_qps"] > 0 and hw["energy_j"] > 0
            assert hw["batch_size"] == t.user_attrs["recipe"]["target.batch_size"]
    rec = json.loads((runs / result.study / "recommendation.json").read_text())
    for point in rec["frontier"]:
        assert point["latency_source"] in ("measured", f"estimated:{point['target']}")
    if rec["recommended"]["latency_source"] != "measured":
        assert "estimated:" in rec["recommended"]["summary"]
    con = sqlite3.connect(runs / "mlflow.db")
    tags = con.execute("select value from tags where key = 'latency_source'").fetchall()
    con.close()
    assert {v for (v,) in tags} <= {
        "measured",
        "estimated:nvidia-t4",
        "estimated:nvidia-a100-80gb",
    }


def test_float_recipe_on_int8_only_asic_is_infeasible_with_reason(tmp_path):
    space = _space(tmp_path, "  quantize:\n    mode: [none]\n")
    runs = tmp_path / "runs"
    result = autoaccel.search(
        "seed-mlp", budget=2, runs_dir=runs, space=space, targets=["google-edge-tpu"], **FAST
    )
    assert result.n_failed == 2 and result.recommendation["recommended"] is None
    for t in _trials(runs, result.study):
        assert t.state == optuna.trial.TrialState.PRUNED  # infeasible, told to the sampler
        assert "int8" in t.user_attrs["fail_reason"]


def test_int8_recipe_on_int8_only_asic_is_estimated(tmp_path):
    space = _space(tmp_path, "  quantize:\n    mode: [int8_static]\n")
    runs = tmp_path / "runs"
    result = autoaccel.search(
        "seed-mlp", budget=1, runs_dir=runs, space=space, targets=["google-edge-tpu"], **FAST
    )
    (trial,) = _trials(runs, result.study)
    assert trial.state.name == "COMPLETE"
    assert trial.user_attrs["result"]["latency_source"] == "estimated:google-edge-tpu"


def test_unknown_target_is_a_user_error_naming_the_choices(tmp_path):
    with pytest.raises(UserError, match="unknown target.*nvidia-l4"):
        autoaccel.search("seed-mlp", budget=1, runs_dir=tmp_path / "r", targets=["nvidia-l5"])
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_targets_list_and_show_print_profiles():
    runner = CliRunner(env={"COLUMNS": "160"})
    listed = runner.invoke(app, ["targets", "list"])
    assert listed.exit_code == 0
    assert "google-edge-tpu" in listed.output and "measured" in listed.output
    shown = runner.invoke(app, ["targets", "show", "nvidia-t4"])
    assert shown.exit_code == 0 and "bandwidth_gbps" in shown.output and "source" in shown.output


def test_targets_option_overrides_space_list_and_keeps_its_plan_params(tmp_path):
    from autoaccel.search_run import _with_targets
    from autoaccel.space import load_space

    space = load_space(
        _space(tmp_path, "  target:\n    name: [cpu-local]\n    batch_size: [1, 8]\n")
    )
    narrowed, targets = _with_targets(space, ["nvidia-l4", "hailo-8"])
    assert narrowed.blocks["target"] == {"name": ["nvidia-l4", "hailo-8"], "batch_size": [1, 8]}
    assert list(targets) == ["nvidia-l4", "hailo-8"]
    kept, _ = _with_targets(space, None)  # no --targets: the space's own list
    assert kept.blocks["target"]["name"] == ["cpu-local"]
    everything, _ = _with_targets(
        load_space(_space(tmp_path, "  quantize:\n    mode: [none]\n")), None
    )
    assert len(everything.blocks["target"]["name"]) >= 11  # no list anywhere: every profile


def test_parallelism_is_only_searched_for_targets_that_can_span_devices(tmp_path, seed_mlp):
    from autoaccel.space import load_space, suggest_recipe

    text = "  target:\n    name: [hailo-8, nvidia-a100-80gb]\n    tensor: [1, 2]\n"
    text += "    pipeline: [2]\n    micro_batches: [2]\n    batch_size: [1, 8]\n"
    space = load_space(_space(tmp_path, text))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    recipes = [suggest_recipe(study.ask(), space, seed_mlp) for _ in range(30)]
    for r in recipes:
        single = r["target.name"] == "hailo-8"
        assert ("target.tensor" in r) is not single and ("target.data" in r) is not single
        if "target.micro_batches" in r:  # only where it can divide the batch
            assert r["target.batch_size"] > 1 and not single
    assert {r["target.name"] for r in recipes} == {"hailo-8", "nvidia-a100-80gb"}
