"""Speedup as autoaccel quotes it: a candidate timed interleaved with the baseline.

The rule (one for the console, recommendation.json, the report and MLflow): the candidate
and the baseline (the *reference*) are timed in alternating rounds in one process, the order
flipping every round (ABBA), so whatever the machine does in that window hits both. Each
round gives one ratio, reference figure / candidate figure, from the round's medians (the
figure being the scenario's objective: batch-1 latency, or ms per query at the best batch).
The speedup is the **median of the per-round ratios**, with a **95 % bootstrap interval**
over rounds. Rounds continue (6 to 18; 6 take one protocol budget for both sides) until
the interval is within +-5 % or the cap. The
window's other work is measured (`contention.CpuWindow`); a busy window is re-timed once the
machine has quietened (a steady load is not waited for again and again), the quietest
attempt is kept, and it is flagged when still busy, so a figure taken on a busy machine says
so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from autoaccel.errors import InfeasibleRecipe
from autoaccel.evaluate.contention import Contention, CpuWindow, wait_for_quiet
from autoaccel.evaluate.measure import Latency, MeasureConfig, summarize, time_runs, warm_up

Fns = dict[int, Callable[[], object]]  # batch size -> one run of that batch
Figure = Callable[[dict[int, Latency]], float]  # per-batch latencies -> objective ms

MIN_ROUNDS = 6
MAX_ROUNDS = 18
TARGET_HALF_WIDTH = 0.05  # stop adding rounds when the interval is within +-5 %
ATTEMPTS = 3  # timings of one pair at most, when the machine is busy
QUIET_WAIT_S = 10.0  # the longest wait for other work to pass, before a re-timing


def quiet_wait(cfg: MeasureConfig) -> float:
    """How long to wait for a quiet machine: up to 10 s, less for a short protocol."""
    return min(QUIET_WAIT_S, 5 * cfg.budget_s)


BOOTSTRAP = 2000


@dataclass(frozen=True)
class PairedTiming:
    """A candidate and the reference timed in the same window."""

    speedup: float
    ci_low: float
    ci_high: float
    rounds: int
    candidate: dict[int, Latency]
    reference: dict[int, Latency]
    candidate_ms: float  # the candidate's figure over all its runs in the window
    reference_ms: float  # the reference's, likewise
    contention: Contention
    attempts: int

    @property
    def half_width(self) -> float:
        """The interval's half width relative to the speedup (0.05 = +-5 %)."""
        return (self.ci_high - self.ci_low) / (2 * self.speedup)

    def as_dict(self) -> dict[str, Any]:
        return {
            "speedup": self.speedup,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "rounds": self.rounds,
            "candidate_ms": self.candidate_ms,
            "reference_ms": self.reference_ms,
            "attempts": self.attempts,
            "contention": self.contention.as_dict(),
            "rule": RULE,
        }


RULE = (
    "median of per-round ratios (baseline / candidate), candidate and baseline timed "
    "interleaved in alternating rounds in one process; 95 % bootstrap interval over rounds"
)


def bootstrap_interval(ratios: list[float], seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median of `ratios`."""
    r = np.asarray(ratios, dtype=np.float64)
    if len(r) < 2:
        return float(r[0]), float(r[0])
    rng = np.random.default_rng(seed)
    medians = np.median(r[rng.integers(0, len(r), size=(BOOTSTRAP, len(r)))], axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def _once(
    candidate: Fns,
    reference: Fns,
    figure: Figure,
    cfg: MeasureConfig,
    min_rounds: int,
    max_rounds: int,
) -> tuple[list[float], dict[int, list[int]], dict[int, list[int]]]:
    per_round = cfg.budget_s / (2 * min_rounds * len(candidate))  # both sides: one budget
    runs = max(1, cfg.min_runs // min_rounds)
    cap = max(1, cfg.max_runs // min_rounds)
    c_all: dict[int, list[int]] = {b: [] for b in candidate}
    r_all: dict[int, list[int]] = {b: [] for b in reference}
    ratios: list[float] = []
    for i in range(max_rounds):
        c_round: dict[int, list[int]] = {}
        r_round: dict[int, list[int]] = {}
        for b in candidate:
            pair = ((candidate, c_round), (reference, r_round))
            for fns, out in pair if i % 2 == 0 else pair[::-1]:
                out[b] = time_runs(fns[b], runs, per_round, cap)
        for b in candidate:
            c_all[b] += c_round[b]
            r_all[b] += r_round[b]
        c_fig = figure({b: summarize(s) for b, s in c_round.items()})
        r_fig = figure({b: summarize(s) for b, s in r_round.items()})
        if math.isfinite(c_fig) and math.isfinite(r_fig) and c_fig > 0:
            ratios.append(r_fig / c_fig)  # a round whose figure cannot be taken is left out
        if len(ratios) >= min_rounds:
            low, high = bootstrap_interval(ratios)
            if (high - low) / (2 * float(np.median(ratios))) <= TARGET_HALF_WIDTH:
                break
    return ratios, c_all, r_all


def measure_paired(
    candidate: Fns,
    reference: Fns,
    figure: Figure,
    cfg: MeasureConfig,
    min_rounds: int = MIN_ROUNDS,
    max_rounds: int = MAX_ROUNDS,
    attempts: int = ATTEMPTS,
    quiet_wait_s: float | None = None,
) -> PairedTiming:
    """Time `candidate` against `reference` (same batch sizes) by the rule above."""
    if quiet_wait_s is None:
        quiet_wait_s = quiet_wait(cfg)
    for fn in (*candidate.values(), *reference.values()):
        warm_up(fn, cfg)
    best: PairedTiming | None = None
    for attempt in range(1, attempts + 1):
        with CpuWindow() as window:
            ratios, c_all, r_all = _once(candidate, reference, figure, cfg, min_rounds, max_rounds)
        assert window.result is not None
        if not ratios:
            raise InfeasibleRecipe(
                "server scenario: no timing round met the latency bound", kind="server_bound"
            )
        low, high = bootstrap_interval(ratios)
        c_lat = {b: summarize(s) for b, s in c_all.items()}
        r_lat = {b: summarize(s) for b, s in r_all.items()}
        timing = PairedTiming(
            speedup=float(np.median(ratios)),
            ci_low=low,
            ci_high=high,
            rounds=len(ratios),
            candidate=c_lat,
            reference=r_lat,
            candidate_ms=figure(c_lat),
            reference_ms=figure(r_lat),
            contention=window.result,
            attempts=attempt,
        )
        if best is None or timing.contention.other_cores < best.contention.other_cores:
            best = timing
        if not timing.contention.busy or attempt == attempts:
            break
        if wait_for_quiet(quiet_wait_s).busy:
            break  # a steady load: timing again under it would tell nothing new
        for fn in (*candidate.values(), *reference.values()):
            warm_up(fn, cfg)
    assert best is not None
    return replace(best, attempts=attempt)
