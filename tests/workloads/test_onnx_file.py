"""A user's ONNX model + npz data, and the errors `load_workload` gives for bad input."""

from __future__ import annotations

import shutil
import sys
import textwrap

import numpy as np
import pytest

from autoaccel.builder import build_candidate
from autoaccel.errors import UserError
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.workloads import load_workload
from autoaccel.workloads.digits import SeedMLP
from autoaccel.workloads.onnx_file import OnnxFileWorkload


@pytest.fixture
def model(tiny_onnx_files, tmp_path):
    return shutil.copy(tiny_onnx_files[0], tmp_path / "tiny.onnx")


@pytest.fixture
def onnx_only(tiny_onnx_files):
    """The tiny ONNX classifier kept ONNX-only (no onnx2torch conversion)."""
    return OnnxFileWorkload(*tiny_onnx_files, convert=False)


def _npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _rows(n: int, features: int = 4) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, features)).astype(np.float32)


def test_onnx_file_workload_evaluates_accuracy_of_given_model(
    onnx_only, tiny_onnx_files, tmp_path
):
    assert onnx_only.input_names == ("features",)
    assert onnx_only.name == "tiny"
    assert onnx_only.onnx_model() == tiny_onnx_files[0]
    assert not onnx_only.torch_model_available()
    candidate = build_candidate({"runtime.backend": "onnxruntime"}, onnx_only, tmp_path)
    assert candidate.onnx_path != tiny_onnx_files[0]  # a copy in the cache, never the original
    assert candidate.onnx_path.read_bytes() == tiny_onnx_files[0].read_bytes()
    evaluation = evaluate_candidate(candidate, onnx_only, MeasureConfig().scaled(0.05))
    assert evaluation.quality == {"accuracy": 1.0}  # labels are the model's own predictions


def test_onnx_file_model_is_quantized_and_still_evaluates(onnx_only, tiny_onnx_files, tmp_path):
    original = tiny_onnx_files[0].read_bytes()
    recipe = {"runtime.backend": "onnxruntime", "quantize.mode": "int8_dynamic"}
    candidate = build_candidate(recipe, onnx_only, tmp_path)
    assert "quantized int8_dynamic" in candidate.notes
    evaluation = evaluate_candidate(candidate, onnx_only, MeasureConfig().scaled(0.05))
    assert evaluation.quality["accuracy"] >= 0.8
    assert tiny_onnx_files[0].read_bytes() == original


def test_onnx_file_accuracy_counts_wrong_labels(model, tmp_path):
    x = _rows(10)
    data = _npz(tmp_path, x_val=x, y_val=np.full(10, -1))
    workload = OnnxFileWorkload(model, data)
    assert workload.evaluate(lambda inputs: np.ones((len(inputs["features"]), 3))) == {
        "accuracy": 0.0
    }


def test_onnx_file_calibration_uses_x_calib_when_given(model, tmp_path):
    data = _npz(tmp_path, x_val=_rows(10), y_val=np.zeros(10), x_calib=_rows(70) + 5)
    batches = OnnxFileWorkload(model, data).calibration_inputs()
    assert [len(b["features"]) for b in batches] == [32, 32, 6]
    assert np.concatenate([b["features"] for b in batches]).mean() > 4


def test_onnx_file_without_calibration_data_splits_once_and_never_calibrates_on_judged_rows(
    model, tmp_path
):
    x = _rows(300)
    workload = OnnxFileWorkload(model, _npz(tmp_path, x_val=x, y_val=np.zeros(300)))
    judged = {r.tobytes() for r in workload.judge.inputs["features"]}
    calibrated = np.concatenate([b["features"] for b in workload.calibration_inputs()])
    trained = np.concatenate([b["features"] for b, _ in workload.training_batches()])
    assert len(judged) == 240 and len(calibrated) == len(trained) == 60
    assert not judged & {r.tobytes() for r in np.concatenate([calibrated, trained])}
    assert any("judging on 240 rows of data.npz; 60 other rows calibrate and train" in n
               and "80% / 20% split, seed 0" in n for n in workload.notes())  # fmt: skip
    again = OnnxFileWorkload(model, _npz(tmp_path, "b.npz", x_val=x, y_val=np.zeros(300)))
    assert np.array_equal(again.judge.inputs["features"], workload.judge.inputs["features"])


