"""`--judge-rows N`: judge every build on a fixed subset of the judging data.

Each distinct build is judged once on all judging rows; with thousands of rows of a
transformer that is tens of seconds a build, and a budget of 100 spends most of its time
judging. A fixed subset keeps every build judged on the same rows (the comparison stays
paired), chosen once with a fixed seed, each class in its share where the rows carry class
labels, so accuracy keeps the data's class mix. The rows left out are not used for anything
else: they are judging data by the user's choice of file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from autoaccel.errors import UserError

SEED = 0
MIN_ROWS = 10


def checked(value: Any) -> int | None:
    """The option as a row count, or None (all rows); a one-line error for a bad one."""
    if value is None:
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < MIN_ROWS or str(count) != str(value).strip():
        raise UserError(f"--judge-rows {value}: give a whole number of rows, {MIN_ROWS} or more")
    return count


def subset(n: int, labels: np.ndarray | None, cap: int | None) -> tuple[np.ndarray, str] | None:
    """Sorted indices of at most `cap` of `n` rows and how they were chosen; None when all
    `n` are kept. Class labels (not float scores) are kept in their shares."""
    if cap is None or cap >= n:
        return None
    rng = np.random.default_rng(SEED)
    if labels is None or np.asarray(labels).dtype.kind in "fc":
        return np.sort(rng.permutation(n)[:cap]), f"a fixed random subset, seed {SEED}"
    _, inverse = np.unique(np.asarray(labels), return_inverse=True)
    share = np.bincount(inverse) * cap / n
    take = np.floor(share).astype(int)
    for c in np.argsort(-(share - take), kind="stable")[: cap - int(take.sum())]:
        take[c] += 1  # the largest remainders get the rows rounding left over
    picked = [rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(take)]
    return np.sort(
        np.concatenate(picked)
    ), f"a fixed random subset, seed {SEED}, each class in its share"


def cap_judging(parts: Any, cap: int | None, unit: str = "rows") -> Any:
    """`parts` (a dataclass with `judge`, whose `take` and `labels` it uses, and `statement`)
    judging on at most `cap` of its judging rows, its statement saying so."""
    chosen = subset(len(parts.judge), parts.judge.labels, cap)
    if chosen is None:
        return parts
    index, how = chosen
    note = (
        f"; --judge-rows {cap}: {len(index)} of those {len(parts.judge)} judging {unit} judge "
        f"every build ({how}), the others are unused"
    )
    return dataclasses.replace(
        parts, judge=parts.judge.take(index), statement=parts.statement + note
    )
