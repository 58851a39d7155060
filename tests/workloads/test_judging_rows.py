"""`--judge-rows N`: every build is judged on the same fixed subset of the judging rows, each
class in its share, and the choice is stated and part of the workload's fingerprint."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from autoaccel.errors import UserError
from autoaccel.workloads import load_workload
from autoaccel.workloads.judging_rows import cap_judging, checked, subset
from autoaccel.workloads.onnx_file import OnnxFileWorkload


def test_a_subset_keeps_each_class_in_its_share_and_is_the_same_every_time():
    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    index, how = subset(len(labels), labels, 100)
    assert len(index) == 100 and len(set(index)) == 100 and list(index) == sorted(index)
    assert np.bincount(labels[index]).tolist() == [60, 30, 10]
    assert "each class in its share" in how
    assert np.array_equal(subset(len(labels), labels, 100)[0], index)


def test_rounding_leftovers_go_to_the_largest_remainders_and_the_cap_holds():
    labels = np.array(["a"] * 5 + ["b"] * 5 + ["c"] * 5)
    index, _ = subset(15, labels, 10)
    assert len(index) == 10
    assert sorted(np.unique(labels[index], return_counts=True)[1].tolist()) == [3, 3, 4]


def test_scores_and_unlabelled_rows_are_a_plain_random_subset():
    index, how = subset(500, np.linspace(0, 1, 500), 50)
    assert len(index) == 50 and "class" not in how
    assert len(subset(500, None, 50)[0]) == 50
    assert subset(500, None, 500) is None and subset(500, None, None) is None


@pytest.mark.parametrize("bad", [0, 5, "abc", "12.5", -20])
def test_a_bad_row_count_is_one_line_naming_the_option(bad):
    with pytest.raises(UserError, match=r"^--judge-rows .*10 or more$"):
        checked(bad)
    assert checked("40") == 40 and checked(None) is None


@dataclass
class _Part:
    rows: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index):
        return _Part(self.rows[index], None if self.labels is None else self.labels[index])


@dataclass
class _Parts:
    judge: _Part
    train: _Part
    statement: str


def test_capping_touches_only_the_judging_part_and_says_so():
    parts = _Parts(_Part(np.arange(200), np.arange(200) % 2), _Part(np.arange(5), None), "s")
    capped = cap_judging(parts, 20, "pairs")
    assert len(capped.judge) == 20 and capped.train is parts.train
    assert capped.statement.startswith("s; --judge-rows 20: 20 of those 200 judging pairs")
    assert cap_judging(parts, None) is parts and cap_judging(parts, 200) is parts


def _npz(tmp_path, n: int):
    x = np.random.default_rng(1).normal(size=(n, 4)).astype(np.float32)
    path = tmp_path / f"data{n}.npz"
    np.savez(path, x_val=x, y_val=np.arange(n) % 3)
    return path


def test_a_model_file_judges_the_capped_rows_and_trains_on_the_same_rows_as_before(
    tiny_onnx_files, tmp_path
):
    model = shutil.copy(tiny_onnx_files[0], tmp_path / "tiny.onnx")
    data = _npz(tmp_path, 300)
    full = OnnxFileWorkload(model, data, convert=False)
    capped = OnnxFileWorkload(model, data, convert=False, judge_rows=60)
    assert len(full.judge) == 240 and len(capped.judge) == 60
    share = np.bincount(full.judge.labels) * 60 / 240
    assert np.abs(np.bincount(capped.judge.labels) - share).max() < 1
    assert np.array_equal(capped.train.inputs["features"], full.train.inputs["features"])
    judged = {r.tobytes() for r in full.judge.inputs["features"]}
    assert {r.tobytes() for r in capped.judge.inputs["features"]} <= judged
    assert any("--judge-rows 60: 60 of those 240 judging rows" in n for n in capped.notes())
    assert capped.fingerprint() != full.fingerprint()  # no cached figure of all rows is reused


def test_the_option_reaches_a_model_file_and_is_refused_for_a_built_in(tiny_onnx_files, tmp_path):
    model = shutil.copy(tiny_onnx_files[0], tmp_path / "tiny.onnx")
    wl = load_workload(None, tmp_path, model, _npz(tmp_path, 100), options={"judge_rows": 30})
    assert len(wl.judge) == 30
    with pytest.raises(UserError, match="--judge-rows: only with --model"):
        load_workload("seed-mlp", tmp_path, options={"judge_rows": 30})
