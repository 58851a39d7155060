"""What a model file judged on `.npz` arrays shares, whatever the file (ONNX, TorchScript,
torch.export): batching, the split, and the quality figure.

With labels (`y_val`), quality is top-1 accuracy of the first output. Without, it is agreement
with the fp32 model's own outputs on the judging rows: `top1_agreement` (share of rows whose
top class is the fp32 model's) when the outputs are probabilities, else `teacher_cosine`
(mean cosine between the candidate's and the fp32 model's output rows, flattened); both are
reported where the output is 2-D, and `--metric` picks the other.

A model giving one number per row is a binary classifier where y_val holds only 0 and 1
(accuracy of the output thresholded at 0, or at 0.5 where every output lies in [0, 1]), else
a regression or ranking score: with y_val judged by Spearman correlation (`r2` beside it),
without by `teacher_r2`, the R^2 of the candidate's scores for the fp32 model's (a cosine of
two scalars is only their sign agreement, and an argmax over one column is always 0).
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from pathlib import Path

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads.base import Batch, Inputs, Predict, Workload, classify_outputs
from autoaccel.workloads.judging_rows import cap_judging
from autoaccel.workloads.npz_data import InputSpec, load_npz_data
from autoaccel.workloads.similarity import one_per_row, r2, spearman

PROTOCOL_VERSION = "npz-v3"
"""Bump when splitting or scoring changes so cached figures are not reused."""
EVAL_BATCH, CALIB_BATCH, CALIB_ROWS, TRAIN_BATCH = 256, 32, 256, 64


class NpzWorkload(Workload):
    """A model file plus `.npz` data. Subclasses read the file's inputs (`specs`) and give
    the fp32 model as a `Predict` (`reference_predict`)."""

    metric_ranges = {
        "accuracy": (0.0, 1.0),
        "top1_agreement": (0.0, 1.0),
        "teacher_cosine": (-1.0, 1.0),
        "spearman": (-1.0, 1.0),
    }  # R^2 has no lower bound: a limit on it is held under 1

    def __init__(
        self,
        model: Path,
        data: Path,
        train_data: Path | None,
        specs: tuple[InputSpec, ...],
        judge_rows: int | None = None,
    ) -> None:
        self.model_path, self.data_path = Path(model), Path(data)
        self.train_path = None if train_data is None else Path(train_data)
        self.name = self.model_path.stem
        self.specs = specs
        self.input_names = tuple(s.name for s in specs)
        first = specs[0].dims
        # A model exported without dynamic axes takes one batch size only: feed it that.
        self.fixed_batch: int | None = first[0] if first and first[0] else None
        self.dynamic_axes = {
            s.name: {i: f"{s.name}_{i}" if i else "batch" for i, d in enumerate(s.dims or (None,))
                     if d is None}
            for s in specs
        }  # fmt: skip
        self.judge_rows = judge_rows
        parts = cap_judging(load_npz_data(specs, self.data_path, self.train_path), judge_rows)
        self.judge, self.train, self._notes = parts.judge, parts.train, [parts.statement]
        self._reference: np.ndarray | None = None
        self._threshold: float | None = None  # set for a one-output binary classifier
        self.label_output = False  # the judged output is class labels (skl2onnx's first)
        self._digest = _digest(
            [self.model_path, *self.weight_files(), self.data_path, self.train_path]
        )

    def weight_files(self) -> list[Path]:
        """Files beside the model that hold its weights (an ONNX file's external data)."""
        return []

    def settle_metric(self, probe: np.ndarray) -> None:
        """Pick the quality figure from the fp32 outputs on a few judging rows (`probe`)."""
        n = len(self.judge)
        labels = self.judge.labels
        if np.asarray(probe).dtype.kind in "iub" and one_per_row(probe):
            self._settle_labels(n, labels)
            return
        if labels is not None and one_per_row(probe) and set(np.unique(labels)) <= {0, 1}:
            scores = self.reference_outputs().reshape(-1)
            sigmoid = bool(scores.min() >= 0.0 and scores.max() <= 1.0)
            self._threshold = 0.5 if sigmoid else 0.0
            self.metric = "accuracy"
            self.metric_description = (
                f"accuracy of the one output thresholded at {self._threshold:g} (a "
                f"{'probability' if sigmoid else 'logit'}) against 0/1 y_val, on {n} judging "
                f"rows of {self.data_path.name}"
            )
            self.metrics = {"spearman": f"Spearman of the output with y_val on the {n} rows"}
            self._notes.append(
                f"one output per row with 0/1 y_val: judged by {self.metric_description}"
            )
            return
        if labels is not None and one_per_row(probe):
            self.metric = "spearman"
            self.metric_description = (
                f"Spearman correlation of the model's one score per row with y_val, on {n} "
                f"judging rows of {self.data_path.name}"
            )
            self.metrics = {"r2": f"R^2 of the scores for y_val on the {n} judging rows"}
            self._notes.append(
                "one output per row with y_val: judged as scores by Spearman with y_val "
                "(--metric r2 for R^2)"
            )
            return
        if labels is not None and not np.array_equal(labels, np.round(labels)):
            raise UserError(
                f"--data {self.data_path}: y_val holds real values, but the model gives "
                f"{probe.shape[1] if probe.ndim == 2 else 'several'} outputs per row, not one "
                "score; give class indices, or drop y_val to judge agreement with the fp32 model"
            )
        if labels is not None:
            if probe.ndim != 2:
                raise UserError(
                    f"--data {self.data_path}: y_val labels a classifier, but the model's first "
                    f"output has shape {'x'.join(map(str, probe.shape))} per batch; drop y_val "
                    "to judge agreement with the fp32 model"
                )
            self.metric = "accuracy"
            self.metric_description = (
                f"top-1 accuracy on {n} judging rows of {self.data_path.name}"
            )
            self.metrics = {}
            return
        agreement = f"of {n} judging rows of {self.data_path.name} (no y_val labels)"
        if one_per_row(probe):
            self.metric, self.metrics = "teacher_r2", {}
            self.metric_description = (
                f"R^2 of the candidate's scores for the fp32 model's, {agreement}: one output "
                "per row, where a cosine is only sign agreement"
            )
            self._notes.append(f"no y_val: judged by teacher_r2 ({self.metric_description})")
            return
        cosine = f"mean cosine between the candidate's and the fp32 model's outputs {agreement}"
        top1 = f"share of rows whose top class is the fp32 model's, {agreement}"
        probabilities = classify_outputs(probe, None)[0] == "probabilities"
        self.metric, self.metric_description = (
            ("top1_agreement", top1) if probabilities else ("teacher_cosine", cosine)
        )
        others = {"top1_agreement": top1, "teacher_cosine": cosine} if probe.ndim == 2 else {}
        self.metrics = {k: v for k, v in others.items() if k != self.metric}
        self._notes.append(f"no y_val: judged by {self.metric} ({self.metric_description})")

    def _settle_labels(self, n: int, labels: np.ndarray | None) -> None:
        """The judged output is one integer per row, a class label (what skl2onnx puts first):
        judged by exact match, never as a score or by argmax."""
        self.label_output, self.metrics = True, {}
        where = f"{n} judging rows of {self.data_path.name}"
        if labels is not None:
            self.metric = "accuracy"
            self.metric_description = (
                f"share of the model's class labels equal to y_val, on {where}"
            )
        else:
            self.metric = "top1_agreement"
            self.metric_description = (
                f"share of rows whose class label is the fp32 model's, on {where} (no y_val)"
            )
        self._notes.append(
            f"the judged output is integer class labels: judged by {self.metric} "
            f"({self.metric_description})"
        )

    @abstractmethod
    def reference_predict(self, inputs: Inputs) -> np.ndarray:
        """The fp32 model as given (the user's file), on one batch: its first output."""

    def notes(self) -> list[str]:
        """What the search states once at its start: the split, how quality is judged."""
        return [f"{self.name}: {line}" for line in self._notes]

    def identity(self) -> dict:
        out = {"digest": self._digest, "protocol": PROTOCOL_VERSION}
        if self.judge_rows is not None:  # absent otherwise: earlier caches keep their keys
            out["judge_rows"] = self.judge_rows
        return out

    def batches(self, part_inputs: Inputs, size: int, pad: bool = True) -> list[Inputs]:
        """Slices of `size` rows; with a fixed-batch model the last one is padded by repeating
        its last row (`run` drops the padding's outputs), or dropped where `pad` is False."""
        size = self.fixed_batch or size
        n = len(next(iter(part_inputs.values())))
        out = []
        for i in range(0, n, size):
            chunk = {k: v[i : i + size] for k, v in part_inputs.items()}
            short = size - len(next(iter(chunk.values())))
            if self.fixed_batch and short:
                if not pad:
                    continue
                chunk = {
                    k: np.concatenate([v, np.repeat(v[-1:], short, 0)]) for k, v in chunk.items()
                }
            out.append({k: np.ascontiguousarray(v) for k, v in chunk.items()})
        return out

    def run(self, predict: Predict, part_inputs: Inputs) -> np.ndarray:
        """`predict`'s first output over every row, in order."""
        n = len(next(iter(part_inputs.values())))
        outs = [np.asarray(predict(b)) for b in self.batches(part_inputs, EVAL_BATCH)]
        out = np.concatenate(outs)[:n]
        if not np.isfinite(out).all():  # a broken candidate fails its trial, not scores 0
            raise ValueError("the candidate produced non-finite (NaN/inf) outputs")
        return out

    def latency_inputs(self, batch_size: int = 1) -> Inputs:
        rows = {k: v[:batch_size] for k, v in self.judge.inputs.items()}
        return self.batches(rows, batch_size)[0]

    def calibration_inputs(self) -> list[Inputs]:
        """Up to 256 evenly spaced rows of the calibration part, 32 a batch."""
        n = len(self.train)
        picks = np.unique(np.linspace(0, n - 1, min(n, CALIB_ROWS)).round().astype(int))
        return self.batches(self.train.take(picks).inputs, CALIB_BATCH)

    def training_batches(self) -> list[Batch]:
        """The calibration/training rows in a fixed shuffled order (seed 0), 64 a batch (the
        model's own batch where it takes one size only; a short last batch is dropped)."""
        if getattr(self, "_train_batches", None) is None:
            part = self.train.take(np.random.default_rng(0).permutation(len(self.train)))
            size = self.fixed_batch or TRAIN_BATCH
            self._train_batches = [
                (b, None if part.labels is None else part.labels[i * size : (i + 1) * size])
                for i, b in enumerate(self.batches(part.inputs, size, pad=False))
            ]
        return self._train_batches

    def reference_outputs(self) -> np.ndarray:
        """The fp32 model's outputs on the judging rows (once per process)."""
        if self._reference is None:
            self._reference = self.run(self.reference_predict, self.judge.inputs)
        return self._reference

    def evaluate(self, predict: Predict) -> dict[str, float]:
        out = self.run(predict, self.judge.inputs)
        if self.label_output:
            truth = self.reference_outputs() if self.judge.labels is None else self.judge.labels
            same = float(np.mean(out.reshape(-1) == np.asarray(truth).reshape(-1)))
            return {self.metric: same}
        if self._threshold is not None:  # one output per row, 0/1 labels: a binary classifier
            truth, scores = self.judge.labels, out.reshape(-1)
            accuracy = float(np.mean((scores > self._threshold) == truth.astype(bool)))
            return {"accuracy": accuracy, "spearman": spearman(scores, truth)}
        if self.metric in ("spearman", "r2"):
            scores, truth = out.reshape(-1), self.judge.labels
            return {"spearman": spearman(scores, truth), "r2": r2(scores, truth)}
        if self.judge.labels is not None:
            return {"accuracy": float(np.mean(np.argmax(out, axis=1) == self.judge.labels))}
        ref = self.reference_outputs()
        if self.metric == "teacher_r2":
            return {"teacher_r2": r2(out, ref)}
        scores = {"teacher_cosine": _mean_cosine(out, ref)}
        if out.ndim == 2:
            scores["top1_agreement"] = float(np.mean(out.argmax(1) == ref.argmax(1)))
        return scores


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(np.mean(np.sum(a * b, axis=1) / norms))


def _digest(paths: list[Path | None]) -> str:
    sha = hashlib.sha256()
    for path in paths:
        sha.update(b"-" if path is None else Path(path).read_bytes())
        sha.update(b"\0")
    return sha.hexdigest()[:16]
