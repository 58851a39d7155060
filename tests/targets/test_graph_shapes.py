"""Shapes for the cost models when static inference gives up: ONNX Runtime runs the graph once
and the shapes it computes are used (a graph converted back from torch computes its reshape
targets at run time)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from autoaccel.targets import graph_shapes
from autoaccel.targets.graph import analyze
from autoaccel.targets.graph_shapes import fix_input_shapes, infer_shapes


def _model() -> onnx.ModelProto:
    """x (batch x 6) -> reshape to (batch, 2, 3) by a shape computed from x -> MatMul (3x5)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["y"]),
    ]
    ints = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [len(v)], v)  # noqa: E731
    w = np.arange(15, dtype=np.float32).reshape(3, 5)
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[
            ints("zero", [0]), ints("one", [1]), ints("rest", [2, 3]),
            onnx.numpy_helper.from_array(w, "w"),
        ],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    infos = (*model.graph.value_info, *model.graph.output)
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in infos}


def test_running_the_graph_gives_the_shapes_static_inference_gives():
    static = _model()
    fix_input_shapes(static, {"x": (4, 6)})
    want = _shapes(graph_shapes._symbolic_shapes(static))
    probe = _model()
    fix_input_shapes(probe, {"x": (4, 6)})
    got = _shapes(graph_shapes._run_shapes(probe, ValueError("unused")))
    assert got["r"] == want["r"] == [4, 2, 3]
    assert got["y"] == want["y"] == [4, 2, 5]


def test_a_static_inference_that_gives_up_falls_back_to_running_the_graph(monkeypatch, tmp_path):
    def gives_up(model):
        raise AssertionError  # what ORT's symbolic Reshape rule raises on an unknown rank

    monkeypatch.setattr(graph_shapes, "_symbolic_shapes", gives_up)
    monkeypatch.setattr(graph_shapes, "_onnx_shapes", lambda model: None)
    model = _model()
    fix_input_shapes(model, {"x": (4, 6)})
    assert _shapes(infer_shapes(model))["y"] == [4, 2, 5]
    onnx.save(_model(), str(tmp_path / "m.onnx"))
    cost = analyze(tmp_path / "m.onnx", {"x": (4, 6)})
    assert sum(node.macs for node in cost.nodes) == 4 * 2 * 3 * 5


def test_a_graph_that_cannot_run_raises_what_static_inference_raised(monkeypatch):
    def gives_up(model):
        raise ValueError("shape inference stopped")

    monkeypatch.setattr(graph_shapes, "_symbolic_shapes", gives_up)
    monkeypatch.setattr(graph_shapes, "_onnx_shapes", lambda model: None)
    model = _model()
    model.graph.node[-1].input[1] = "missing"  # ORT refuses the graph
    fix_input_shapes(model, {"x": (4, 6)})
    with pytest.raises(ValueError, match="shape inference stopped"):
        infer_shapes(model)
