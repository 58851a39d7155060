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
        # the baseline is evaluated in the search process: a candidate worker counts after it
        self.calls = 1 if _in_candidate_worker() else 0

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
        # the baseline is evaluated in the search process: a candidate worker counts after it
        self.calls = 1 if _in_candidate_worker() else 0

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


def _in_candidate_worker() -> bool:
    import multiprocessing

    return multiprocessing.current_process().name == "autoaccel-candidate"


def _first_time(tag: str) -> bool:
    """True once per test cache: the first candidate misbehaves, the later ones work."""
    marker = _CACHE / f"{tag}.happened"
    if marker.exists():
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return True


class _Segfault(SeedMLP):
    """seed-mlp whose first candidate crashes its process in native code (SIGSEGV), as a
    broken runtime kernel would; the baseline (in the search process) is spared."""

    name = "segfault-mlp"

    def evaluate(self, predict):
        if _in_candidate_worker() and _first_time("segfault"):
            import ctypes

            ctypes.string_at(0)  # reads address 0: a real segmentation fault
        return super().evaluate(predict)


class _Hang(SeedMLP):
    """seed-mlp whose first candidate never finishes (a hang in native code looks the
    same from outside: no answer); `AUTOACCEL_TEST_HANG=always` hangs every candidate."""

    name = "hang-mlp"

    def evaluate(self, predict):
        if _in_candidate_worker() and (
            os.environ.get("AUTOACCEL_TEST_HANG") == "always" or _first_time("hang")
        ):
            import time

            (_CACHE / "hanging").touch()
            time.sleep(3600)
        return super().evaluate(predict)


def segfault() -> SeedMLP:
    return _Segfault(_CACHE)


def hang() -> SeedMLP:
    return _Hang(_CACHE)


class _TwoFigures(SeedMLP):
    """seed-mlp that also reports `confidence` (mean top probability), a second figure a
    search may be judged by with `--metric confidence`."""

    name = "two-figures-mlp"
    metrics = {"confidence": "mean probability of the predicted class"}

    def evaluate(self, predict):
        import numpy as np

        out = predict({"x": self.x_val})
        figures = super().evaluate(lambda _inputs: out)
        figures["confidence"] = float(np.mean(np.max(out, axis=1)))
        return figures


def two_figures() -> SeedMLP:
    return _TwoFigures(_CACHE)


class _Agreement(SeedMLP):
    """seed-mlp that also reports how closely a candidate's class probabilities follow the
    fp32 teacher's (`agreement`: 1 - the largest absolute difference): a second figure to
    hold to a limit (`--limit agreement=...`), which quantization moves and fp32 does not."""

    name = "agreement-mlp"
    metrics = {"agreement": "1 - largest absolute difference from the teacher's probabilities"}
    metric_ranges = {"accuracy": (0.0, 1.0), "agreement": (0.0, 1.0)}

    def evaluate(self, predict):
        import numpy as np
        import torch

        if getattr(self, "_teacher_out", None) is None:
            with torch.inference_mode():
                self._teacher_out = self.torch_model()(torch.from_numpy(self.x_val)).numpy()
        out = np.asarray(predict({"x": self.x_val}))
        accuracy = float(np.mean(np.argmax(out, axis=1) == self.y_val))
        return {
            "accuracy": accuracy,
            "agreement": float(1 - np.abs(out - self._teacher_out).max()),
        }


def agreement() -> SeedMLP:
    return _Agreement(_CACHE)
