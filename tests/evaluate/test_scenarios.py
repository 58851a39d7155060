"""Scenarios on hand-computed queues and known batch latencies."""

from __future__ import annotations

import time

import numpy as np
import pytest

from autoaccel.evaluate.measure import Latency, MeasureConfig
from autoaccel.evaluate.scenarios import (
    ServerPolicy,
    measure_batches,
    offline,
    server,
    service_time,
    simulate,
)


def _lat(ms: float) -> Latency:
    return Latency(median_ms=ms, p90_ms=ms, mean_ms=ms, n_runs=10)


def _lats(table: dict[int, float]) -> dict[int, Latency]:
    return {b: _lat(ms) for b, ms in table.items()}


EXAMPLE = _lats({1: 5.0, 8: 12.0, 32: 40.0})


def test_simulate_idle_server_gives_service_latency_when_window_is_zero():
    arrivals = np.arange(10) * 10.0
    for policy in (ServerPolicy(1, 0.0), ServerPolicy(4, 0.0)):
        assert simulate(arrivals, lambda b: 5.0, policy).tolist() == [5.0] * 10


def test_simulate_pairs_dispatch_at_second_arrival_within_window():
    arrivals = np.arange(6) * 10.0
    latency = simulate(arrivals, lambda b: {1: 5.0, 2: 6.0}[b], ServerPolicy(2, 15.0))
    assert latency.tolist() == [16.0, 6.0] * 3


def test_simulate_simultaneous_arrivals_wait_behind_a_full_batch():
    latency = simulate(np.zeros(3), lambda b: 4.0, ServerPolicy(2, 0.0))
    assert latency.tolist() == [4.0, 4.0, 8.0]


def test_simulate_lone_request_waits_exactly_window_then_runs_alone():
    latency = simulate(np.array([0.0, 100.0]), lambda b: 3.0 * b, ServerPolicy(4, 5.0))
    assert latency.tolist() == [8.0, 8.0]  # 5 ms window + 3 ms alone


def test_simulate_window_expiry_takes_whatever_waits():
    # 0 and 3 wait until the window of the first expires at 5: batch of 2 ends at 5 + 4 = 9
    latency = simulate(np.array([0.0, 3.0, 50.0]), lambda b: 2.0 + b, ServerPolicy(4, 5.0))
    assert latency.tolist() == [9.0, 6.0, 8.0]


def test_simulate_busy_server_takes_at_most_max_batch_oldest():
    # 0 runs alone until 10; then 1 and 2 (oldest two of three waiting) until 20; then 3
    latency = simulate(np.array([0.0, 1.0, 2.0, 3.0]), lambda b: 10.0, ServerPolicy(2, 0.0))
    assert latency.tolist() == [10.0, 19.0, 18.0, 27.0]


def test_simulate_two_servers_halve_the_backlog_when_saturated():
    arrivals = np.zeros(4)
    one = simulate(arrivals, lambda b: 10.0, ServerPolicy(1, 0.0), servers=1)
    two = simulate(arrivals, lambda b: 10.0, ServerPolicy(1, 0.0), servers=2)
    assert one.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert two.tolist() == [10.0, 10.0, 20.0, 20.0]


def test_simulate_rejects_unsorted_arrivals():
    with pytest.raises(ValueError, match="sorted"):
        simulate(np.array([5.0, 1.0]), lambda b: 1.0, ServerPolicy(1, 0.0))


def test_simulate_20k_requests_takes_well_under_a_second():
    arrivals = np.cumsum(np.random.default_rng(0).exponential(1000 / 150, 20000))
    started = time.perf_counter()
    latency = simulate(arrivals, service_time(EXAMPLE), ServerPolicy(8, 2.0))
    assert time.perf_counter() - started < 0.5
    assert latency.shape == (20000,) and latency.min() >= 5.0


def test_service_time_interpolates_between_measured_sizes():
    service = service_time(EXAMPLE)
    assert service(1) == 5.0 and service(8) == 12.0 and service(32) == 40.0
    assert service(4) == pytest.approx(5.0 + 7.0 * 3 / 7)
    assert service(16) == pytest.approx(12.0 + 28.0 * 8 / 24)


def test_service_time_extrapolates_from_last_two_points_above_largest():
    assert service_time(EXAMPLE)(64) == pytest.approx(40.0 + 28.0 / 24 * 32)


def test_service_time_holds_smallest_below_and_scales_a_single_point():
    assert service_time(_lats({4: 8.0, 8: 12.0}))(1) == 8.0
    single = service_time(_lats({4: 8.0}))
    assert single(2) == 8.0 and single(8) == 16.0


def test_offline_picks_batch_with_highest_throughput():
    result = offline(_lats({1: 5.0, 8: 10.0, 32: 50.0}))
    assert result.per_batch == pytest.approx({1: 200.0, 8: 800.0, 32: 640.0})
    assert (result.batch_size, result.throughput_qps, result.latency_ms) == (8, 800.0, 10.0)


