"""The figures embedding workloads are judged by, shared so that the same vectors and ratings
give the same score whichever workload computes it (`minilm`, a sentence-embedding folder)."""

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
