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


class _FFT(SeedMLP):
    """seed-mlp whose torch model uses an operator ONNX opset 17 lacks (aten::fft_fft), so
    it cannot be exported. Untrained: export fails before any training would matter."""

    name = "fft-mlp"

    def torch_model(self):
        import torch

        class _Net(torch.nn.Module):
            def forward(self, x):
                return torch.softmax(torch.fft.fft(x).abs()[:, :10], dim=1)

        return _Net().eval()


def unexportable() -> SeedMLP:
    return _FFT(_CACHE)


def broken() -> SeedMLP:
    raise FileNotFoundError("weights.pt not found")
