"""Quantization on digits-cnn: what lands in the real ONNX graph, and that it still works."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from autoaccel.build import build_candidate
from autoaccel.evaluate import MeasureConfig, evaluate_candidate

FAST = MeasureConfig().scaled(0.05)
ORT = {"runtime.backend": "onnxruntime", "runtime.intra_op_threads": 1}
RECIPES = {
    "fp16": {"quantize.mode": "fp16"},
    "dynamic-per-channel": {"quantize.mode": "int8_dynamic", "quantize.per_channel": True},
    "dynamic-per-tensor": {"quantize.mode": "int8_dynamic", "quantize.per_channel": False},
    **{
        f"static-{method}": {
            "quantize.mode": "int8_static",
            "quantize.per_channel": True,
            "quantize.calibration": method,
        }
        for method in ("minmax", "entropy", "percentile")
    },
    "static-per-tensor": {
        "quantize.mode": "int8_static",
        "quantize.per_channel": False,
        "quantize.calibration": "minmax",
    },
}


@pytest.fixture(scope="module")
def built(digits_cnn, cache_dir):
    """Every candidate of this module, built once: name -> (candidate, loaded ONNX model)."""
    out = {}
    for name, recipe in {"fp32": {"quantize.mode": "none"}, **RECIPES}.items():
        candidate = build_candidate({**ORT, **recipe}, digits_cnn, cache_dir)
        out[name] = (candidate, onnx.load(str(candidate.onnx_path)))
    return out


@pytest.fixture(scope="module")
def fp32_accuracy(built, digits_cnn) -> float:
    return evaluate_candidate(built["fp32"][0], digits_cnn, FAST).quality["accuracy"]


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def _ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


def _weight_scale_sizes(model: onnx.ModelProto) -> list[int]:
    """Elements in the scale (QDQ) or zero point (integer ops) of every int8 weight."""
    inits = _inits(model)
    sizes = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            weight, qparam = node.input[0], node.input[1]
        elif node.op_type in ("MatMulInteger", "ConvInteger") and len(node.input) > 3:
            weight, qparam = node.input[1], node.input[3]
        else:
            continue
        if weight in inits and inits[weight].data_type == TensorProto.INT8:
            sizes.append(numpy_helper.to_array(inits[qparam]).size)
    return sizes


def test_fp16_stores_every_float_initializer_as_float16(built):
    candidate, model = built["fp16"]
    types = {i.data_type for i in model.graph.initializer}
    assert types == {TensorProto.FLOAT16}
    assert candidate.onnx_path != built["fp32"][0].onnx_path


@pytest.mark.parametrize("name", ["dynamic-per-channel", "dynamic-per-tensor"])
def test_int8_dynamic_graph_has_integer_ops_with_int8_weights(built, name):
    _, model = built[name]
    ops = _ops(model)
    assert "DynamicQuantizeLinear" in ops
    assert ops & {"MatMulInteger", "ConvInteger"}
    assert "Gemm" not in ops and "Conv" not in ops  # every layer runs in integer arithmetic
    assert _weight_scale_sizes(model), "no int8 weight found"


@pytest.mark.parametrize(
    "name", ["static-minmax", "static-entropy", "static-percentile", "static-per-tensor"]
)
def test_int8_static_graph_has_qdq_nodes_with_int8_weights(built, name):
    _, model = built[name]
    ops = _ops(model)
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8 = [i.name for i in model.graph.initializer if i.data_type == TensorProto.INT8]
    dq_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    # the four layers' weights (2 conv, 2 dense) are int8 and dequantized in the graph
    assert len(set(int8) & dq_inputs) == 4


@pytest.mark.parametrize(
    "name", ["dynamic-per-channel", "static-minmax", "static-entropy", "static-percentile"]
)
def test_per_channel_gives_a_weight_more_than_one_scale(built, name):
    assert max(_weight_scale_sizes(built[name][1])) > 1


@pytest.mark.parametrize("name", ["dynamic-per-tensor", "static-per-tensor"])
def test_per_tensor_gives_every_weight_one_scale(built, name):
    assert set(_weight_scale_sizes(built[name][1])) == {1}


def test_calibration_methods_give_different_activation_scales(built):
    def activation_scales(model):
        inits = _inits(model)
        return np.array(
            [
                numpy_helper.to_array(inits[n.input[1]]).item()
                for n in model.graph.node
                if n.op_type == "QuantizeLinear"
            ]
        )

    minmax = activation_scales(built["static-minmax"][1])
    percentile = activation_scales(built["static-percentile"][1])
    assert minmax.shape == percentile.shape
    assert not np.allclose(minmax, percentile)


@pytest.mark.parametrize("name", list(RECIPES))
def test_quantized_candidate_runs_in_ort_within_005_of_fp32(
    built, digits_cnn, fp32_accuracy, name
):
    candidate, _ = built[name]
    evaluation = evaluate_candidate(candidate, digits_cnn, FAST)
    assert fp32_accuracy > 0.9
    assert abs(evaluation.quality["accuracy"] - fp32_accuracy) <= 0.05
    assert evaluation.latency.n_runs >= FAST.min_runs
    assert evaluation.size_mb > 0


def test_int8_candidates_are_smaller_files_than_fp32(built):
    fp32 = built["fp32"][0].onnx_path.stat().st_size
    for name in ("dynamic-per-tensor", "static-minmax"):
        assert built[name][0].onnx_path.stat().st_size < fp32 / 2


def test_quantize_applies_when_recipe_leaves_backend_at_its_default(digits_cnn, cache_dir):
    candidate = build_candidate({"quantize.mode": "int8_dynamic"}, digits_cnn, cache_dir)
    assert "DynamicQuantizeLinear" in _ops(onnx.load(str(candidate.onnx_path)))
