"""The one shape every workload has: a model to accelerate and the way to judge it."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

Inputs = dict[str, np.ndarray]
"""Named model inputs, batch first, as numpy arrays."""

Predict = Callable[[Inputs], np.ndarray]
"""Runs a candidate on a batch of inputs and returns its first output."""

Batch = tuple[Inputs, np.ndarray | None]
"""A training batch: named numpy inputs (batch first) and the labels, or None where the loss
needs none."""


class Workload(ABC):
    """A model plus data plus a quality metric (higher is better).

    Either `torch_model()` returns the teacher (torch-level techniques apply and PyTorch eager
    fp32 is the baseline) or `onnx_model()` returns a given ONNX file (they are skipped).
    """

    name: str
    metric: str
    """Key of the primary quality figure in `evaluate()`'s result; higher is better."""
    metric_description: str
    metrics: dict[str, str] = {}
    """The other figures `evaluate()` returns that a search may hold to the accuracy limit
    instead of `metric` (`--metric`), name -> description."""
    metric_ranges: dict[str, tuple[float, float]] = {}
    """The range each figure lies in, where it has one (name -> (low, high)), so that an
    accuracy limit no one means (a percentage typed for a fraction) is refused."""
    input_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    """ONNX export axes that vary (batch, sequence length), per input name."""
    onnx_model_type: str | None = None
    """Model type for ONNX Runtime's transformer optimizer ("bert"), None where none applies."""
    output_kind: str | None = None
    """"probabilities" (classifier) or "embedding": which distillation loss fits the outputs.
    None: the workload offers no training data, so distillation and fine-tuning don't apply."""

    def choose_metric(self, name: str | None) -> None:
        """Judge this workload by another of its figures (`--metric`): the one the accuracy
        limit applies to and the search maximises."""
        if name is None or name == self.metric:
            return
        offered = {self.metric: self.metric_description, **self.metrics}
        if name not in offered:
            from autoaccel.errors import UserError

            raise UserError(
                f"--metric {name}: workload {self.name} reports {', '.join(offered)}; "
                "use one of those"
            )
        self.metric, self.metric_description = name, offered[name]

    def metric_range(self) -> tuple[float, float] | None:
        """The range of the figure the search is judged by, or None where none is known."""
        return self.metric_ranges.get(self.metric)

    def torch_model(self) -> torch.nn.Module | None:
        """The fp32 teacher in eval mode, or None for an ONNX-only workload."""
        return None

    def onnx_model(self) -> Path | None:
        """The given ONNX model for workloads that have no torch model."""
        return None

    def torch_model_available(self) -> bool:
        """Whether torch-level techniques and the PyTorch runtime apply (without loading it)."""
        return self.onnx_model() is None

    @abstractmethod
    def latency_inputs(self, batch_size: int = 1) -> Inputs:
        """The inputs latency is measured on (fixed shape, e.g. batch 1 x 128 tokens)."""

    @abstractmethod
    def calibration_inputs(self) -> list[Inputs]:
        """Batches for static-quantization calibration; never overlaps the judging data."""

    @abstractmethod
    def evaluate(self, predict: Predict) -> dict[str, float]:
        """Run `predict` over the validation data; return the metric and any side figures."""

    train_lr: float = 1e-4
    """Learning rate for distillation and recovery fine-tuning."""

    def fusion_options(self, model) -> dict:
        """Arguments for ONNX Runtime's transformer optimizer (e.g. num_heads, hidden_size)
        that it cannot detect by itself; `model` is the (possibly pruned) torch model."""
        return {}

    def training_batches(self) -> list[Batch]:
        """Batches (inputs, labels or None) from the training split, never the judging data,
        for distillation and recovery fine-tuning. Needed when `output_kind` is set."""
        raise TypeError(f"workload {self.name} declares no training data (output_kind=None)")

    @abstractmethod
    def identity(self) -> dict:
        """What makes this workload's model and data what they are (for cache keys)."""

    def fingerprint(self) -> str:
        """A short stable hash of `identity()`; a cache built for another workload never hits."""
        blob = json.dumps({"name": self.name, **self.identity()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def baseline_description(self) -> str:
        if self.torch_model_available():
            return f"{self.name}: PyTorch eager fp32, batch 1"
        return f"{self.name}: ONNX Runtime fp32, default session, batch 1"
