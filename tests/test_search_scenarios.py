"""Scenarios in the search: the objective follows single-stream, offline or server."""

from __future__ import annotations

import optuna
import pytest

import autoaccel
from autoaccel.errors import UserError
from autoaccel.evaluate.scenarios import BATCH_SIZES

SPACE = "version: 1\ntechniques:\n  quantize:\n    mode: [none, int8_dynamic]\n"


def _run(tmp_path, **options):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    result = autoaccel.search(
        "seed-mlp",
        budget=2,
        runs_dir=runs,
        space=str(space),
        measure_seconds=0.02,
        targets=["cpu-local"],
        **options,
    )
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{runs / 'optuna.db'}")
    return result, study


def test_offline_objective_is_ms_per_query_at_the_best_batch(tmp_path):
    result, study = _run(tmp_path, scenario="offline")
    assert result.study == "seed-mlp-space-offline"  # its own study: another objective
    baseline = study.user_attrs["baseline"]["scenario"]
    assert baseline["batch_size"] in BATCH_SIZES
    for t in study.trials:
        figures = t.user_attrs["result"]["hardware"]["scenario"]
        assert figures["scenario"] == "offline"
        assert figures["objective_ms"] == pytest.approx(1000.0 / figures["throughput_qps"])
        # the study's objective: the baseline's ms per query over the paired speedup, whose
        # rounds compared ms per query at the best batch of both
        paired = t.user_attrs["result"]["paired"]
        assert t.values[1] == pytest.approx(baseline["objective_ms"] / paired["speedup"])
        assert paired["reference_ms"] / paired["candidate_ms"] == pytest.approx(
            paired["speedup"], rel=0.5
        )
        per_batch = figures["per_batch_qps"]
        assert set(per_batch) == {str(b) for b in BATCH_SIZES}
        assert figures["throughput_qps"] == max(per_batch.values())


def test_server_reports_policy_and_meets_the_bound(tmp_path):
    result, study = _run(tmp_path, scenario="server", latency_bound_ms=20.0, arrival_rate=100.0)
    for t in study.trials:
        figures = t.user_attrs["result"]["hardware"]["scenario"]
        assert figures["max_batch"] in BATCH_SIZES and figures["window_ms"] >= 0
        assert figures["p99_ms"] <= 20.0
        assert figures["at_rate"]["rate_qps"] == 100.0
        assert figures["objective_ms"] == pytest.approx(1000.0 / figures["throughput_qps"])
        baseline = study.user_attrs["baseline"]["scenario"]
        paired = t.user_attrs["result"]["paired"]
        assert t.values[1] == pytest.approx(baseline["objective_ms"] / paired["speedup"])


def test_server_bound_the_baseline_cannot_meet_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="latency-bound-ms.*raise the bound"):
        _run(tmp_path, scenario="server", latency_bound_ms=1e-6)


def test_scenario_is_part_of_the_study_identity(tmp_path):
    _run(tmp_path, scenario="offline", study="same")
    with pytest.raises(UserError, match="different scenario"):
        _run(tmp_path, scenario="server", study="same")
