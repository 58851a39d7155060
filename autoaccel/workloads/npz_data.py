"""A user's arrays for a model file (`--data d.npz`, `--train-data t.npz`), checked against the
model's inputs and split so that judging data never calibrates or trains.

Each input is stored under its name (`input_ids`, `attention_mask`; a one-input model may use
`x_val`), labels under `y_val` (optional: without them candidates are judged by agreement
with the fp32 model). Calibration and training rows come from `--train-data` (same names),
else from `<input>_calib` arrays (`x_calib`, `y_calib`) in `--data`, else from a fixed split of
`--data` (`data_files.JUDGE_SHARE` judges, seed `data_files.SPLIT_SEED`). Rows of the
calibration part that repeat a judged row exactly are dropped.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoaccel.errors import UserError
from autoaccel.workloads.base import Inputs
from autoaccel.workloads.data_files import JUDGE_SHARE, SPLIT_SEED

SAVE = "save it with numpy.savez(path, <input name>=..., y_val=...)"


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, its dims (None where any size goes; the first is the batch)
    and the numpy dtype it takes (None where the model file does not say)."""

    name: str
    dims: tuple[int | None, ...] | None
    dtype: np.dtype | None = None

    def shape_text(self) -> str:
        if self.dims is None:
            return "any shape"
        return "x".join("N" if d is None else str(d) for d in self.dims)


@dataclass
class Part:
    """Rows of named inputs (batch first) and their labels, or None."""

    inputs: Inputs
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, index: np.ndarray) -> Part:
        labels = None if self.labels is None else self.labels[index]
        return Part({k: v[index] for k, v in self.inputs.items()}, labels)


@dataclass
class NpzData:
    """The judging part, the part that calibrates and trains, and the split in words."""

    judge: Part
    train: Part
    statement: str


def read_npz(path: Path, option: str = "--data") -> dict[str, np.ndarray]:
    """Every array of an .npz; object arrays are refused (loading them could run code)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{option} {path}: no such file; give the path of an existing file")
    if not zipfile.is_zipfile(path):  # np.load would talk of pickles here
        raise UserError(
            f"{option} {path}: not a readable .npz archive (not a zip of .npy arrays); {SAVE}"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise UserError(
                f"{option} {path}: holds object arrays, which are not loaded (they could run "
                "code); store numeric arrays, e.g. x_val.astype('float32')"
            ) from None
        raise UserError(
            f"{option} {path}: not a readable .npz archive ({_first_line(exc)}); {SAVE}"
        ) from None
    except Exception as exc:
        raise UserError(
            f"{option} {path}: not a readable .npz archive ({_first_line(exc)}); {SAVE}"
        ) from None


def load_npz_data(
    specs: tuple[InputSpec, ...], data: Path, train_data: Path | None = None
) -> NpzData:
    """The judging and calibration/training parts of `--data` (and `--train-data`), each array
    checked against `specs` and cast to the input's dtype."""
    arrays = read_npz(data)
    judge = _part(specs, arrays, data, "--data", "")
    calib_keys = _keys(specs, "_calib", arrays)
    if train_data is not None:
        if calib_keys:
            raise UserError(
                f"--data {data}: holds {', '.join(calib_keys)} and --train-data is given; give "
                "calibration data once (drop those arrays or --train-data)"
            )
        train = _part(specs, read_npz(train_data, "--train-data"), train_data, "--train-data", "")
        where = f"all {len(train)} rows of {Path(train_data).name}"
    elif calib_keys:
        train = _part(specs, arrays, data, "--data", "_calib")
        where = f"{len(train)} rows of {', '.join(calib_keys)}"
    else:
        return _split(judge, Path(data).name)
    keep = _not_judged(judge, train)
    if len(keep) == 0:
        raise UserError(
            f"{'--train-data' if train_data else '--data'} {train_data or data}: every "
            "calibration row repeats a judged row; give rows the judging data does not hold"
        )
    dropped = len(train) - len(keep)
    note = f" ({dropped} dropped: they repeat judged rows)" if dropped else ""
    statement = f"judging on all {len(judge)} rows of {Path(data).name}; {where} calibrate and "
    return NpzData(judge, train.take(keep), statement + f"train{note}")


