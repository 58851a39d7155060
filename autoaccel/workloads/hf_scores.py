"""A `...ForSequenceClassification` folder with one output: a regression or ranking head
(`problem_type: regression`, an STS-B model, a cross-encoder reranker), judged as scores.

Judged like a classifier, its one column's argmax is always 0 and its "labels" are real
numbers no class name matches; so the label column is read as numbers and quality is the
Spearman correlation of the scores with it (R^2 beside it), and students and fine-tuning fit
the teacher's scores by squared error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads.data_files import Rows
from autoaccel.workloads.hf_folder import Folder, Options
from autoaccel.workloads.hf_text import TextClassification
from autoaccel.workloads.similarity import r2, spearman


def is_score_head(folder: Folder) -> bool:
    """One output (`num_labels` 1) or a declared regression problem."""
    return folder.config.get("problem_type") == "regression" or len(folder.id2label()) == 1


class TextScores(TextClassification):
    """One text, or a pair, per row -> one score, judged by Spearman with the label column."""

    output_kind = "scores"
    metric = "spearman"
    metrics = {"r2": "R^2 of the scores for the label column, on the judging rows"}
    metric_ranges = {"spearman": (-1.0, 1.0)}  # R^2 has no lower bound

    def __init__(self, folder: Folder, data: Path, options: Options, cache_dir: Path) -> None:
        super().__init__(folder, data, options, cache_dir)
        self.metric_description = (
            f"Spearman correlation of the model's score with the label column, on "
            f"{len(self.judge)} judging rows of {data.name}"
        )
        self._notes.append(
            "one output (a regression or ranking head): judged by Spearman with the label "
            "column (--metric r2 for R^2); students and fine-tuning fit the teacher's scores"
        )

    def _targets(self, rows: Rows, train: Rows | None) -> tuple[Rows, Rows | None]:
        col = self.options.columns.label or "label"
        if rows.labels is None:
            raise UserError(
                f"--data {rows.source}: no label column to judge the scores by; name it with "
                "--label-column NAME"
            )
        rows.labels = _numbers(rows.labels, f"--label-column {col} ({rows.source})")
        if train is not None and train.labels is not None:
            train.labels = _numbers(train.labels, f"--label-column {col} ({train.source})")
        return rows, train

    def _train_labels(self) -> np.ndarray | None:
        return None  # the loss fits the teacher's scores

    def evaluate(self, predict) -> dict[str, float]:
        scores = self.run(predict, self.judge.inputs).reshape(-1)
        truth = self.judge.labels
        return {"spearman": spearman(scores, truth), "r2": r2(scores, truth)}


def _numbers(values: np.ndarray, where: str) -> np.ndarray:
    import pandas as pd

    parsed = pd.to_numeric(pd.Series(values), errors="coerce")
    bad = [str(v) for v, p in zip(values, parsed, strict=True) if pd.isna(p)]
    if bad:
        raise UserError(
            f"{where}: the model gives one score per row, so labels must be numbers; "
            f"{', '.join(repr(b) for b in bad[:3])} {'is' if len(bad) == 1 else 'are'} not"
        )
    return parsed.to_numpy(np.float64)
