"""One trial's way to its outcome: an infeasible recipe is built once; a later trial that shares
the settings that decided it is failed at once, PRUNED with the same kind, and says which."""

from __future__ import annotations

import optuna

import autoaccel

SPACE = """
version: 1
description: OpenVINO asked for more streams than threads
techniques:
  runtime:
    backend: [openvino]
    intra_op_threads: [1]
    ov_streams: [2]
    ov_hint: [latency, throughput]
"""


def test_a_recipe_known_to_be_infeasible_is_failed_without_building_it(tmp_path):
    space = tmp_path / "streams.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    result = autoaccel.search(
        "seed-mlp", budget=4, runs_dir=runs, space=str(space), measure_seconds=0.03, seed=0
    )
    assert result.n_trials == 4 and result.recommendation["recommended"] is None
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{runs / 'optuna.db'}")
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.PRUNED}
    assert all(t.user_attrs["infeasible_kind"] == "openvino_streams" for t in study.trials)
    built = {}  # ov_hint -> the first trial that ran with it
    for t in study.trials:
        hint = t.user_attrs["recipe"]["runtime.ov_hint"]
        if hint not in built:
            assert "infeasible_as" not in t.user_attrs  # the first of its kind really ran
            built[hint] = t.number
            continue
        assert t.user_attrs["infeasible_as"] == built[hint]
        assert f"(as trial {built[hint]}, with the same " in t.user_attrs["fail_reason"]
        assert t.constraints == {"recipe_runs": 1.0}  # the sampler learns it like the first