def test_offline_counts_streams_measured_concurrently():
    result = offline(EXAMPLE, streams=2)
    assert (result.batch_size, result.streams, result.throughput_qps) == (32, 2, 1600.0)
    with pytest.raises(ValueError):
        offline(EXAMPLE, streams=0)


BATCHING_HELPS = _lats({1: 5.0, 2: 5.5, 4: 6.0, 8: 7.0})


def test_server_chooses_batching_when_it_pays():
    result = server(BATCHING_HELPS, latency_bound_ms=50.0, n_requests=5000)
    assert result.reason is None
    assert result.policy.max_batch > 1
    assert result.sustained_qps > 1000 / 5.0
    assert result.sustained_qps <= offline(BATCHING_HELPS).throughput_qps


def test_server_tail_at_sustained_rate_meets_bound():
    result = server(EXAMPLE, latency_bound_ms=50.0, n_requests=5000)
    assert 0 < result.sustained_qps <= 800.0
    assert result.p99_ms <= result.latency_bound_ms


def test_server_gives_zero_with_reason_when_bound_below_batch1_latency():
    result = server(EXAMPLE, latency_bound_ms=4.0, n_requests=1000)
    assert result.sustained_qps == 0.0
    assert result.reason is not None and "batch-1 latency" in result.reason


def test_server_is_reproducible_with_same_seed():
    first = server(EXAMPLE, 50.0, arrival_rate_qps=300.0, n_requests=3000, seed=7)
    assert first == server(EXAMPLE, 50.0, arrival_rate_qps=300.0, n_requests=3000, seed=7)


def test_server_at_rate_reports_whether_bound_holds():
    low = server(EXAMPLE, 50.0, arrival_rate_qps=50.0, n_requests=3000).at_rate
    high = server(EXAMPLE, 50.0, arrival_rate_qps=2000.0, n_requests=3000).at_rate
    assert low is not None and high is not None
    assert low["meets_bound"] and low["p50_ms"] <= low["p99_ms"] <= 50.0
    assert 0 < low["utilisation"] < 1
    assert not high["meets_bound"] and high["p99_ms"] > 50.0  # above offline throughput


def test_giving_up_on_a_missed_bound_never_changes_a_verdict(monkeypatch):
    import math

    from autoaccel.evaluate import scenarios

    n, bound = 4000, 30.0
    unit = np.cumsum(np.random.default_rng(3).exponential(1.0, n))
    most = n - int(np.floor(0.99 * (n - 1))) - 1
    service = service_time(EXAMPLE)
    verdicts = set()
    for policy in (ServerPolicy(1, 0.0), ServerPolicy(8, 2.0), ServerPolicy(32, 10.0)):
        for rate in (50.0, 150.0, 190.0, 250.0, 600.0, 900.0):
            arrivals = unit * (1000.0 / rate)
            full, busy = scenarios._run(arrivals, service, policy, 1)
            early = scenarios._run(arrivals, service, policy, 1, (bound, most))
            meets = np.percentile(full, 99) <= bound
            verdicts.add(meets)
            assert (early is not None) == meets, (policy, rate)
            if early is not None:
                np.testing.assert_array_equal(early[0], full)
                assert math.isclose(early[1], busy)
    assert verdicts == {True, False}  # both kinds of rate were tried
    fast = server(EXAMPLE, bound, arrival_rate_qps=150.0, n_requests=n)
    full_run = scenarios._run
    monkeypatch.setattr(scenarios, "_run", lambda a, s, p, k, give_up=None: full_run(a, s, p, k))
    assert server(EXAMPLE, bound, arrival_rate_qps=150.0, n_requests=n) == fast


def _cost_grows_with(b: int):
    return lambda: sum(range(2000 * b))


def test_measure_batches_returns_one_latency_per_batch_size():
    cfg = MeasureConfig(warmup_s=0.0, warmup_runs=1, budget_s=0.05, min_runs=5, max_runs=200)
    result = measure_batches(_cost_grows_with, (1, 4, 32), cfg)
    assert list(result) == [1, 4, 32]
    assert all(isinstance(lat, Latency) and lat.n_runs >= 5 for lat in result.values())
    assert result[32].median_ms > result[1].median_ms


def test_search_keeps_a_passing_lower_end_when_nothing_higher_passes():
    from autoaccel.evaluate.scenarios import _search

    def tail(rate: float) -> float:
        return 1.0 if rate <= 10.0 else 99.0

    assert _search(tail, 5.0, lo=10.0, hi=20.0, tol=0.5) == (10.0, 1.0)
    assert _search(tail, 5.0, lo=11.0, hi=20.0, tol=0.5) == (0.0, None)  # lower end fails
    rate, rate_tail = _search(tail, 5.0, lo=0.0, hi=20.0, tol=0.5)
    assert 9.5 <= rate <= 10.0 and rate_tail == 1.0
