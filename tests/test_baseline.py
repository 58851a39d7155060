"""The baseline's timings: a busy-CPU timing is flagged, and re-timing keeps the faster one."""

from __future__ import annotations

from autoaccel.baseline import NOISY_SPREAD, noisy_warning
from autoaccel.evaluate.measure import Latency


def _latency(median: float, p90: float) -> Latency:
    return Latency(median_ms=median, p90_ms=p90, mean_ms=median, n_runs=20)


def test_a_timing_whose_p90_is_far_above_its_median_is_flagged_with_what_to_do():
    message = noisy_warning(_latency(450.9, 888.7))
    assert message is not None
    assert "median 450.900 ms, p90 888.700 ms" in message
    assert "run again on a quiet machine" in message


def test_a_timing_while_other_processes_used_the_cpu_is_flagged():
    busy = {"busy": True, "other_cores": 1.2, "cores": 2}
    message = noisy_warning(_latency(28.6, 30.2), busy)
    assert message and "other processes used 1.2 of 2 cores" in message
    assert noisy_warning(_latency(28.6, 30.2), {**busy, "busy": False}) is None


def test_a_steady_timing_is_not_flagged():
    assert noisy_warning(_latency(28.6, 30.2)) is None
    assert noisy_warning(_latency(1.0, NOISY_SPREAD)) is None  # the bound itself is fine


def test_slow_judging_is_flagged_with_the_budget_it_may_take_and_the_option_that_cuts_it():
    from autoaccel.baseline import judging_warning

    message = judging_warning(34.0, 100, None)
    assert message and "took 34 s" in message and "up to 57 min of --budget 100" in message
    assert "--judge-rows N" in message
    capped = judging_warning(34.0, 10**9, 45 * 60.0)  # --time-budget alone
    assert capped and "fills --time-budget after about 79 builds" in capped
    assert judging_warning(3.0, 20, None) is None  # a minute of judging: nothing to say
    assert judging_warning(0.5, 10**9, 60.0) is None and judging_warning(None, 100, None) is None
    assert "one build alone takes longer" in (judging_warning(34.0, 30, 20.0) or "")
