"""The measurement protocol: the only way autoaccel times anything on the local CPU.

Warm-up, then timed runs until both a minimum count and a time budget are reached (capped);
median and p90 with the number of runs. Candidates that are compared with each other are timed
interleaved in rounds (`measure_interleaved`), so drift on a shared machine hits them alike.
Differences under ~15 % between sub-millisecond candidates are noise here unless repeated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class MeasureConfig:
    warmup_s: float = 0.25
    warmup_runs: int = 5
    budget_s: float = 1.5
    min_runs: int = 20
    max_runs: int = 3000

    def scaled(self, seconds: float) -> MeasureConfig:
        """The same protocol with a different timing budget (warm-up scaled alike)."""
        ratio = seconds / self.budget_s
        return MeasureConfig(
            warmup_s=self.warmup_s * ratio,
            warmup_runs=self.warmup_runs,
            budget_s=seconds,
            min_runs=max(3, min(self.min_runs, int(self.min_runs * ratio) or 3)),
            max_runs=self.max_runs,
        )


DEFAULT_PROTOCOL = MeasureConfig()


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    mean_ms: float
    n_runs: int
    source: str = "measured"
    target: str = "cpu-local"

    def as_dict(self) -> dict:
        return asdict(self)


def warm_up(fn: Callable[[], object], cfg: MeasureConfig) -> None:
    start = time.perf_counter()
    runs = 0
    while runs < cfg.warmup_runs or time.perf_counter() - start < cfg.warmup_s:
        fn()
        runs += 1
        if runs >= cfg.max_runs:
            break


def time_runs(
    fn: Callable[[], object], min_runs: int, budget_s: float, max_runs: int
) -> list[int]:
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    while len(samples) < max_runs and (len(samples) < min_runs or clock() < deadline):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return samples


def summarize(samples_ns: list[int], target: str = "cpu-local") -> Latency:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return Latency(
        median_ms=float(np.median(ms)),
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()),
        n_runs=len(ms),
        target=target,
    )


def measure(fn: Callable[[], object], cfg: MeasureConfig = DEFAULT_PROTOCOL) -> Latency:
    """Time one candidate: warm-up, then runs until `min_runs` and `budget_s` are both met."""
    warm_up(fn, cfg)
    return summarize(time_runs(fn, cfg.min_runs, cfg.budget_s, cfg.max_runs))


def measure_interleaved(
    fns: dict[str, Callable[[], object]], cfg: MeasureConfig = DEFAULT_PROTOCOL, rounds: int = 5
) -> dict[str, Latency]:
    """Time several candidates in alternating rounds so slow drift affects all of them alike."""
    for fn in fns.values():
        warm_up(fn, cfg)
    samples: dict[str, list[int]] = {name: [] for name in fns}
    per_round = cfg.budget_s / rounds
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name] += time_runs(
                fn, max(1, cfg.min_runs // rounds), per_round, max(1, cfg.max_runs // rounds)
            )
    return {name: summarize(s) for name, s in samples.items()}
