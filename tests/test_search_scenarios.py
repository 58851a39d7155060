"""Scenarios in the search: the objective follows single-stream, offline or server."""

from __future__ import annotations

import optuna
import pytest

import autoaccel
from autoaccel import baseline as baseline_module
from autoaccel.errors import UserError
from autoaccel.evaluate.scenarios import BATCH_SIZES

SPACE = "version: 1\ntechniques:\n  quantize:\n    mode: [none, int8_dynamic]\n"


def _run(tmp_path, teacher=None, **options):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    if teacher is not None:
        teacher(runs)
    result = autoaccel.search(
        "seed-mlp",
        budget=2,
        runs_dir=runs,
        space=str(space),
        measure_seconds=0.02,
        isolate=False,  # in-process: isolation has its own tests
        targets=["cpu-local"],
        **options,
    )
    study = optuna.load_study(study_name=result.study, storage=f"sqlite:///{runs / 'optuna.db'}")
    return result, study


@pytest.fixture(scope="module")
def offline_search(tmp_path_factory, cache_teacher):
    """One offline search (~25 s) for the module: its figures and its study's identity."""
    folder = tmp_path_factory.mktemp("offline")
    result, study = _run(folder, cache_teacher, scenario="offline")
    return folder, result, study


def test_offline_objective_is_ms_per_query_at_the_best_batch(offline_search):
    _, result, study = offline_search
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


def test_server_reports_policy_and_meets_the_bound(tmp_path, monkeypatch, cache_teacher):
    # What is checked here is every trial's server figures. The closing re-timing of the
    # quoted recipe computes the server figure (a policy search over simulated queues, ~1 s)
    # twice per round, for up to 30 rounds: it runs, over fewer rounds (its rounds and
    # interval are checked in test_search.py).
    monkeypatch.setattr(baseline_module, "CONFIRM_ROUNDS", (3, 3))
    result, study = _run(
        tmp_path, cache_teacher, scenario="server", latency_bound_ms=20.0, arrival_rate=100.0
    )
    assert study.user_attrs["confirmed"]["rounds"] == 3  # the server path's re-timing ran
    for t in study.trials:
        figures = t.user_attrs["result"]["hardware"]["scenario"]
        assert figures["max_batch"] in BATCH_SIZES and figures["window_ms"] >= 0
        assert figures["p99_ms"] <= 20.0
        assert figures["at_rate"]["rate_qps"] == 100.0
        assert figures["objective_ms"] == pytest.approx(1000.0 / figures["throughput_qps"])
        baseline = study.user_attrs["baseline"]["scenario"]
        paired = t.user_attrs["result"]["paired"]
        assert t.values[1] == pytest.approx(baseline["objective_ms"] / paired["speedup"])


def test_server_bound_the_baseline_cannot_meet_is_a_user_error(tmp_path, cache_teacher):
    with pytest.raises(UserError, match="latency-bound-ms.*raise the bound"):
        _run(tmp_path, cache_teacher, scenario="server", latency_bound_ms=1e-6)


def test_scenario_is_part_of_the_study_identity(offline_search):
    folder, result, _ = offline_search  # a study made by an offline search
    with pytest.raises(UserError, match="different scenario"):
        _run(folder, scenario="server", study=result.study)
