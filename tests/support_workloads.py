"""Workload factories used by the tests through `--workload support_workloads:NAME`."""

from __future__ import annotations

import os
from pathlib import Path

from autoaccel.workloads.digits import SeedMLP

_CACHE = Path(os.environ.get("AUTOACCEL_TEST_CACHE", "/tmp/autoaccel-test-cache"))


class _Flaky(SeedMLP):
    """seed-mlp whose evaluation raises on every second call after the baseline's."""

    name = "flaky-mlp"

    def __init__(self, cache_dir: Path) -> None:
        super().__init__(cache_dir)
        self.calls = 0

    def evaluate(self, predict):
        self.calls += 1
        if self.calls % 2 == 0:
            raise RuntimeError("candidate exploded on purpose")
        return super().evaluate(predict)


class _NaN(SeedMLP):
    """seed-mlp whose candidates (not the baseline) score NaN."""

    name = "nan-mlp"

    def __init__(self, cache_dir: Path) -> None:
        super().__init__(cache_dir)
        self.calls = 0

    def evaluate(self, predict):
        self.calls += 1
        return super().evaluate(predict) if self.calls == 1 else {"accuracy": float("nan")}


def flaky() -> SeedMLP:
    return _Flaky(_CACHE)


def nan() -> SeedMLP:
    return _NaN(_CACHE)


def not_a_workload() -> object:
    return object()
