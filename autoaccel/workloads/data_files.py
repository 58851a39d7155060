"""A user's data from ordinary files, for a model folder: tables of text or a folder of images.

Tables (CSV, TSV, JSONL, Parquet; read with pandas) have named columns: one text column, or
two for pairs, a label column (classification) and a score column (similarity of a pair).
Images are a folder with one subfolder per class (the subfolder name is the class). The
judging data is `--data`; `--train-data` (labels optional) calibrates and trains. Without it,
`--data` is split once, deterministically (`split`), and the search says how.

Judging data never calibrates or trains: a training or calibration text that also appears in
the judging part is dropped, and pairs are split by their texts, not by rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoaccel.errors import UserError

TABLES = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSONL", ".json": "JSON lines", ".parquet": ""}
IMAGES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
JUDGE_SHARE = 0.8
"""Without --train-data: the share of --data (rows, or texts for pairs) that judges."""
SPLIT_SEED = 0
DEFAULT_TEXTS = (("text_a", "text_b"), ("sentence1", "sentence2"), ("text",), ("sentence",))
"""Text columns looked for, in this order, when --text-column is not given."""


@dataclass(frozen=True)
class Columns:
    """Which columns of a table hold what (None: look for the usual names)."""

    text: tuple[str, ...] | None = None
    label: str | None = None
    score: str | None = None


@dataclass
class Rows:
    """One part of the data: one or two text columns (or one column of images) and targets.

    `labels` are the file's own values (names or indices; `class_indices` maps them),
    `scores` the similarity of each pair; either is None where the file has none.
    """

    inputs: tuple[list, ...]
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    source: str = ""
    columns: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.inputs[0])

    def take(self, index: Any) -> Rows:
        idx = np.asarray(index, dtype=int)
        pick = None if self.labels is None else self.labels[idx]
        return Rows(
            tuple([col[i] for i in idx] for col in self.inputs),
            pick,
            None if self.scores is None else self.scores[idx],
            self.source,
            self.columns,
        )

    def texts(self) -> list:
        """Every distinct input of every column, in order of first appearance."""
        return list(dict.fromkeys(x for col in self.inputs for x in col))


def read_table(path: Path, columns: Columns, option: str = "--data") -> Rows:
    """The named columns of a table file, checked: present, texts non-empty, numbers numeric."""
    frame = _frame(path, option)
    names = [str(c) for c in frame.columns]
    text = columns.text or next((c for c in DEFAULT_TEXTS if set(c) <= set(names)), None)
    if text is None:
        raise UserError(
            f"{option} {path}: no text column (columns: {', '.join(names)}); name it with "
            "--text-column NAME (two names, a,b, for pairs)"
        )
    if len(text) > 2:
        raise UserError(f"--text-column {','.join(text)}: give one column, or two for pairs")
    label = columns.label or ("label" if "label" in names else None)
    score = columns.score or ("score" if "score" in names else None)
    wanted = [("--text-column", c) for c in text]
    if option == "--train-data":  # labels are optional there, scores never trained on
        label = label if label in names else None
        score = None
    else:
        wanted += [("--label-column", columns.label), ("--score-column", columns.score)]
    for flag, col in wanted:
        if col is not None and col not in names:
            raise UserError(
                f"{flag} {col}: {path.name} has no column {col!r} (columns: "
                f"{', '.join(names)}); name one of those"
            )
    if len(frame) == 0:
        raise UserError(f"{option} {path}: has no rows; give a file with data")
    inputs = tuple(_texts(frame[c], c, path, option) for c in text)
    labels = None if label is None else _labels(frame[label], label, path)
    scores = None if score is None else _scores(frame[score], score, path)
    return Rows(inputs, labels, scores, path.name, tuple(text))


def _frame(path: Path, option: str):
    import pandas as pd

    if not path.exists():
        raise UserError(f"{option} {path}: no such file or folder; give an existing path")
    suffix = path.suffix.lower()
    if suffix not in TABLES:
        raise UserError(
            f"{option} {path}: unknown data format {suffix or '(no suffix)'}; give a .csv, "
            ".tsv, .jsonl or .parquet table, a folder of images per class, or an .npz"
        )
    try:
        if suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True, dtype=False)
    except Exception as exc:
        kind = TABLES[suffix] or "Parquet"
        raise UserError(
            f"{option} {path}: not a readable {kind} table ({_first_line(exc)}); check the file"
        ) from None


def _texts(series, column: str, path: Path, option: str) -> list[str]:
    values = ["" if _missing(v) else str(v) for v in series.tolist()]
    empty = [i for i, v in enumerate(values) if not v.strip()]
    if empty:
        rows = ", ".join(str(i + 1) for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise UserError(
            f"{option} {path}: text column {column!r} is empty in {len(empty)} row(s) "
            f"(data rows {rows}); drop those rows or fill them"
        )
    return values


def _labels(series, column: str, path: Path) -> np.ndarray:
    values = series.tolist()
    missing = [i for i, v in enumerate(values) if _missing(v) or not str(v).strip()]
    if missing:
        raise UserError(
            f"--label-column {column}: {path.name} has no label in {len(missing)} row(s) (data "
            f"row {missing[0] + 1} first); label every row or drop it"
        )
    text = [str(v).strip() for v in values]
    if all(re.fullmatch(r"-?\d+(\.0+)?", t) for t in text):
        return np.asarray([int(float(t)) for t in text], dtype=np.int64)
    return np.asarray(text, dtype=object)


def _scores(series, column: str, path: Path) -> np.ndarray:
    import pandas as pd

    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if len(bad):
        raise UserError(
            f"--score-column {column}: {path.name} has {len(bad)} row(s) without a number "
            f"(data row {bad[0] + 1}: {series.iloc[bad[0]]!r}); give a number in every row"
        )
    return numbers


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def read_images(path: Path, option: str = "--data") -> Rows:
    """A folder of images, one subfolder per class (its name is the label), or, for
    --train-data only, images directly in the folder (no labels). Mixed sizes are fine: the
    model's image processor resizes them."""
    subfolders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _image_files(path)
    if not subfolders and not (loose and option == "--train-data"):
        raise UserError(
            f"{option} {path}: a folder, but not of images per class (no subfolders); put "
            "each class's images in a subfolder named after the class"
        )
    files, labels = [], []
    for folder in subfolders:
        for file in _image_files(folder):
            files.append(file)
            labels.append(folder.name)
    if not subfolders:
        files = loose
    if not files:
        raise UserError(
            f"{option} {path}: no images ({', '.join(sorted(IMAGES))}) in its class subfolders; "
            "add them"
        )
    for file in files:  # every one readable now, not in the middle of a trial
        try:
            load_image(file)
        except Exception as exc:
            raise UserError(
                f"{option} {file}: not a readable image ({_first_line(exc)}); remove it or "
                "replace it"
            ) from None
    label_array = np.asarray(labels, dtype=object) if subfolders else None
    if label_array is not None and all(re.fullmatch(r"\d+", str(x)) for x in labels):
        label_array = label_array.astype(np.int64)
    return Rows(([str(f) for f in files],), label_array, None, path.name, ("image",))


