"""Several limits at once (`--limit NAME=DROP`): each an Optuna constraint, a candidate
feasible only within all of them, every limited figure in the recommendation and report."""

from __future__ import annotations

import json

import optuna
import pytest

import autoaccel
from autoaccel.config import SearchConfig, parse_limits
from autoaccel.errors import UserError

SPACE = """
version: 1
techniques:
  runtime:
    backend: [onnxruntime]
  quantize:
    mode: [none, int8_dynamic]
"""


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (["agreement"], "write NAME=DROP"),
        (["agreement=x"], "write NAME=DROP"),
        (["=0.1"], "write NAME=DROP"),
        (["agreement=-0.1"], "write NAME=DROP"),
        (["agreement=0.1", "agreement=0.2"], "given twice"),
    ],
)
def test_a_malformed_limit_is_refused_in_one_line(given, says):
    with pytest.raises(UserError) as raised:
        parse_limits(given)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_limits_are_checked_against_the_workloads_figures_and_ranges(seed_mlp):
    cfg = SearchConfig.build(workload="seed-mlp", limits=["confidence=0.1"])
    with pytest.raises(
        UserError,
        match=r"--limit confidence=\.\.\.: workload seed-mlp reports "
        r"accuracy; use one of those",
    ):
        cfg.check_limit(seed_mlp, ["accuracy"])
    half = SearchConfig.build(workload="seed-mlp", limits=["accuracy=0.5"])
    with pytest.raises(UserError, match=r"--limit accuracy=0\.5: the metric accuracy lies in"):
        half.check_limit(seed_mlp, ["accuracy"])
    on_primary = SearchConfig.build(workload="seed-mlp", limits=["accuracy=0.03"])
    checked = on_primary.check_limit(seed_mlp, ["accuracy"])
    assert checked.max_accuracy_drop == 0.03 and checked.limits == {}


def test_every_limit_is_a_constraint_and_the_pick_keeps_them_all(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    result = autoaccel.search(
        "support_workloads:agreement",
        budget=4,
        runs_dir=runs,
        space=str(space),
        measure_seconds=0.03,
        isolate=False,  # in-process: isolation has its own tests
        targets=["cpu-local"],
        limits={"agreement": 1e-4},
    )
    assert result.study.endswith("-agreement-0.0001")  # never mixed with a study without it
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{runs / 'optuna.db'}")
    assert study.user_attrs["identity"]["limits"] == {"agreement": 1e-4}
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    modes = {t.user_attrs["recipe"]["quantize.mode"]: t for t in done}
    assert set(modes) == {"none", "int8_dynamic"}
    int8, fp32 = modes["int8_dynamic"], modes["none"]
    assert int8.constraints["accuracy_drop"] <= 0 < int8.constraints["limit.agreement"]
    assert fp32.constraints["limit.agreement"] <= 0
    rec = json.loads((runs / result.study / "recommendation.json").read_text())
    assert set(rec["limits"]) == {"accuracy", "agreement"}
    assert rec["limits"]["agreement"]["max_drop"] == 1e-4
    pick = rec["recommended"] or rec["closest"][0]
    assert pick["recipe"]["quantize.mode"] == "none"  # int8 is fast, but not within both
    if rec["recommended"]:
        assert pick["limited"]["agreement"]["drop"] <= 1e-4
    report = (runs / result.study / "report.md").read_text()
    assert "limit on agreement" in report
