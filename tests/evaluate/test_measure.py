"""The measurement protocol on functions whose duration is known (sleepers)."""

from __future__ import annotations

import time

import pytest

from autoaccel.evaluate.measure import Latency, MeasureConfig, measure, measure_interleaved

QUICK = MeasureConfig(warmup_s=0.01, warmup_runs=2, budget_s=0.1, min_runs=10, max_runs=1000)


def _sleeper(ms: float, log: list | None = None, name: str = ""):
    def fn():
        if log is not None:
            log.append(name)
        time.sleep(ms / 1000)

    return fn


def test_measure_reports_sleep_duration_in_ms():
    latency = measure(_sleeper(2), QUICK)
    assert isinstance(latency, Latency)
    assert 1.5 <= latency.median_ms <= 10
    assert latency.p90_ms >= latency.median_ms
    assert latency.n_runs >= QUICK.min_runs
    assert latency.source == "measured" and latency.target == "cpu-local"


def test_measure_runs_min_runs_when_budget_is_exhausted_first():
    cfg = MeasureConfig(warmup_s=0.0, warmup_runs=1, budget_s=0.001, min_runs=7, max_runs=100)
    assert measure(_sleeper(2), cfg).n_runs == 7


def test_measure_stops_at_max_runs_when_min_runs_is_higher():
    calls: list[str] = []
    cfg = MeasureConfig(warmup_s=10.0, warmup_runs=100, budget_s=10.0, min_runs=50, max_runs=5)
    started = time.perf_counter()
    latency = measure(_sleeper(0, calls), cfg)
    assert latency.n_runs == 5
    assert len(calls) == 10  # warm-up is capped by max_runs too
    assert time.perf_counter() - started < 1.0


def test_measure_keeps_running_until_budget_when_min_runs_is_met_early():
    calls: list[str] = []
    cfg = MeasureConfig(warmup_s=0.0, warmup_runs=1, budget_s=0.05, min_runs=1, max_runs=1000)
    started = time.perf_counter()
    latency = measure(_sleeper(1, calls), cfg)
    assert time.perf_counter() - started >= cfg.budget_s
    assert latency.n_runs == len(calls) - 1 > cfg.min_runs  # all but the one warm-up call


def test_measure_interleaved_returns_one_latency_per_function_in_order_of_speed():
    log: list[str] = []
    fns = {"fast": _sleeper(1, log, "fast"), "slow": _sleeper(3, log, "slow")}
    result = measure_interleaved(fns, QUICK, rounds=4)
    assert set(result) == {"fast", "slow"}
    assert all(isinstance(v, Latency) for v in result.values())
    assert result["fast"].median_ms < result["slow"].median_ms
    assert 0.8 <= result["fast"].median_ms <= 10
    assert 2.5 <= result["slow"].median_ms <= 20


def test_measure_interleaved_alternates_functions_across_rounds():
    log: list[str] = []
    fns = {"a": _sleeper(0.2, log, "a"), "b": _sleeper(0.2, log, "b")}
    cfg = MeasureConfig(warmup_s=0.0, warmup_runs=1, budget_s=0.02, min_runs=8, max_runs=1000)
    measure_interleaved(fns, cfg, rounds=4)
    timed = log[2:]  # after one warm-up call each
    switches = sum(1 for x, y in zip(timed, timed[1:], strict=False) if x != y)
    assert switches >= 2 * 4 - 1  # a block of a, a block of b, in each of 4 rounds
    assert timed[0] == "a" and timed[-1] == "b"


def test_scaled_config_scales_budget_and_warmup_and_keeps_caps():
    base = MeasureConfig()
    small = base.scaled(0.15)
    assert small.budget_s == 0.15
    assert small.warmup_s == pytest.approx(base.warmup_s * 0.1)
    assert small.min_runs == 3  # never below 3
    assert small.warmup_runs == base.warmup_runs and small.max_runs == base.max_runs


def test_scaled_config_keeps_min_runs_when_budget_grows():
    assert MeasureConfig().scaled(15.0).min_runs == MeasureConfig().min_runs


def test_scaled_config_equals_original_when_budget_unchanged():
    base = MeasureConfig()
    assert base.scaled(base.budget_s) == base