def test_onnx_file_calibration_rows_repeating_a_judged_row_are_dropped(model, tmp_path):
    x = _rows(20)
    calib = np.concatenate([x[:5], _rows(3) + 7])
    workload = OnnxFileWorkload(model, _npz(tmp_path, x_val=x, y_val=np.zeros(20), x_calib=calib))
    assert len(workload.train) == 3 and len(workload.judge) == 20
    assert any("(5 dropped: they repeat judged rows)" in n for n in workload.notes())


def test_onnx_file_train_data_npz_calibrates_and_all_of_data_judges(model, tmp_path):
    data = _npz(tmp_path, x_val=_rows(12), y_val=np.zeros(12))
    train = _npz(tmp_path, "train.npz", x_val=_rows(40) + 3)
    workload = OnnxFileWorkload(model, data, train)
    assert len(workload.judge) == 12 and len(workload.train) == 40
    assert workload.training_batches()[0][1] is None  # labels optional
    assert any("all 40 rows of train.npz calibrate and train" in n for n in workload.notes())


def test_onnx_file_without_labels_is_judged_by_agreement_with_the_given_model(model, tmp_path):
    workload = OnnxFileWorkload(model, _npz(tmp_path, features=_rows(50)), convert=False)
    assert workload.metric == "top1_agreement"  # the tiny model ends in softmax
    assert "teacher_cosine" in workload.metrics
    assert workload.evaluate(workload.reference_predict) == {
        "teacher_cosine": pytest.approx(1.0),
        "top1_agreement": 1.0,
    }
    shuffled = workload.evaluate(lambda inputs: workload.reference_predict(inputs)[::-1])
    assert shuffled["top1_agreement"] < 1.0


def test_onnx_file_fingerprint_changes_when_data_changes(model, tmp_path):
    a = OnnxFileWorkload(model, _npz(tmp_path, "a.npz", x_val=_rows(10), y_val=np.zeros(10)))
    b = OnnxFileWorkload(model, _npz(tmp_path, "b.npz", x_val=_rows(10), y_val=np.ones(10)))
    assert a.fingerprint() != b.fingerprint()


def test_missing_model_file_raises_user_error_naming_flag(tmp_path):
    data = _npz(tmp_path, x_val=_rows(3), y_val=np.zeros(3))
    with pytest.raises(UserError, match=r"--model .*nope\.onnx: no such file"):
        OnnxFileWorkload(tmp_path / "nope.onnx", data)


def test_missing_data_file_raises_user_error_naming_flag(model, tmp_path):
    with pytest.raises(UserError, match=r"--data .*nope\.npz: no such file"):
        OnnxFileWorkload(model, tmp_path / "nope.npz")


def test_random_bytes_model_raises_user_error_not_valid_onnx(tmp_path):
    bad = tmp_path / "random.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(512))
    data = _npz(tmp_path, x_val=_rows(3), y_val=np.zeros(3))
    with pytest.raises(UserError, match=r"--model .*random\.onnx: not a valid ONNX model"):
        OnnxFileWorkload(bad, data)


def test_npz_without_the_input_raises_user_error_naming_missing_array(model, tmp_path):
    data = _npz(tmp_path, x=_rows(3), y_val=np.zeros(3))
    with pytest.raises(UserError, match=r"missing array features \(or x_val\) for the model's"):
        OnnxFileWorkload(model, data)


def test_length_mismatch_raises_user_error_with_both_counts(model, tmp_path):
    data = _npz(tmp_path, x_val=_rows(5), y_val=np.zeros(4))
    with pytest.raises(UserError, match="x_val has 5 rows but y_val has 4"):
        OnnxFileWorkload(model, data)


def test_empty_x_val_raises_user_error(model, tmp_path):
    data = _npz(tmp_path, x_val=np.zeros((0, 4), np.float32), y_val=np.zeros(0))
    with pytest.raises(UserError, match="0 rows"):
        OnnxFileWorkload(model, data)


