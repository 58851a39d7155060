"""The paired timing rule and the contention detector, on small real workloads."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from autoaccel.evaluate import contention, paired
from autoaccel.evaluate.contention import Contention, CpuWindow
from autoaccel.evaluate.measure import MeasureConfig
from autoaccel.evaluate.paired import bootstrap_interval, measure_paired

QUICK = MeasureConfig(warmup_s=0.02, warmup_runs=2, budget_s=0.3, min_runs=12)
A = np.random.default_rng(0).random((160, 160), dtype=np.float32)


def _work(times: int):
    def run():
        for _ in range(times):
            A @ A

    return run


def _single(latencies) -> float:
    return latencies[1].median_ms


def _stalls_in_bursts(run, busy_share: float = 0.6, block_s: float = 0.05):
    """`run`, stalling 5 ms per call for `busy_share` of each `block_s` of wall time: a
    2-thread baseline on a core another process keeps busy, in bursts."""

    def stalled():
        if (time.monotonic() % block_s) < busy_share * block_s:
            time.sleep(0.005)
        run()

    return stalled


def test_stalls_in_bursts_on_one_side_do_not_inflate_the_speedup():
    """The rule's reason: round medians quoted 577x for a 2x digits-cnn recipe when one core
    was busy in bursts; the window's fastest quarter quotes about 2x."""
    reference = _stalls_in_bursts(_work(4))
    timing = measure_paired({1: _work(2)}, {1: reference}, _single, QUICK, attempts=1)
    assert 1.2 < timing.speedup < 3.5  # not the ~50x a stalled baseline's medians give
    assert timing.reference[1].mean_ms > 1.5 * timing.reference_ms  # the stalls happened
    assert timing.ci_low <= timing.speedup <= timing.ci_high


def test_a_candidate_doing_half_the_work_is_about_twice_as_fast():
    timing = measure_paired({1: _work(2)}, {1: _work(4)}, _single, QUICK, attempts=1)
    assert 1.3 < timing.speedup < 3.0  # 2x of the work; wide: CI machines are shared
    assert timing.ci_low <= timing.speedup <= timing.ci_high
    assert paired.MIN_ROUNDS <= timing.rounds <= paired.MAX_ROUNDS
    assert timing.candidate[1].n_runs >= timing.rounds  # both sides ran every round
    assert timing.reference_ms > timing.candidate_ms
    d = timing.as_dict()
    assert "fastest quarter" in d["rule"] and "busy" in d["contention"]
    assert timing.speedup == pytest.approx(timing.reference_ms / timing.candidate_ms)


def test_the_interval_is_the_bootstrap_of_the_median():
    low, high = bootstrap_interval([2.0, 2.1, 1.9, 2.0, 2.05, 1.95])
    assert 1.9 <= low <= 2.0 <= high <= 2.1
    assert bootstrap_interval([3.0]) == (3.0, 3.0)
    wide_low, wide_high = bootstrap_interval([1.0, 3.0, 1.2, 2.8, 1.1, 2.9])
    assert wide_high - wide_low > high - low


def _windows(monkeypatch, seen: list[Contention], after_wait: Contention) -> list[float]:
    """CpuWindow reports `seen` in turn; waiting for quiet ends at `after_wait`."""
    monkeypatch.delenv("AUTOACCEL_BUSY_CORES")
    waits: list[float] = []
    queue = list(seen)

    class Scripted(CpuWindow):
        def read(self) -> Contention:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    monkeypatch.setattr(paired, "CpuWindow", Scripted)
    monkeypatch.setattr(paired, "wait_for_quiet", lambda s: waits.append(s) or after_wait)
    return waits


BUSY = Contention(1.0, 0.0, 3.0, 2, 1.0, "/proc/stat")
QUIET = Contention(0.05, 0.0, 1.0, 2, 1.0, "/proc/stat")


def test_a_busy_window_is_re_timed_once_the_burst_has_passed(monkeypatch):
    waits = _windows(monkeypatch, [BUSY, QUIET], after_wait=QUIET)
    timing = measure_paired({1: _work(1)}, {1: _work(2)}, _single, QUICK, max_rounds=6)
    assert timing.attempts == 2 and len(waits) == 1
    assert not timing.contention.busy  # the quiet attempt is the one kept


def test_a_steady_load_is_flagged_not_waited_for_again(monkeypatch):
    waits = _windows(monkeypatch, [BUSY], after_wait=BUSY)
    timing = measure_paired({1: _work(1)}, {1: _work(2)}, _single, QUICK, max_rounds=6)
    assert timing.attempts == 1 and len(waits) == 1
    assert timing.contention.busy


def test_after_a_wait_that_ended_busy_the_next_wait_is_one_look(monkeypatch):
    monkeypatch.delenv("AUTOACCEL_BUSY_CORES")
    looks = []

    def look(seconds: float) -> Contention:
        looks.append(seconds)
        time.sleep(seconds)
        return BUSY

    monkeypatch.setattr(contention, "sample", look)
    monkeypatch.setattr(contention, "_still_busy_at", -1e9)
    contention.wait_for_quiet(0.05, step_s=0.01)
    first = len(looks)
    assert first > 1  # it waited, looking again and again
    looks.clear()
    contention.wait_for_quiet(10.0, step_s=0.01)
    assert len(looks) == 1  # a steady load: looked at once


def test_the_window_sees_another_process_using_a_core(monkeypatch):
    monkeypatch.delenv("AUTOACCEL_BUSY_CORES")
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<4: pass"]
    )
    try:
        time.sleep(0.5)
        seen = contention.sample(1.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert seen.other_cores > 0.5 and seen.busy
    assert "other processes used" in seen.words()


def test_this_process_own_work_is_not_counted_as_other_work():
    with CpuWindow() as window:
        _work(200)()
    assert window.result is not None
    # the matrix products ran here; the other work is what the rest of the machine did
    assert window.result.other_cores < window.result.cores


@pytest.mark.parametrize("cores,expected", [(2, 0.3), (16, 1.6)])
def test_busy_means_a_share_of_the_machine(cores, expected, monkeypatch):
    monkeypatch.delenv("AUTOACCEL_BUSY_CORES")
    assert contention.threshold(cores) == pytest.approx(expected)
    monkeypatch.setenv("AUTOACCEL_BUSY_CORES", "1.5")
    assert contention.threshold(cores) == 1.5
