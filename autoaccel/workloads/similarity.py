"""The figures embedding and score workloads are judged by, shared so that the same vectors,
scores and ratings give the same figure whichever workload computes it (`minilm`, a folder,
a model file)."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Row-normalised float64 copy (callers refuse non-finite vectors before this)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair of two unit-row matrices."""
    return np.sum(a * b, axis=1)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho; 0 for constant predictions (no correlation), never NaN."""
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def one_per_row(out: np.ndarray) -> bool:
    """Whether a model's output is one number per row (a regression or ranking score), where
    cosine and argmax say nothing: the cosine of two scalars is their sign agreement."""
    out = np.asarray(out)
    return out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)


def r2(pred: np.ndarray, truth: np.ndarray) -> float:
    """Coefficient of determination of `pred` for `truth`: 1 is exact, 0 is no better than
    their mean, below 0 worse."""
    pred = np.asarray(pred, np.float64).reshape(-1)
    truth = np.asarray(truth, np.float64).reshape(-1)
    spread = float(np.sum((truth - truth.mean()) ** 2))
    error = float(np.sum((pred - truth) ** 2))
    if spread == 0.0:
        return 1.0 if error == 0.0 else 0.0
    return 1.0 - error / spread
