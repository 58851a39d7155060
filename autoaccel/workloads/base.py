"""The one shape every workload has: a model to accelerate and the way to judge it."""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from autoaccel.compress.layout import TransformerLayout

Inputs = dict[str, np.ndarray]
"""Named model inputs, batch first, as numpy arrays."""

Predict = Callable[[Inputs], np.ndarray]
"""Runs a candidate on a batch of inputs and returns its first output."""

Batch = tuple[Inputs, np.ndarray | None]
"""A training batch: named numpy inputs (batch first) and the labels, or None where the loss
needs none."""

OUTPUT_KINDS = ("logits", "probabilities", "embedding", "scores")
"""What a model's first output can be; each has its own distillation loss."""


def classify_outputs(
    outputs: np.ndarray, labels: np.ndarray | None, atol: float = 1e-3
) -> tuple[str | None, str]:
    """The output-kind rule, on the teacher's outputs for one training batch and its labels.

    In this order: one number per row is "scores" (a regression or ranking head: neither a
    softmax nor a cosine means anything there); every row non-negative and summing to 1
    (within `atol`) is "probabilities"
    (the model ends in softmax); else a 2-D (batch, classes) output with integer labels that
    are class indices is "logits" (most classifiers); else, with no labels, "embedding". Any
    other case (labels that are not class indices of a 2-D output) is None: the workload must
    declare `output_kind`. Returns the kind and the evidence in words.
    """
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
        return "scores", "one number per row (a regression or ranking score)"
    two_d = out.ndim == 2 and out.shape[1] >= 2
    if two_d and out.min() >= -1e-6 and np.allclose(out.sum(axis=1), 1.0, atol=atol):
        return "probabilities", "every row is non-negative and sums to 1"
    if labels is None:
        return "embedding", "the training batches have no labels"
    labels = np.asarray(labels)
    if not two_d:
        return None, f"outputs of shape {out.shape} with labels: not a (batch, classes) classifier"
    if not np.issubdtype(labels.dtype, np.integer):
        return None, f"2-D outputs but {labels.dtype} labels: not class indices"
    if labels.shape != (len(out),) or labels.min() < 0 or labels.max() >= out.shape[1]:
        return None, f"labels are not class indices in 0..{out.shape[1] - 1}, one per row"
    return "logits", "2-D outputs that are not probabilities, with integer class labels"


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

    @property
    def output_kind(self) -> str | None:
        """What the model's first output is: "logits" or "probabilities" (a classifier),
        "embedding", or "scores" (one number per row); it picks the distillation loss.
        None: no training data or no torch model (or outputs the rule cannot place), so
        distillation and fine-tuning don't apply.

        A workload may declare it (a class attribute `output_kind = "logits"`); one that does
        not but offers `training_batches()` has it detected once, on first use, by running the
        teacher on the first training batch (`classify_outputs` states the rule): a wrong
        guess would train students with the wrong loss, so the search states what it found.
        """
        if "_output_kind" not in self.__dict__:
            self._output_kind, self._output_kind_reason = self._detect_output_kind()
        return self._output_kind

    @output_kind.setter
    def output_kind(self, kind: str | None) -> None:
        if kind is not None and kind not in OUTPUT_KINDS:
            raise ValueError(f"output_kind must be one of {OUTPUT_KINDS} or None, not {kind!r}")
        self._output_kind, self._output_kind_reason = kind, "declared by the workload"

    def output_kind_reason(self) -> str:
        """How `output_kind` was found, in words: "declared by the workload", or the detection
        rule's evidence, or why there is none."""
        if not isinstance(inspect.getattr_static(type(self), "output_kind"), property):
            return "declared by the workload"
        _ = self.output_kind
        return self._output_kind_reason

    def offers_training_data(self) -> bool:
        """Whether this workload overrides `training_batches` (without calling it)."""
        return type(self).training_batches is not Workload.training_batches

    def _detect_output_kind(self) -> tuple[str | None, str]:
        if not self.torch_model_available():
            return None, "it has no torch model"
        if not self.offers_training_data():
            return None, "it offers no training data (no `training_batches`)"
        batches = self.training_batches()
        if not batches:
            return None, "its `training_batches()` returned no batches"
        import torch

        inputs, labels = batches[0]
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names]
        teacher = self.torch_model().eval()
        with torch.no_grad():
            out = teacher(*args)
        if isinstance(out, tuple | list):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            return None, f"its model's first output is a {type(out).__name__}, not a tensor"
        kind, evidence = classify_outputs(out.float().numpy(), labels)
        return kind, f"detected on one training batch: {evidence}"

    def transformer_layout(self) -> TransformerLayout | None:
        """The teacher's transformer layout (`autoaccel.compress.layout`): its layer stack,
        heads and feed-forward blocks, which layer students and head pruning go through.
        None for a model without one (a CNN, an MLP, an ONNX file); then
        `transformer_layout_reason` says why. Read once, on first use (loads the teacher)."""
        if "_layout_reason" not in self.__dict__:
            self._layout, self._layout_reason = self._find_layout()
        return self._layout

    def transformer_layout_reason(self) -> str:
        """Why `transformer_layout()` is None, in words ("" when there is a layout)."""
        self.transformer_layout()
        return self._layout_reason

    def _find_layout(self) -> tuple[TransformerLayout | None, str]:
        from autoaccel.compress.layout import NoLayout, find_layout

        if not self.torch_model_available():
            return None, "it has no torch model"
        try:
            found = find_layout(self.torch_model())
        except NoLayout as exc:
            return None, str(exc)
        why = self._probe_layout(found)
        return (None, why) if why else (found, "")

    def _probe_layout(self, found: TransformerLayout) -> str:
        """Drop half the layers, remove heads, then FFN neurons, each from a copy of the
        teacher run once (`compress.probes`): an edit the layout allows but the forward pass
        rejects gets its reason, so the search leaves it out instead of failing every trial
        on it. Returns why the stack itself is unusable (a student does not run), else ""."""
        from autoaccel.compress import probes

        model, args = self.torch_model(), self.example_args()
        if why := probes.layers(model, args):  # read by structure, not taken apart in forward
            return f"a copy with half the layers of {found.path} does not run ({why})"
        if found.heads_reason is None and (why := probes.heads(model, args)):
            found.heads_reason = f"a copy with heads removed does not run ({why})"
        if found.ffn_reason is None and (why := probes.ffn(model, args)):
            found.ffn_reason = f"a copy with feed-forward neurons removed does not run ({why})"
        return ""

    def channel_pruning_reason(self) -> str:
        """Why torch-pruning cannot remove this model's hidden channels / neurons (what
        structured pruning and width students do to a model without a transformer layout),
        in words; "" when it can. Probed once, on a copy (`compress.probes`)."""
        if "_channel_reason" not in self.__dict__:
            from autoaccel.compress import probes

            self._channel_reason = probes.channels(self.torch_model(), self.example_args())
        return self._channel_reason

    def example_args(self) -> tuple[torch.Tensor, ...]:
        """The batch-1 latency inputs as torch tensors, in `input_names` order: what tracing,
        torch-pruning and the probes call the model with."""
        import torch

        inputs = self.latency_inputs(1)
        return tuple(torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names)

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

    def torch_edit_reason(self) -> str:
        """Why the torch model's layers cannot be pruned or replaced by a student, in words
        ("" when they can; a compiled TorchScript / torch.export program cannot)."""
        return ""

    def torch_compile_reason(self) -> str:
        """Why torch.compile cannot run the torch model, in words ("" when it can; it refuses
        TorchScript programs)."""
        return ""

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
        for distillation and recovery fine-tuning (`batches_of` makes them from arrays).
        Without them distillation and fine-tuning don't apply."""
        raise TypeError(f"workload {self.name} declares no training data (output_kind=None)")

    @staticmethod
    def batches_of(inputs: Inputs, labels: np.ndarray | None, batch_size: int = 64) -> list[Batch]:
        """Training batches of `batch_size` rows, in the order given (shuffle beforehand):
        `labels` are integer class indices for a classifier, None for an embedding model."""
        n = len(next(iter(inputs.values())))
        return [
            (
                {k: np.ascontiguousarray(v[i : i + batch_size]) for k, v in inputs.items()},
                None if labels is None else np.asarray(labels[i : i + batch_size]),
            )
            for i in range(0, n, batch_size)
        ]

    @abstractmethod
    def identity(self) -> dict:
        """What makes this workload's model and data what they are (for cache keys)."""

    def fingerprint(self) -> str:
        """A short stable hash of `identity()`; a cache built for another workload never hits."""
        blob = json.dumps({"name": self.name, **self.identity()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def baseline_description(self) -> str:
        if self.onnx_model() is None:
            return f"{self.name}: PyTorch eager fp32, batch 1"
        return f"{self.name}: ONNX Runtime fp32, default session, batch 1"