def _part(
    specs: tuple[InputSpec, ...], arrays: dict[str, np.ndarray], path: Path, option: str, suffix
) -> Part:
    """One part (judging: suffix "", calibration: "_calib") of an archive, checked."""
    inputs = {}
    for spec in specs:
        key = _key(spec, specs, arrays, suffix)
        if key is None:
            legacy = " (or x" + (suffix or "_val") + ")" if len(specs) == 1 else ""
            raise UserError(
                f"{option} {path}: missing array {spec.name + suffix}{legacy} for the model's "
                f"input {spec.name!r}; it has {sorted(arrays)} — name each input array by the "
                "model's input name"
            )
        inputs[spec.name] = _checked(arrays[key], key, spec, path, option)
    rows = {k: len(v) for k, v in inputs.items()}
    first = next(iter(rows))
    if len(set(rows.values())) != 1:
        counts = ", ".join(f"{k} has {n} rows" for k, n in rows.items())
        raise UserError(f"{option} {path}: {counts}; give every input the same rows")
    label_key = "y" + (suffix or "_val")
    labels = arrays.get(label_key)
    if labels is not None:
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.number):
            raise UserError(
                f"{option} {path}: {label_key} has shape {_shape(labels)} and dtype "
                f"{labels.dtype}; give one integer class index per row (y.argmax(axis=1) for "
                "one-hot labels), or drop it to judge agreement with the fp32 model"
            )
        if len(labels) != rows[first]:
            raise UserError(
                f"{option} {path}: {_key(specs[0], specs, arrays, suffix)} has {rows[first]} "
                f"rows but {label_key} has {len(labels)}; give one label per input row"
            )
    if rows[first] == 0:
        raise UserError(f"{option} {path}: the input arrays have 0 rows; give some")
    return Part(inputs, labels)


def _key(spec: InputSpec, specs, arrays: dict, suffix: str) -> str | None:
    if spec.name + suffix in arrays:
        return spec.name + suffix
    legacy = "x" + (suffix or "_val")
    return legacy if len(specs) == 1 and legacy in arrays else None


def _keys(specs: tuple[InputSpec, ...], suffix: str, arrays: dict) -> list[str]:
    found = [_key(s, specs, arrays, suffix) for s in specs]
    return [k for k in found if k is not None]


def _checked(array: np.ndarray, key: str, spec: InputSpec, path: Path, option: str) -> np.ndarray:
    """The array cast to the input's dtype, after checking rank, fixed dims and dtype."""
    where = f"{option} {path}: {key}"
    named = "" if key == spec.name else f" (input {spec.name!r})"
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise UserError(f"{where} has dtype {array.dtype}; store numbers")
    dims = spec.dims
    if dims is not None and (
        array.ndim != len(dims)
        or any(e is not None and e != a for e, a in zip(dims[1:], array.shape[1:], strict=False))
    ):
        raise UserError(
            f"{where} has shape {_shape(array)} but the model takes {spec.shape_text()}"
            f"{named}; "
            "reshape the array to match the model's input"
        )
    want = spec.dtype or _default_dtype(array.dtype)
    if not np.can_cast(array.dtype, want, casting="same_kind"):
        raise UserError(
            f"{where} has dtype {array.dtype} but the model takes {want}{named}; store "
            f"{want} values (array.astype('{want}'))"
        )
    return np.ascontiguousarray(array.astype(want, copy=False))


def _default_dtype(dtype: np.dtype) -> np.dtype:
    """Where the model does not say: floats as float32, integers as int64 (torch's defaults)."""
    if np.issubdtype(dtype, np.floating):
        return np.dtype(np.float32)
    if np.issubdtype(dtype, np.integer):
        return np.dtype(np.int64)
    return np.dtype(dtype)


def _split(data: Part, name: str) -> NpzData:
    """A fixed share of the rows judges; the others, less any repeating a judged row, calibrate
    and train."""
    n = len(data)
    if n < 10:
        raise UserError(
            f"--data {name}: {n} rows are too few to split into judging and calibration "
            "parts; give at least 10, or <input>_calib arrays, or --train-data"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    count = int(round(n * JUDGE_SHARE))
    judge = data.take(np.sort(order[:count]))
    rest = data.take(np.sort(order[count:]))
    keep = _not_judged(judge, rest)
    dup = len(rest) - len(keep)
    note = f"; {dup} rows repeating a judged row are unused" if dup else ""
    how = f"a fixed {JUDGE_SHARE:.0%} / {1 - JUDGE_SHARE:.0%} split, seed {SPLIT_SEED}"
    statement = (
        f"judging on {count} rows of {name}; {len(keep)} other rows calibrate and train{note} "
        f"(no --train-data or <input>_calib arrays: {how})"
    )
    if len(keep) == 0:
        raise UserError(f"--data {name}: every row outside the judging part repeats a judged row")
    return NpzData(judge, rest.take(keep), statement)


def _not_judged(judge: Part, other: Part) -> np.ndarray:
    """Indices of `other`'s rows whose inputs are not exactly a judged row's."""
    judged = {_row_key(judge, i) for i in range(len(judge))}
    return np.array([i for i in range(len(other)) if _row_key(other, i) not in judged], int)


def _row_key(part: Part, i: int) -> bytes:
    return b"\0".join(part.inputs[k][i].tobytes() for k in sorted(part.inputs))


def _shape(array: np.ndarray) -> str:
    return "x".join(map(str, array.shape)) or "scalar"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__