@pytest.mark.parametrize(
    ("key", "array", "shape"),
    [
        ("x_val", _rows(5, features=7), "5x7"),
        ("x_val", np.zeros(5, np.float32), "5"),
        ("x_calib", _rows(5, features=2), "5x2"),
    ],
)
def test_wrong_feature_shape_raises_user_error_naming_shapes(model, tmp_path, key, array, shape):
    arrays = {"x_val": _rows(5), "y_val": np.zeros(5), key: array}
    with pytest.raises(UserError, match=rf"{key} has shape {shape} but the model takes Nx4"):
        OnnxFileWorkload(model, _npz(tmp_path, **arrays))


def test_non_numeric_x_val_raises_user_error_naming_dtype(model, tmp_path):
    data = _npz(tmp_path, x_val=np.array([["a"] * 4] * 3), y_val=np.zeros(3))
    with pytest.raises(UserError, match="x_val has dtype <U1"):
        OnnxFileWorkload(model, data)


def test_text_file_as_data_raises_user_error_not_npz(model, tmp_path):
    data = tmp_path / "data.npz"
    data.write_text("x_val,y_val\n1,2\n")
    with pytest.raises(UserError, match=r"--data .*data\.npz: not a readable \.npz archive"):
        OnnxFileWorkload(model, data)


def test_npy_file_as_data_raises_user_error_not_npz(model, tmp_path):
    data = tmp_path / "data.npy"
    np.save(data, _rows(3))
    with pytest.raises(UserError, match=r"not a readable \.npz archive"):
        OnnxFileWorkload(model, data)


def test_load_workload_builds_onnx_file_workload_from_model_and_data(tiny_onnx_files, tmp_path):
    workload = load_workload(None, tmp_path, *tiny_onnx_files)
    assert isinstance(workload, OnnxFileWorkload)


def test_load_workload_rejects_unknown_name(tmp_path):
    with pytest.raises(UserError, match="unknown workload 'nope'; use one of .*seed-mlp"):
        load_workload("nope", tmp_path)


@pytest.mark.parametrize("which", ["model", "data"])
def test_load_workload_rejects_model_without_data(tiny_onnx_files, tmp_path, which):
    given = {"model": tiny_onnx_files[0]} if which == "model" else {"data": tiny_onnx_files[1]}
    with pytest.raises(UserError, match="--model and --data go together"):
        load_workload(None, tmp_path, **given)


def test_load_workload_rejects_name_together_with_model_and_data(tiny_onnx_files, tmp_path):
    with pytest.raises(UserError, match="either --workload or --model/--data"):
        load_workload("seed-mlp", tmp_path, *tiny_onnx_files)