def load_image(path: str | Path, mode: str = "RGB"):
    """One image in `mode` (PIL: "RGB", or "L" for a one-channel model), read fully so the
    file can close."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert(mode)


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGES and not p.name.startswith(".")
    )


def read_data(path: Path, columns: Columns, option: str = "--data") -> Rows:
    """A table or a folder of images, by what `path` is."""
    if path.is_dir():
        return read_images(path, option)
    return read_table(path, columns, option)


def class_indices(labels: np.ndarray, id2label: dict[int, str], where: str) -> np.ndarray:
    """The file's labels as the model's class indices: names from the model's `id2label`, or
    indices below its class count. Anything else is refused with both vocabularies."""
    n = len(id2label)
    if labels.dtype != object:
        bad = sorted({int(v) for v in labels if not 0 <= int(v) < n})
        if not bad:
            return labels.astype(np.int64)
        found = ", ".join(map(str, bad[:5]))
    else:
        names = {str(name): int(i) for i, name in id2label.items()}
        unknown = sorted({str(v) for v in labels} - set(names))
        if not unknown:
            return np.asarray([names[str(v)] for v in labels], dtype=np.int64)
        found = ", ".join(repr(v) for v in unknown[:5])
    classes = ", ".join(str(id2label[i]) for i in sorted(id2label))
    raise UserError(
        f"{where}: label(s) {found} are not among the model's {n} classes ({classes}); "
        f"write class indices 0..{n - 1} or those names (config.json id2label)"
    )


@dataclass
class Split:
    """The judging part, the part that calibrates and trains, and the split in words."""

    judge: Rows
    train: Rows
    statement: str


def split(
    data: Rows, train: Rows | None, by_text: bool, data_name: str, train_name: str = ""
) -> Split:
    """Judging and training parts. With `train`: all of `data` judges, and training rows
    whose texts are judged are dropped. Without: a fixed share of `data` judges (rows; or,
    `by_text`, texts, judged on the pairs inside them) and the rest calibrates and trains."""
    unit = _unit(data)
    if train is not None:
        judged = set(data.texts())
        keep = [i for i in range(len(train)) if not any(c[i] in judged for c in train.inputs)]
        if not keep:
            raise UserError(
                f"--train-data {train_name}: every row's input is also in --data; give "
                "training data the judging file does not hold"
            )
        dropped = len(train) - len(keep)
        note = f" ({dropped} of them dropped: their inputs are judged)" if dropped else ""
        statement = (
            f"judging on all {len(data)} {unit} of {data_name}; {len(keep)} {_unit(train)} of "
            f"{train_name} calibrate and train{note}"
        )
        return Split(data, train.take(keep), statement)
    rng = np.random.default_rng(SPLIT_SEED)
    how = f"a fixed {JUDGE_SHARE:.0%} / {1 - JUDGE_SHARE:.0%} split, seed {SPLIT_SEED}"
    if by_text:
        texts = data.texts()
        order = rng.permutation(len(texts))
        judged = {texts[i] for i in order[: _judged_count(len(texts), data_name)]}
        inside = [i for i in range(len(data)) if all(c[i] in judged for c in data.inputs)]
        apart = [i for i in range(len(data)) if not any(c[i] in judged for c in data.inputs)]
        spare = [t for t in texts if t not in judged]
        if not inside:
            raise UserError(
                f"--data {data_name}: no pair has both texts in the judging part of the "
                "split; give more pairs, or --train-data with texts to calibrate on"
            )
        unused = len(data) - len(inside) - len(apart)
        statement = (
            f"judging on {len(inside)} of {len(data)} pairs of {data_name} ({len(judged)} "
            f"texts); {len(spare)} other texts calibrate and train, {unused} pairs across "
            f"the two parts are unused (no --train-data: {how})"
        )
        judge = data.take(inside)
        rest = Rows((spare,), None, None, data.source, data.columns[:1])
        return Split(judge, rest, statement)
    order = rng.permutation(len(data))
    count = _judged_count(len(data), data_name)
    judge = data.take(np.sort(order[:count]))
    judged = set(judge.texts())
    rest = [i for i in np.sort(order[count:]) if not any(c[i] in judged for c in data.inputs)]
    dup = len(data) - count - len(rest)
    note = f"; {dup} {unit} repeating a judged input are unused" if dup else ""
    statement = (
        f"judging on {count} {unit} of {data_name}; {len(rest)} other {unit} calibrate and "
        f"train{note} (no --train-data: {how})"
    )
    return Split(judge, data.take(rest), statement)


def _unit(rows: Rows) -> str:
    if rows.columns == ("image",):
        return "images"
    return "pairs" if len(rows.inputs) == 2 else "rows"


def _judged_count(n: int, name: str) -> int:
    if n < 10:
        raise UserError(
            f"--data {name}: {n} rows or texts are too few to split into judging and "
            "calibration parts; give at least 10, or --train-data"
        )
    return int(round(n * JUDGE_SHARE))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__
