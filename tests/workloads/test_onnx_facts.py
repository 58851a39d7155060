"""An ONNX file whose weights live in a separate data file (what `save_as_external_data` and
torch.onnx's dynamo exporter write): it loads, its builds run, and its fingerprint follows the
weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from autoaccel.builder import build_candidate
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.workloads.onnx_facts import copy_onnx, external_files
from autoaccel.workloads.onnx_file import OnnxFileWorkload


@pytest.fixture
def external(tiny_onnx_files, tmp_path):
    """The tiny classifier saved with its weights in `weights/tiny.bin`, and its data."""
    folder = tmp_path / "model"
    (folder / "weights").mkdir(parents=True)
    proto = onnx.load(str(tiny_onnx_files[0]))
    onnx.save_model(
        proto, str(folder / "tiny.onnx"), save_as_external_data=True,
        all_tensors_to_one_file=True, location="weights/tiny.bin", size_threshold=0,
    )  # fmt: skip
    return folder / "tiny.onnx", tiny_onnx_files[1]


def test_external_data_files_are_listed_and_copied_with_the_model(external, tmp_path):
    model, _ = external
    assert external_files(model) == [model.parent / "weights" / "tiny.bin"]
    target = tmp_path / "copy" / "model.onnx"
    target.parent.mkdir()
    copy_onnx(model, target)
    assert (target.parent / "weights" / "tiny.bin").read_bytes() == external_files(model)[
        0
    ].read_bytes()
    onnx.checker.check_model(str(target))  # the copy finds its weights


def test_a_model_with_external_data_is_judged_and_built(external, tmp_path):
    model, data = external
    workload = OnnxFileWorkload(model, data, convert=False)
    for recipe in (
        {"runtime.backend": "onnxruntime"},  # the file itself, copied into the cache
        {"runtime.backend": "onnxruntime", "quantize.mode": "int8_dynamic"},
    ):
        candidate = build_candidate(recipe, workload, tmp_path / "cache")
        evaluation = evaluate_candidate(candidate, workload, MeasureConfig().scaled(0.05))
        assert evaluation.quality["accuracy"] >= 0.8, recipe


def test_the_fingerprint_follows_the_external_weights(external):
    model, data = external
    before = OnnxFileWorkload(model, data, convert=False).fingerprint()
    weights = external_files(model)[0]
    values = np.frombuffer(weights.read_bytes(), np.float32).copy()
    weights.write_bytes((values * 2).tobytes())
    assert OnnxFileWorkload(model, data, convert=False).fingerprint() != before


def test_missing_external_data_is_one_line_naming_the_model(external):
    model, data = external
    external_files(model)[0].unlink()
    with pytest.raises(Exception) as info:
        OnnxFileWorkload(model, data, convert=False)
    assert type(info.value).__name__ == "UserError"
    assert "not a valid ONNX model" in str(info.value) and str(model) in str(info.value)


def test_a_quantized_file_is_searched_without_quantizers_and_says_why(tiny_onnx_files, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from autoaccel.techniques import REGISTRY
    from autoaccel.techniques.applicability import search_notes
    from autoaccel.workloads.onnx_facts import quantized_ops

    model, data = tiny_onnx_files
    assert quantized_ops(model) == []
    quantize_dynamic(str(model), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8)
    assert "MatMulInteger" in quantized_ops(tmp_path / "q.onnx")
    workload = OnnxFileWorkload(tmp_path / "q.onnx", data, convert=False)
    assert REGISTRY["quantize"].params(workload) == ()
    assert REGISTRY["quantize"].params(OnnxFileWorkload(model, data, convert=False))
    assert any(
        "quantize: not searched: q is quantized already" in n for n in search_notes(workload)
    )
    candidate = build_candidate({"runtime.backend": "openvino"}, workload, tmp_path / "cache")
    evaluation = evaluate_candidate(candidate, workload, MeasureConfig().scaled(0.05))
    assert evaluation.quality["accuracy"] >= 0.8


def test_a_file_without_matrix_products_is_searched_without_quantizers_and_says_why(tmp_path):
    # a scikit-learn linear model as skl2onnx writes it: ai.onnx.ml operators only (and a
    # duplicated default opset, on which ONNX Runtime's quantizer raised)
    from onnx import TensorProto, helper

    from autoaccel.techniques import REGISTRY
    from autoaccel.techniques.applicability import search_notes

    node = helper.make_node(
        "LinearClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml",
        coefficients=[1.0, -1.0, 0.5, 0.5, -1.0, 1.0, -0.5, -0.5], intercepts=[0.0, 0.1],
        classlabels_ints=[0, 1],
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 2]),
        ],
    )
    ops = [helper.make_opsetid("ai.onnx.ml", 1), helper.make_opsetid("", 17)]
    model = tmp_path / "linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=ops), str(model))
    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", X=x, y_val=(x[:, 0] > 0).astype(np.int64))
    workload = OnnxFileWorkload(model, tmp_path / "d.npz")
    assert REGISTRY["quantize"].params(workload) == ()
    assert any(
        "quantize: not searched: linear has no matrix product" in n and "LinearClassifier" in n
        for n in search_notes(workload)
    )