def test_load_workload_rejects_factory_whose_module_cannot_import(tmp_path):
    with pytest.raises(UserError, match=r"--workload no_such_pkg_xyz:make: cannot import"):
        load_workload("no_such_pkg_xyz:make", tmp_path)


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """An importable module of user factories, unique to this test session."""
    (tmp_path / "aa_user_factories.py").write_text(
        textwrap.dedent(
            """
            from autoaccel.workloads.digits import SeedMLP

            def not_a_workload():
                return {"model": "m.onnx"}

            def good():
                return SeedMLP("unused-cache")

            VALUE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "aa_user_factories", raising=False)
    return "aa_user_factories"


def test_load_workload_rejects_factory_returning_non_workload(factories, tmp_path):
    with pytest.raises(UserError, match=r"not_a_workload\(\) returned dict, not an autoaccel"):
        load_workload(f"{factories}:not_a_workload", tmp_path)


@pytest.mark.parametrize("attr", ["missing", "VALUE"])
def test_load_workload_rejects_factory_that_is_not_callable(factories, tmp_path, attr):
    with pytest.raises(UserError, match=rf"has no callable '{attr}'"):
        load_workload(f"{factories}:{attr}", tmp_path)


def test_load_workload_calls_importable_factory(factories, tmp_path):
    assert isinstance(load_workload(f"{factories}:good", tmp_path), SeedMLP)


def _export(module, example, path, dynamic: bool) -> None:
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}} if dynamic else None,
            opset_version=17,
            dynamo=False,
        )


def test_fixed_batch_model_is_rejected_at_load_or_evaluated(tmp_path):
    import torch

    path = tmp_path / "fixed.onnx"
    _export(torch.nn.Linear(4, 3), torch.zeros(1, 4), path, dynamic=False)
    data = _npz(tmp_path, x_val=_rows(10), y_val=np.zeros(10))
    try:
        workload = OnnxFileWorkload(path, data)
    except UserError as exc:
        assert "batch" in str(exc)
        return
    candidate = build_candidate({"runtime.backend": "onnxruntime"}, workload, tmp_path / "c")
    evaluation = evaluate_candidate(candidate, workload, MeasureConfig().scaled(0.02))
    assert 0.0 <= evaluation.quality["accuracy"] <= 1.0


def test_integer_input_model_is_evaluated_with_its_input_dtype(tmp_path):
    import torch

    class MeanEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 3)

        def forward(self, ids):
            return self.embed(ids).mean(dim=1)

    path = tmp_path / "ids.onnx"
    _export(MeanEmbedding(), torch.zeros(1, 5, dtype=torch.long), path, dynamic=True)
    ids = np.random.default_rng(0).integers(0, 10, size=(12, 5))
    workload = OnnxFileWorkload(path, _npz(tmp_path, x_val=ids, y_val=np.zeros(12)))
    candidate = build_candidate({"runtime.backend": "onnxruntime"}, workload, tmp_path / "c")
    evaluation = evaluate_candidate(candidate, workload, MeasureConfig().scaled(0.02))
    assert 0.0 <= evaluation.quality["accuracy"] <= 1.0


def _label_first_model(tmp_path):
    """A classifier as skl2onnx writes one: its first output the class label (int64, one per
    row, through a same-type Cast), the probabilities second."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "w"], ["logits"]),
            helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0),
            helper.make_node("Cast", ["argmax"], ["label"], to=TensorProto.INT64),  # a no-op
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "skl",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3]),
        ],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "skl.onnx"
    onnx.save(model, str(path))
    return path, w


def test_a_class_label_output_is_judged_by_exact_match_not_as_a_score(tmp_path):
    path, w = _label_first_model(tmp_path)
    x = _rows(100)
    truth = (x @ w).argmax(1)
    truth[:10] = (truth[:10] + 1) % 3  # the model gets 10 of the 100 wrong
    wl = OnnxFileWorkload(path, _npz(tmp_path, X=x, y_val=truth))
    assert wl.metric == "accuracy" and wl.label_output
    judged = np.isin(np.arange(100), np.flatnonzero(np.isin(x, wl.judge.inputs["X"]).all(1)))
    expected = float(np.mean(((x @ w).argmax(1) == truth)[judged]))
    assert wl.evaluate(wl.reference_predict) == {"accuracy": pytest.approx(expected)}
    assert not wl.torch_model_available()
    assert any("integer class labels" in n for n in wl.notes())
    unlabelled = OnnxFileWorkload(path, _npz(tmp_path, "u.npz", X=x))
    assert unlabelled.metric == "top1_agreement"
    assert unlabelled.evaluate(unlabelled.reference_predict) == {"top1_agreement": 1.0}
    flipped = unlabelled.evaluate(lambda inputs: (unlabelled.reference_predict(inputs) + 1) % 3)
    assert flipped == {"top1_agreement": 0.0}


def test_a_class_label_graph_quantizes_with_nncf(tmp_path):
    # NNCF removes every no-op Cast and failed on skl2onnx's, whose output is the graph's
    path, w = _label_first_model(tmp_path)
    x = np.random.default_rng(3).normal(size=(300, 4)).astype(np.float32)
    wl = OnnxFileWorkload(path, _npz(tmp_path, X=x, y_val=(x @ w).argmax(1)))
    recipe = {"runtime.backend": "onnxruntime", "quantize.mode": "int8_nncf"}
    candidate = build_candidate(recipe, wl, tmp_path / "cache")
    quality = evaluate_candidate(candidate, wl, MeasureConfig().scaled(0.05)).quality
    assert quality["accuracy"] > 0.9
