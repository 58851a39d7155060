"""Data from ordinary files: tables by column name, image folders, and the judging split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support_hf import image_folder, sentences

from autoaccel.errors import UserError
from autoaccel.workloads.data_files import (
    Columns,
    class_indices,
    read_data,
    read_images,
    read_table,
    split,
)


def _frame(n: int = 20) -> pd.DataFrame:
    texts = sentences(n)
    return pd.DataFrame({"review": texts, "stars": [i % 3 for i in range(n)], "other": 1})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_table_columns_are_read_by_name_in_every_format(tmp_path, suffix):
    frame, path = _frame(), tmp_path / f"val{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    rows = read_table(path, Columns(("review",), "stars"))
    assert rows.inputs == (frame["review"].tolist(),)
    assert rows.labels.tolist() == frame["stars"].tolist() and rows.scores is None


def test_usual_column_names_are_found_without_options(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame({"sentence1": ["a b", "c d"], "sentence2": ["e", "f"], "score": [1, 2.5]}).to_csv(
        path, index=False
    )
    rows = read_table(path, Columns())
    assert rows.inputs == (["a b", "c d"], ["e", "f"]) and rows.scores.tolist() == [1.0, 2.5]


def test_text_that_looks_like_a_number_or_na_stays_text(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("text,label\n007,1\nNA,0\n")
    assert read_table(path, Columns()).inputs == (["007", "NA"],)


def test_missing_named_column_is_refused_with_the_columns_there(tmp_path):
    path = tmp_path / "val.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(UserError, match="--text-column body: val.csv has no column 'body' "):
        read_table(path, Columns(("body",)))
    with pytest.raises(UserError, match="columns: review, stars, other"):
        read_table(path, Columns(("review",), "label_x"))


def test_empty_text_rows_are_refused_with_their_row_numbers(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text("text,label\nfine,1\n,0\n   ,1\n")
    with pytest.raises(UserError, match=r"empty in 2 row\(s\) \(data rows 2, 3\)"):
        read_table(path, Columns())


def test_training_data_may_lack_labels_even_when_named(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"review": ["x y", "z"]}).to_csv(path, index=False)
    rows = read_table(path, Columns(("review",), "stars", "score"), "--train-data")
    assert rows.labels is None and rows.scores is None


def test_labels_map_to_model_classes_by_name_or_index():
    classes = {0: "neg", 1: "pos"}
    names = np.asarray(["pos", "neg", "pos"], dtype=object)
    assert class_indices(names, classes, "x").tolist() == [1, 0, 1]
    assert class_indices(np.asarray([1, 0]), classes, "x").tolist() == [1, 0]
    with pytest.raises(UserError, match=r"label\(s\) 'meh' are not among the model's 2 classes"):
        class_indices(np.asarray(["pos", "meh"], dtype=object), classes, "--label-column y")
    with pytest.raises(UserError, match="write class indices 0..1"):
        class_indices(np.asarray([0, 2]), classes, "--label-column y")


def _rows(tmp_path, n=50):
    path = tmp_path / "val.csv"
    _frame(n).to_csv(path, index=False)
    return read_table(path, Columns(("review",), "stars"))


def test_split_is_deterministic_disjoint_and_stated(tmp_path):
    rows = _rows(tmp_path)
    first, again = split(rows, None, False, "val.csv"), split(rows, None, False, "val.csv")
    assert first.judge.inputs == again.judge.inputs and len(first.judge) == 40
    assert not set(first.judge.texts()) & set(first.train.texts())
    assert len(first.train) == 10 and first.train.labels is not None
    assert first.statement.startswith("judging on 40 rows of val.csv; 10 other rows")


def test_pairs_split_by_text_so_no_judged_text_calibrates(tmp_path):
    texts = sentences(12)
    a, b = zip(*[(texts[i], texts[j]) for i in range(12) for j in range(i + 1, 12)], strict=True)
    path = tmp_path / "pairs.csv"
    pd.DataFrame({"text_a": a, "text_b": b, "score": np.arange(len(a))}).to_csv(path, index=False)
    parts = split(read_table(path, Columns()), None, True, "pairs.csv")
    judged = set(parts.judge.texts())
    assert len(judged) == 10 and not judged & set(parts.train.texts())
    assert len(parts.judge) == 45 and "66 pairs" in parts.statement


def test_train_data_rows_repeating_judged_inputs_are_dropped(tmp_path):
    rows = _rows(tmp_path)
    train_path = tmp_path / "train.csv"
    pd.DataFrame({"review": [*rows.inputs[0][:3], "new text"]}).to_csv(train_path, index=False)
    train = read_table(train_path, Columns(("review",)), "--train-data")
    parts = split(rows, train, False, "val.csv", "train.csv")
    assert len(parts.judge) == len(rows) and parts.train.inputs == (["new text"],)
    assert "3 of them dropped" in parts.statement


def test_image_folder_labels_are_subfolder_names(tmp_path):
    rows = read_data(image_folder(tmp_path / "imgs", per_class=2), Columns())
    assert rows.labels.tolist() == ["circle", "circle", "square", "square"]


def test_unreadable_image_is_named(tmp_path):
    root = image_folder(tmp_path / "imgs", per_class=1)
    (root / "square" / "broken.png").write_text("not an image")
    with pytest.raises(UserError, match=r"square/broken.png: not a readable image"):
        read_images(root)


def test_image_folder_without_class_subfolders_is_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(UserError, match="subfolder named after the class"):
        read_images(tmp_path / "flat")
