"""Keeping the matrix products int8 dynamic hurts most in fp32 (`quantize.float_share`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from autoaccel.builder import build_candidate
from autoaccel.evaluate import MeasureConfig, evaluate_candidate
from autoaccel.techniques import describe_recipe
from autoaccel.techniques.int8_sensitivity import (
    most_sensitive,
    quantizable_products,
    relative_error,
)

ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}


def _two_products(path) -> None:
    """`a @ Wa` and `b @ Wb`, plus `a @ b^T`-like product of two inputs (not quantizable)."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), name)
        for name in ("wa", "wb")
    ]
    nodes = [
        helper.make_node("MatMul", ["a", "wa"], ["ya"], name="plain"),
        helper.make_node("MatMul", ["b", "wb"], ["yb"], name="outliers"),
        helper.make_node("MatMul", ["a", "bt"], ["ab"], name="two_inputs"),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 8]) for n in "ab"]
    inputs.append(helper.make_tensor_value_info("bt", TensorProto.FLOAT, [8, None]))
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("ya", "yb")]
    outputs.append(helper.make_tensor_value_info("ab", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


def _batches(n: int = 3) -> list[dict]:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        b = rng.normal(scale=0.05, size=(64, 8)).astype(np.float32)
        b[0, 0] = 200.0  # one activation stretches the per-tensor scale over all the rest
        a = rng.normal(size=(64, 8)).astype(np.float32)
        out.append({"a": a, "b": b, "bt": a.T.copy()})
    return out


def test_the_product_fed_by_outliers_is_kept_first(tmp_path):
    path = tmp_path / "m.onnx"
    _two_products(path)
    assert [n.name for n in quantizable_products(onnx.load(str(path)))] == ["plain", "outliers"]
    assert most_sensitive(path, _batches(), 0.5) == ["outliers"]
    assert most_sensitive(path, _batches(), 1.0) == ["outliers", "plain"]
    assert most_sensitive(path, _batches(), 0.0) == []


def test_a_spread_out_input_loses_less_than_one_with_a_rare_large_value():
    rng = np.random.default_rng(2)
    weight = rng.normal(size=(16, 8)).astype(np.float32)
    even = rng.normal(size=(256, 16)).astype(np.float32)
    spiky = even * 0.01
    spiky[0, 0] = 100.0
    assert relative_error(even, weight) < 0.02
    assert relative_error(spiky, weight) > 5 * relative_error(even, weight)


def test_a_share_of_the_digits_cnns_dense_layers_stays_fp32(digits_cnn, cache_dir):
    recipe = {**ORT, "quantize.mode": "int8_dynamic", "quantize.per_channel": True}
    mixed = build_candidate({**recipe, "quantize.float_share": 0.3}, digits_cnn, cache_dir)
    ops = [n.op_type for n in onnx.load(str(mixed.onnx_path)).graph.node]
    # two dense layers (Gemm); 30 % of two rounds up to one kept in fp32, the other int8
    assert ops.count("Gemm") + ops.count("MatMul") == 1
    assert "DynamicQuantizeLinear" in ops
    assert "1 matrix products kept fp32" in mixed.notes[-1]
    text = describe_recipe({**recipe, "quantize.float_share": 0.3})
    assert "the 30% most sensitive matrix products in fp32" in text
    fast = MeasureConfig().scaled(0.05)
    full = build_candidate(recipe, digits_cnn, cache_dir)
    kept = evaluate_candidate(mixed, digits_cnn, fast).quality["accuracy"]
    assert kept >= evaluate_candidate(full, digits_cnn, fast).quality["accuracy"] - 0.02


def test_a_graph_whose_own_output_is_a_sequence_of_maps_is_ranked(tmp_path):
    # skl2onnx's default classifier ends in ZipMap; only the products' inputs are read back
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32))
    w.name = "w"
    maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(1, []))
    )
    nodes = [
        helper.make_node("MatMul", ["a", "w"], ["y"], name="product"),
        helper.make_node(
            "ZipMap", ["y"], ["z"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]
        ),
    ]
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 8])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_value_info("z", maps)], [w])
    ops = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)]
    onnx.save(helper.make_model(graph, opset_imports=ops), str(tmp_path / "z.onnx"))
    assert most_sensitive(tmp_path / "z.onnx", _batches(), 1.0) == ["product"]
